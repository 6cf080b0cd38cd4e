//! The one synchronization facade.
//!
//! Every atomic, lock, condition variable, thread-local and `UnsafeCell` that a
//! lock-free protocol of this crate uses comes from here. In a normal build they
//! are `std`'s; built with `RUSTFLAGS="--cfg loom --cfg crossbeam_loom"` they are
//! loom's (and crossbeam-epoch is built in its loom mode), so the models in
//! `loom_tests/` check the production code, not a copy of it.
//!
//! Crates that loom does not model (arc-swap, dashmap) are wrapped in
//! [`swap`] and [`map`]: under loom those wrappers become loom-visible
//! stand-ins built from loom's `Mutex`/`RwLock`.

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard, Weak,
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};

/// loom's `Arc` has no `Weak`; under loom a weak runtime reference is a strong
/// one (models never rely on the runtime dropping while records live).
#[cfg(loom)]
pub(crate) type Weak<T> = Arc<T>;

/// Makes a weak reference from a strong one (facade over `Arc::downgrade`).
#[cfg(not(loom))]
pub(crate) fn downgrade<T>(a: &Arc<T>) -> Weak<T> {
    Arc::downgrade(a)
}

/// Under loom a "weak" reference is a clone (see [`Weak`]).
#[cfg(loom)]
pub(crate) fn downgrade<T>(a: &Arc<T>) -> Weak<T> {
    a.clone()
}

/// Upgrades a weak reference (facade over `Weak::upgrade`).
#[cfg(not(loom))]
pub(crate) fn upgrade<T>(w: &Weak<T>) -> Option<Arc<T>> {
    w.upgrade()
}

/// Under loom the reference is strong already.
#[cfg(loom)]
pub(crate) fn upgrade<T>(w: &Weak<T>) -> Option<Arc<T>> {
    Some(w.clone())
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

/// Waits on `cond` for at most `dur`; `guard` must be a guard of `mutex`.
///
/// Returns the guard and whether the wait timed out. Under loom time does not
/// exist, so a timed wait is modelled as "release the lock, let any other
/// thread run, re-take the lock, report a timeout": every interleaving in
/// which the timeout fires before a notification is explored.
pub(crate) fn wait_timeout<'a, T>(
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
