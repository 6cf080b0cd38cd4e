//! The one synchronization facade.
//!
//! Every atomic, lock, condition variable, thread-local, `Arc` and
//! `UnsafeCell` that a lock-free protocol of this crate uses comes from here.
//! In a normal build they are `std`'s; built with
//! `RUSTFLAGS="--cfg loom --cfg crossbeam_loom"` they are loom's (and
//! crossbeam-epoch is built in its loom mode), so the models in `loom_tests/`
//! check the production code, not a copy of it.
//!
//! Under loom:
//!
//! * [`Arc`] and [`Weak`] are a strong + weak counted pointer built from loom
//!   atomics (loom's own `Arc` has no weak count), with `std`'s protocol:
//!   the same upgrade, the same release/acquire pairs, leaks reported by loom.
//! * A timed wait ([`wait_timeout`]) really blocks: it returns when notified
//!   or when a modelled timer fires. Each timer is a loom thread that may fire
//!   at any point of the wait; a model grants timers with
//!   [`Runtime::loom_allow_timeouts`](crate::Runtime::loom_allow_timeouts)
//!   (none by default), so a wake-up that only a timeout would deliver is a
//!   deadlock that loom reports.
//! * [`mutation`] switches known-bad changes on at run time (see
//!   `loom_tests/mutations.sh`); without `cfg(loom)` it is the constant
//!   `false` and every mutated branch is compiled out.
//!
//! Crates that loom does not model (arc-swap, dashmap) are wrapped in
//! `module::facade`.

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard, Weak,
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};

#[cfg(loom)]
pub(crate) use self::loom_arc::{Arc, Weak};

/// Makes a weak reference from a strong one (facade over `Arc::downgrade`).
pub(crate) fn downgrade<T>(a: &Arc<T>) -> Weak<T> {
    Arc::downgrade(a)
}

/// Upgrades a weak reference (facade over `Weak::upgrade`).
pub(crate) fn upgrade<T>(w: &Weak<T>) -> Option<Arc<T>> {
    w.upgrade()
}

/// Declares a thread-local through std or loom.
macro_rules! facade_thread_local {
    ($($t:tt)*) => {
        #[cfg(not(loom))]
        std::thread_local!($($t)*);
        #[cfg(loom)]
        loom::thread_local!($($t)*);
    };
}
pub(crate) use facade_thread_local as thread_local;

/// A spin-loop hint that loom understands (a yield under loom).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Whether the known-bad change `name` is switched on for this run.
///
/// Only under `cfg(loom)`: the environment variable
/// `SUBINTERP_LOOM_MUTATION` (read once per process) names at most one
/// mutation; `loom_tests/mutations.sh` runs the models that must fail with
/// each. Unknown names are refused with a panic, so a typo in the script
/// cannot pass as a killed mutation.
#[cfg(loom)]
pub(crate) fn mutation(name: &'static str) -> bool {
    assert!(mutations::KNOWN.contains(&name), "mutation point {name:?} is not in the known list");
    mutations::active() == Some(name)
}

/// Without `cfg(loom)` no mutation exists: a constant `false`, so every
/// mutated branch is dead code that the compiler removes.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) const fn mutation(_name: &'static str) -> bool {
    false
}

#[cfg(loom)]
mod mutations {
    /// Every mutation point in the crate (`loom_tests/mutations.sh` runs each).
    pub(super) const KNOWN: &[&str] = &[
        "no_notify",
        "ignore_close_request",
        "no_priority",
        "no_forced_switch",
        "pending_relaxed_push",
        "pending_close_no_sentinel",
        "registry_no_freeze",
        "module_relaxed_publish",
        "main_close_unseen",
        "audit_relaxed_publish",
        "code_extra_racy_index",
    ];

    pub(super) fn active() -> Option<&'static str> {
        static ACTIVE: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let name = std::env::var("SUBINTERP_LOOM_MUTATION").ok().filter(|s| !s.is_empty())?;
            match KNOWN.iter().find(|k| **k == name) {
                Some(k) => Some(*k),
                None => panic!("SUBINTERP_LOOM_MUTATION={name}: unknown mutation (known: {KNOWN:?})"),
            }
        })
    }
}

/// Waits on `cond` for at most `dur`; `guard` must be a guard of `mutex`.
///
/// Returns the guard and whether the wait timed out. Under loom the wait
/// really blocks. If the model granted a timer (see the module docs), a loom
/// thread is started that may fire at any point of the wait (it takes the
/// mutex and wakes the waiters, as a timeout does); otherwise only a
/// notification ends the wait.
pub(crate) fn wait_timeout<'a, T: 'static>(
    cond: &Condvar,
    mutex: &'a Mutex<T>,
    guard: MutexGuard<'a, T>,
    dur: std::time::Duration,
) -> (MutexGuard<'a, T>, bool) {
    #[cfg(not(loom))]
    {
        let _ = mutex;
        let (g, r) = cond.wait_timeout(guard, dur).unwrap_or_else(std::sync::PoisonError::into_inner);
        (g, r.timed_out())
    }
    #[cfg(loom)]
    {
        let _ = dur;
        timers::wait(cond, mutex, guard)
    }
}

/// A timed wait used as a periodic re-check (the condition it waits for is
/// not always notified): returns the guard and whether it timed out.
///
/// Under loom a poll is "release the lock, let the other threads run,
/// re-take it, report a timeout": the caller re-checks its condition after
/// any other thread made progress.
pub(crate) fn wait_recheck<'a, T: 'static>(
    cond: &Condvar,
    mutex: &'a Mutex<T>,
    guard: MutexGuard<'a, T>,
    dur: std::time::Duration,
) -> (MutexGuard<'a, T>, bool) {
    #[cfg(not(loom))]
    {
        // Without loom a re-check is an ordinary timed wait.
        wait_timeout(cond, mutex, guard, dur)
    }
    #[cfg(loom)]
    {
        let _ = (cond, dur);
        drop(guard);
        loom::thread::yield_now();
        (lock(mutex), true)
    }
}

/// Locks a facade mutex, ignoring poisoning: every critical section in this
/// crate leaves its data consistent before any user code can panic.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Modelled timeouts: a per-execution budget of timer threads.
#[cfg(loom)]
mod timers {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

    use super::{lock, Condvar, Mutex, MutexGuard};

    loom::lazy_static! {
        /// Timers the running execution may still start (plain memory: read
        /// and written in execution order, it steers no interleaving).
        static ref BUDGET: AtomicUsize = AtomicUsize::new(0);
        /// Timers that fired in the running execution.
        static ref FIRED: AtomicUsize = AtomicUsize::new(0);
    }

    pub(super) fn allow(n: usize) {
        BUDGET.store(n, Relaxed);
    }

    pub(super) fn fired() -> usize {
        FIRED.load(Relaxed)
    }

    fn take() -> bool {
        BUDGET.fetch_update(Relaxed, Relaxed, |b| b.checked_sub(1)).is_ok()
    }

    /// What a timer thread needs, carried across the spawn.
    struct Ptrs<T: 'static> {
        cond: *const Condvar,
        mutex: *const Mutex<T>,
        state: std::sync::Arc<State>,
    }
    // SAFETY: the pointers are only dereferenced by the timer thread, which
    // the waiter joins before the borrows they came from end; `Condvar` and
    // `Mutex<T>` are `Sync` for the `T`s used here (`Send` data).
    unsafe impl<T: 'static> Send for Ptrs<T> {}

    #[derive(Default)]
    struct State {
        /// Set by the timer when it fired (under the mutex).
        fired: AtomicBool,
        /// Set by the waiter once it woke (under the mutex): the timer is moot.
        done: AtomicBool,
    }

    pub(super) fn wait<'a, T: 'static>(
        cond: &Condvar,
        mutex: &'a Mutex<T>,
        guard: MutexGuard<'a, T>,
    ) -> (MutexGuard<'a, T>, bool) {
        if !take() {
            return (cond.wait(guard).unwrap_or_else(|e| e.into_inner()), false);
        }
        let state = std::sync::Arc::new(State::default());
        let ptrs = Ptrs { cond, mutex, state: state.clone() };
        // The waiter holds the mutex until it waits, so the timer cannot fire
        // before the wait has begun: a timeout is never lost, and it may fire
        // at any later point, before or after a notification.
        let timer = loom::thread::spawn(move || {
            let ptrs = ptrs;
            // SAFETY: the waiter joins this thread before `wait` returns, so
            // the mutex and condition variable are still borrowed by it.
            let (cond, mutex) = unsafe { (&*ptrs.cond, &*ptrs.mutex) };
            let g = lock(mutex);
            if !ptrs.state.done.load(Relaxed) {
                ptrs.state.fired.store(true, Relaxed);
                FIRED.fetch_add(1, Relaxed);
                cond.notify_all();
            }
            drop(g);
        });
        let g = cond.wait(guard).unwrap_or_else(|e| e.into_inner());
        state.done.store(true, Relaxed);
        let timed_out = state.fired.load(Relaxed);
        drop(g);
        timer.join().expect("a timer thread does not panic");
        (lock(mutex), timed_out)
    }
}

#[cfg(loom)]
impl crate::Runtime {
    /// Grants the running loom execution `n` modelled timeouts (timer
    /// threads, each taking one of loom's thread slots); call it first in a
    /// model's closure. Without it no timed wait ever times out.
    #[doc(hidden)]
    pub fn loom_allow_timeouts(n: usize) {
        timers::allow(n);
    }

    /// Modelled timeouts that fired so far in the running loom execution.
    #[doc(hidden)]
    pub fn loom_timeouts_fired() -> usize {
        timers::fired()
    }
}

/// `UnsafeCell` with loom's `with`/`with_mut` interface in both builds, so that
/// loom can check every access made through it.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        Self(std::cell::UnsafeCell::new(v))
    }
    /// Runs `f` with a shared raw pointer to the value.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    /// Runs `f` with an exclusive raw pointer to the value.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A strong + weak counted pointer made of loom atomics, for loom builds.
///
/// loom's `Arc` has no weak count, yet the registry's entries own a weak
/// count of their record and readers upgrade it; this type gives the models
/// the protocol `std`'s `Arc` uses: a strong count, a weak count of which
/// all strong references together hold one, an upgrade that increments the
/// strong count only while it is not zero, and release decrements followed
/// by an acquire fence by the thread that drops the last one. The memory is
/// tracked by loom, which reports it if an execution leaks it.
#[cfg(loom)]
mod loom_arc {
    use std::mem::ManuallyDrop;
    use std::ptr::NonNull;

    use loom::sync::atomic::{fence, AtomicUsize, Ordering};

    /// The allocation. `data` comes first (`repr(C)`), so a pointer to the
    /// value is a pointer to the allocation, as `into_raw`/`from_raw` need.
    #[repr(C)]
    struct Inner<T> {
        data: ManuallyDrop<T>,
        strong: AtomicUsize,
        weak: AtomicUsize,
        _leak: loom::alloc::Track<()>,
    }

    pub(crate) struct Arc<T> {
        ptr: NonNull<Inner<T>>,
    }

    pub(crate) struct Weak<T> {
        ptr: NonNull<Inner<T>>,
    }

    // SAFETY: as for `std::sync::Arc`: the value is shared between threads
    // (`Sync`) and dropped by whichever thread drops the last strong
    // reference (`Send`); the counts are atomics.
    unsafe impl<T: Send + Sync> Send for Arc<T> {}
    // SAFETY: as above.
    unsafe impl<T: Send + Sync> Sync for Arc<T> {}
    // SAFETY: as above; a weak reference only touches the counts.
    unsafe impl<T: Send + Sync> Send for Weak<T> {}
    // SAFETY: as above.
    unsafe impl<T: Send + Sync> Sync for Weak<T> {}

    impl<T> Arc<T> {
        pub(crate) fn new(value: T) -> Self {
            let inner = Box::new(Inner {
                data: ManuallyDrop::new(value),
                strong: AtomicUsize::new(1),
                weak: AtomicUsize::new(1),
                _leak: loom::alloc::Track::new(()),
            });
            Self { ptr: NonNull::from(Box::leak(inner)) }
        }

        fn inner(&self) -> &Inner<T> {
            // SAFETY: a strong reference keeps the allocation (and the value) alive.
            unsafe { self.ptr.as_ref() }
        }

        pub(crate) fn ptr_eq(a: &Self, b: &Self) -> bool {
            a.ptr == b.ptr
        }

        pub(crate) fn as_ptr(this: &Self) -> *const T {
            this.ptr.as_ptr().cast_const().cast()
        }

        pub(crate) fn into_raw(this: Self) -> *const T {
            let p = Self::as_ptr(&this);
            std::mem::forget(this);
            p
        }

        /// # Safety
        /// `p` came from [`Self::into_raw`] (or `Weak::into_raw` with a strong
        /// count owned by the caller) and its strong count is given back.
        pub(crate) unsafe fn from_raw(p: *const T) -> Self {
            // SAFETY: `p` points to the start of a live `Inner<T>` (see `Inner`).
            Self { ptr: unsafe { NonNull::new_unchecked(p.cast_mut().cast()) } }
        }

        pub(crate) fn downgrade(this: &Self) -> Weak<T> {
            this.inner().weak.fetch_add(1, Ordering::Relaxed);
            Weak { ptr: this.ptr }
        }
    }

    impl<T> Clone for Arc<T> {
        fn clone(&self) -> Self {
            // Relaxed: a new reference is made from an existing one, which
            // already orders everything the new owner may see.
            self.inner().strong.fetch_add(1, Ordering::Relaxed);
            Self { ptr: self.ptr }
        }
    }

    impl<T> std::ops::Deref for Arc<T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.inner().data
        }
    }

    impl<T: std::fmt::Debug> std::fmt::Debug for Arc<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            (**self).fmt(f)
        }
    }

    impl<T> Drop for Arc<T> {
        fn drop(&mut self) {
            // Release: our uses of the value happen before its drop.
            if self.inner().strong.fetch_sub(1, Ordering::Release) != 1 {
                return;
            }
            // Acquire: every other owner's uses happen before the drop below.
            fence(Ordering::Acquire);
            // SAFETY: the last strong reference: nobody can reach the value
            // any more (an upgrade sees the zero and fails).
            unsafe { ManuallyDrop::drop(&mut (*self.ptr.as_ptr()).data) };
            // The weak count the strong references held together.
            drop(Weak { ptr: self.ptr });
        }
    }

    impl<T> Weak<T> {
        /// A strong reference, unless the value is gone.
        pub(crate) fn upgrade(&self) -> Option<Arc<T>> {
            // SAFETY: a weak reference keeps the allocation (the counts) alive.
            let inner = unsafe { self.ptr.as_ref() };
            let mut n = inner.strong.load(Ordering::Relaxed);
            loop {
                if n == 0 {
                    return None;
                }
                // Acquire: pairs with the release decrements, so a reader
                // that gets a reference sees the value as its owners left it.
                match inner.strong.compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => return Some(Arc { ptr: self.ptr }),
                    Err(cur) => n = cur,
                }
            }
        }

        /// # Safety
        /// `p` points to a value made by [`Arc::new`] whose weak count has one
        /// count owned by the caller, given back to the result.
        pub(crate) unsafe fn from_raw(p: *const T) -> Self {
            // SAFETY: as in `Arc::from_raw`.
            Self { ptr: unsafe { NonNull::new_unchecked(p.cast_mut().cast()) } }
        }
    }

    impl<T> Drop for Weak<T> {
        fn drop(&mut self) {
            // SAFETY: this weak count keeps the allocation alive until here.
            let inner = unsafe { self.ptr.as_ref() };
            if inner.weak.fetch_sub(1, Ordering::Release) != 1 {
                return;
            }
            fence(Ordering::Acquire);
            // SAFETY: the last reference of any kind: the allocation came from
            // `Box::leak` in `Arc::new`; the value was dropped already
            // (`ManuallyDrop`), the counts and the leak tracker go now.
            drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
        }
    }
}
