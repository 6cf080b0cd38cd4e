//! Loom stand-ins for the two crates loom cannot see: arc-swap and dashmap.
//!
//! In a normal build this module re-exports `arc_swap::ArcSwapOption` and
//! `arc_swap::Cache`, and wraps a `DashMap` behind a small clone-out API. Built
//! with `--cfg loom`, the same names are stand-ins made of loom's `RwLock` and
//! `Mutex`, so the models in `loom_tests/module.rs` explore our protocol (copy,
//! set, swap among serialized writers; lock-free readers) rather than running
//! code loom cannot observe. Only the methods the module tables use exist.
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

/// `ArcSwapOption` and `Cache` built from loom's `RwLock`: a load is a read
/// lock and a clone, a swap a write lock. Readers see the old or the new table,
/// never a torn one, which is the property the models check.
#[cfg(loom)]
mod loom_swap {
    use std::ops::Deref;
    use std::sync::Arc;

    pub(crate) struct SwapOption<T> {
        cell: loom::sync::RwLock<Option<Arc<T>>>,
    }

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
            Self { cell: loom::sync::RwLock::new(value) }
        }

        pub(crate) fn load(&self) -> Guard<T> {
            Guard(self.load_full())
        }

        pub(crate) fn load_full(&self) -> Option<Arc<T>> {
            self.cell.read().unwrap_or_else(|e| e.into_inner()).clone()
        }

        pub(crate) fn swap(&self, value: Option<Arc<T>>) -> Option<Arc<T>> {
            std::mem::replace(&mut *self.cell.write().unwrap_or_else(|e| e.into_inner()), value)
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
