//! Facades over the two crates loom cannot see: arc-swap and dashmap.
//!
//! In a normal build this module re-exports `arc_swap::ArcSwapOption` and
//! `arc_swap::Cache`, and wraps a `DashMap` behind a small clone-out API. Built
//! with `--cfg loom`:
//!
//! * `SwapOption` is arc-swap's contract (wait-free load of a whole, counted
//!   value; a swap that publishes with Release and returns the old value with
//!   an exact count) made of loom atomics and cells, so the models check the
//!   tables' lock-free read path (`modules_by_index`) with a real pointer swap
//!   and deferred reclamation, not a lock (see `loom_swap`);
//! * `Map` is a loom `Mutex<HashMap>`: dashmap is itself a locking map
//!   (sharded reader-writer locks), never read without a lock, and the tables
//!   never hold a shard lock across another lock or user code.
//!
//! Only the methods the module tables use exist.
//!
//! The process-wide module-index counter lives here too: a plain `static` in
//! a normal build, a `loom::lazy_static!` (reset for every execution) under loom.

use std::borrow::Cow;

#[cfg(not(loom))]
pub(crate) use arc_swap::{ArcSwapOption as SwapOption, Cache};

#[cfg(loom)]
pub(crate) use self::loom_swap::{Cache, SwapOption};

/// The first index handed to a [`ModuleDef`](super::ModuleDef): 0 and 1 are
/// reserved for `builtins` and `sys`, and 0 also means "not assigned yet".
pub(crate) const FIRST_DEF_INDEX: usize = 2;

#[cfg(not(loom))]
static NEXT_INDEX: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(FIRST_DEF_INDEX);

/// Takes a fresh process-wide module index.
#[cfg(not(loom))]
pub(crate) fn next_index() -> usize {
    NEXT_INDEX.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(loom)]
loom::lazy_static! {
    static ref NEXT_INDEX: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(FIRST_DEF_INDEX);
}

/// Takes a fresh process-wide module index (loom: per execution).
#[cfg(loom)]
pub(crate) fn next_index() -> usize {
    NEXT_INDEX.fetch_add(1, loom::sync::atomic::Ordering::Relaxed)
}

/// Shard count of the per-interpreter by-name map. dashmap's default is
/// `4 × cores` rounded up (1,024 shards of 128 bytes on a 192-core host), which
/// would make every interpreter creation allocate 128 KiB; eight shards are
/// plenty for the threads of one interpreter.
#[cfg(not(loom))]
const NAME_SHARDS: usize = 8;

/// Module names by key; the by-name table (`sys.modules`).
///
/// The API only ever hands out clones: no caller can hold a reference into the
/// map (and so a shard lock) while it does anything else, which is the rule
/// that keeps dashmap deadlock-free (reference §C.3).
pub(crate) struct Map<V> {
    #[cfg(not(loom))]
    inner: dashmap::DashMap<Cow<'static, str>, V>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<std::collections::HashMap<Cow<'static, str>, V>>,
}

#[cfg(not(loom))]
impl<V: Clone> Map<V> {
    pub(crate) fn new() -> Self {
        Self { inner: dashmap::DashMap::with_shard_amount(NAME_SHARDS) }
    }

    /// A clone of the value under `key`.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<V> {
        self.inner.get(key).map(|r| r.value().clone())
    }

    pub(crate) fn insert(&self, key: Cow<'static, str>, value: V) -> Option<V> {
        self.inner.insert(key, value)
    }

    pub(crate) fn remove(&self, key: &str) -> Option<V> {
        self.inner.remove(key).map(|(_, v)| v)
    }

    /// Every entry, cloned (in no particular order).
    pub(crate) fn entries(&self) -> Vec<(String, V)> {
        self.inner.iter().map(|r| (r.key().to_string(), r.value().clone())).collect()
    }

    /// Empties the map and returns what it held.
    pub(crate) fn drain(&self) -> Vec<V> {
        let mut out = Vec::new();
        self.inner.retain(|_, v| {
            out.push(v.clone());
            false
        });
        out
    }
}

#[cfg(loom)]
impl<V: Clone> Map<V> {
    pub(crate) fn new() -> Self {
        Self { inner: loom::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    fn map(&self) -> loom::sync::MutexGuard<'_, std::collections::HashMap<Cow<'static, str>, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, key: &str) -> Option<V> {
        self.map().get(key).cloned()
    }

    pub(crate) fn insert(&self, key: Cow<'static, str>, value: V) -> Option<V> {
        self.map().insert(key, value)
    }

    pub(crate) fn remove(&self, key: &str) -> Option<V> {
        self.map().remove(key)
    }

    pub(crate) fn entries(&self) -> Vec<(String, V)> {
        self.map().iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    pub(crate) fn drain(&self) -> Vec<V> {
        self.map().drain().map(|(_, v)| v).collect()
    }
}

/// `ArcSwapOption` and `Cache` for loom: arc-swap's contract made of loom
/// atomics, so that the models check the tables' lock-free read path.
///
/// What the module tables rely on from arc-swap, and what this gives:
///
/// * `load` is wait-free and returns a whole published value (old or new),
///   counted, never a torn or freed one;
/// * `swap` publishes a value (Release) and returns the previous one with an
///   exact reference count: once `swap` returns, every reader that loaded the
///   old value holds its own counted reference, so `Arc::try_unwrap` on the
///   returned value succeeds exactly when no reader kept it (teardown relies
///   on this).
///
/// The protocol: a published value is a heap node whose cell the writer
/// fills before it publishes the node with one pointer swap, and readers read
/// through loom's `UnsafeCell` (so a publication without Release is a
/// causality violation loom reports). Reclamation is deferred: a reader
/// announces itself in `readers` (a read-modify-write, which orders it
/// against the writer's own read-modify-write on the same word), loads the
/// pointer, clones the value and leaves; the writer, after its swap, waits
/// for a moment with no reader in flight (a grace period: loads are a few
/// steps and run no user code) before it takes the old value out and frees
/// the node. arc-swap's own mechanism (per-thread debt slots paid off by the
/// writer) differs; its guarantees above are the same.
#[cfg(loom)]
mod loom_swap {
    use std::ops::Deref;
    use std::sync::Arc;

    use crate::sync::{self, AtomicPtr, AtomicUsize, Ordering, UnsafeCell};

    /// One published value.
    struct Node<T> {
        value: UnsafeCell<Option<Arc<T>>>,
    }

    fn node<T>(value: Option<Arc<T>>) -> *mut Node<T> {
        Box::into_raw(Box::new(Node { value: UnsafeCell::new(value) }))
    }

    pub(crate) struct SwapOption<T> {
        /// The published node; never null.
        ptr: AtomicPtr<Node<T>>,
        /// Loads in flight.
        readers: AtomicUsize,
    }

    // SAFETY: the nodes hold `Arc<T>`s shared between threads exactly as an
    // `ArcSwapOption<T>` does; every access is ordered by the atomics above.
    unsafe impl<T: Send + Sync> Send for SwapOption<T> {}
    // SAFETY: as above.
    unsafe impl<T: Send + Sync> Sync for SwapOption<T> {}

    /// What `load` returns: derefs to the loaded `Option<Arc<T>>`, like arc-swap's `Guard`.
    pub(crate) struct Guard<T>(Option<Arc<T>>);

    impl<T> Deref for Guard<T> {
        type Target = Option<Arc<T>>;
        fn deref(&self) -> &Option<Arc<T>> {
            &self.0
        }
    }

    impl<T> SwapOption<T> {
        pub(crate) fn new(value: Option<Arc<T>>) -> Self {
            Self { ptr: AtomicPtr::new(node(value)), readers: AtomicUsize::new(0) }
        }

        pub(crate) fn load(&self) -> Guard<T> {
            Guard(self.load_full())
        }

        /// The wait-free read: announce, load, clone, leave.
        pub(crate) fn load_full(&self) -> Option<Arc<T>> {
            self.readers.fetch_add(1, Ordering::AcqRel);
            let n = self.ptr.load(Ordering::Acquire);
            // SAFETY: `n` was published by `new` or `swap` and is freed only
            // by a writer that saw no reader in flight after unpublishing it;
            // we are in flight from before our load until after this read.
            let value = unsafe { (*n).value.with(|v| (*v).clone()) };
            self.readers.fetch_sub(1, Ordering::Release);
            value
        }

        pub(crate) fn swap(&self, value: Option<Arc<T>>) -> Option<Arc<T>> {
            // (Mutation `module_relaxed_publish`: publish without Release.)
            let publish = if sync::mutation("module_relaxed_publish") { Ordering::Relaxed } else { Ordering::AcqRel };
            // The node's value is written through the cell (a write loom
            // records) before the swap publishes it.
            let fresh = node(None);
            // SAFETY: `fresh` is not published yet: ours alone.
            unsafe { (*fresh).value.with_mut(|v| *v = value) };
            let old = self.ptr.swap(fresh, publish);
            // Grace period: a reader that announced itself after this point
            // (in the modification order of `readers`) loads the new node.
            while self.readers.fetch_add(0, Ordering::AcqRel) != 0 {
                sync::spin_hint();
            }
            // SAFETY: unpublished, and no reader that could have loaded it is
            // still in flight: the node is ours alone.
            let old = unsafe { Box::from_raw(old) };
            // SAFETY: as above; the readers' accesses happen before this one
            // (their Release decrement, our Acquire read-modify-write).
            old.value.with_mut(|v| unsafe { (*v).take() })
        }
    }

    impl<T> Drop for SwapOption<T> {
        fn drop(&mut self) {
            let n = self.ptr.load(Ordering::Acquire);
            // SAFETY: `&mut self`: no reader or writer is left; the node came
            // from `node`.
            let n = unsafe { Box::from_raw(n) };
            // SAFETY: as above.
            drop(n.value.with_mut(|v| unsafe { (*v).take() }));
        }
    }

    /// arc-swap's `Cache`: keeps the last loaded value and reloads when the
    /// shared pointer changed.
    pub(crate) struct Cache<A, T> {
        src: A,
        cached: T,
    }

    impl<A, U> Cache<A, Option<Arc<U>>>
    where
        A: Deref<Target = SwapOption<U>>,
    {
        pub(crate) fn new(src: A) -> Self {
            let cached = src.load_full();
            Self { src, cached }
        }

        pub(crate) fn load(&mut self) -> &Option<Arc<U>> {
            let cur = self.src.load_full();
            let same = match (&cur, &self.cached) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                self.cached = cur;
            }
            &self.cached
        }
    }
}
