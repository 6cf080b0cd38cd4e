//! GIL: mutual exclusion and no lost wake-up, drop request and forced switch,
//! a returning thread's priority among three threads, a shared GIL.
//!
//! Under loom a timed wait really blocks: it ends on a notification or on a
//! modelled timeout, and a model gets timeouts only through
//! `Runtime::loom_allow_timeouts`. A waiter that only a timeout would wake is
//! a deadlock loom reports.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use subinterp::{GilMode, InterpreterConfig, InterpreterState, Runtime, RuntimeConfig};

struct Shared(UnsafeCell<u32>);
// SAFETY: only touched under a GIL, which is what the models check.
unsafe impl Sync for Shared {}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Shared(UnsafeCell::new(0)))
    }
    /// Increments the cell: call under the GIL that guards it.
    fn bump(&self) {
        // SAFETY: under the GIL only this thread touches the cell (loom
        // reports a race if two threads were inside at once).
        self.0.with_mut(|p| unsafe { *p += 1 })
    }
    fn get(&self) -> u32 {
        // SAFETY: called after every writer has been joined.
        self.0.with(|p| unsafe { *p })
    }
}

/// Spins (yielding to loom) until `flag` is set.
fn wait_for(flag: &AtomicBool) {
    while !flag.load(Ordering::SeqCst) {
        thread::yield_now();
    }
}

/// How many checkpoints a CPU-bound holder may pass before the models say it
/// was never asked to yield (each round yields to the other threads, which run
/// until they block).
const HOLDER_ROUNDS: usize = 40;

#[test]
fn mutual_exclusion_and_no_lost_wakeup() {
    // No timeouts: a waiter that parks is woken by the release or never.
    // Kills `no_notify`.
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let counter = Shared::new();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (a, c) = (a.clone(), counter.clone());
                thread::spawn(move || a.with_gil(|_| c.bump()).unwrap())
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(counter.get(), 2);
        let s = a.gil_stats();
        assert_eq!(s.acquisitions, 2, "{s:?}");
    });
}

#[test]
fn drop_request_and_forced_switch() {
    // A CPU-bound holder loops on checkpoint until the waiter has run. The
    // waiter has one modelled timeout (its switch interval may expire at any
    // point of its wait): that sets the drop request; the holder yields and
    // must let the waiter in before it takes the GIL back. Kills
    // `no_forced_switch`.
    crate::model(|| {
        Runtime::loom_allow_timeouts(1);
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let waiter_ran = Arc::new(AtomicBool::new(false));
        let holder_in = Arc::new(AtomicBool::new(false));
        let (a2, w2, h2) = (a.clone(), waiter_ran.clone(), holder_in.clone());
        let holder = thread::spawn(move || {
            a2.with_gil(|g| {
                h2.store(true, Ordering::SeqCst);
                let mut rounds = 0;
                while !w2.load(Ordering::SeqCst) {
                    assert!(rounds < HOLDER_ROUNDS, "the holder kept the GIL: the waiter never got in");
                    rounds += 1;
                    g.checkpoint().unwrap();
                    thread::yield_now();
                }
            })
            .unwrap();
        });
        wait_for(&holder_in);
        a.with_gil(|_| waiter_ran.store(true, Ordering::SeqCst)).unwrap();
        holder.join().unwrap();
        assert_eq!(Runtime::loom_timeouts_fired(), 1, "only the interval's expiry asks a plain holder to yield");
        assert!(a.gil_stats().forced_switches >= 1);
    });
}

#[test]
fn a_returning_thread_gets_the_gil_among_three() {
    // Three threads on one GIL and no timeouts at all: a CPU-bound holder
    // (this thread), a plain waiter, and a thread coming back from
    // `allow_threads`. The holder leaves only once the returning thread is
    // back inside, so it must yield to it; with no switch interval ever
    // expiring, only the returning thread's priority can ask it to. Kills
    // `no_priority`. (Capped at one preemption in CI: see the docs.)
    crate::model_capped(1, || {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let r_in = Arc::new(AtomicBool::new(false));
        let h_in = Arc::new(AtomicBool::new(false));
        let r_back = Arc::new(AtomicBool::new(false));
        let returner = {
            let (a, r_in, h_in, r_back) = (a.clone(), r_in.clone(), h_in.clone(), r_back.clone());
            thread::spawn(move || {
                a.with_gil(|g| {
                    r_in.store(true, Ordering::SeqCst);
                    // The blocking call lasts until the holder is inside.
                    g.allow_threads(|| wait_for(&h_in));
                    r_back.store(true, Ordering::SeqCst);
                })
                .unwrap();
            })
        };
        let waiter = {
            let a = a.clone();
            thread::spawn(move || a.with_gil(|_| ()).unwrap())
        };
        wait_for(&r_in);
        a.with_gil(|g| {
            h_in.store(true, Ordering::SeqCst);
            let mut rounds = 0;
            while !r_back.load(Ordering::SeqCst) {
                assert!(rounds < HOLDER_ROUNDS, "the returning thread never asked the holder to yield");
                rounds += 1;
                g.checkpoint().unwrap();
                thread::yield_now();
            }
        })
        .unwrap();
        returner.join().unwrap();
        waiter.join().unwrap();
        let s = a.gil_stats();
        assert!(s.forced_switches >= 1, "the holder yielded to the returning thread: {s:?}");
        assert_eq!(Runtime::loom_timeouts_fired(), 0);
    });
}

#[test]
fn shared_gil_excludes_and_runs_a_deferred_close() {
    // Main and a subinterpreter under main's GIL: a thread in each, never
    // inside at once (one cell, no lock but the GIL); meanwhile the
    // subinterpreter's last id reference goes. Its close waits its turn for
    // the shared GIL and, if the subinterpreter's thread is waiting for it
    // too, is deferred to that thread's exit. A second killer of
    // `ignore_close_request`, on the shared GIL's word. (Capped at two
    // preemptions in CI: see the docs.)
    crate::model_capped(2, || {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let main = rt.main();
        let sub = rt.create(InterpreterConfig { gil: GilMode::Shared, ..InterpreterConfig::isolated() }).unwrap();
        sub.set_requires_idref(true);
        sub.incref_id().unwrap();
        let cell = Shared::new();
        let in_main = {
            let (main, cell) = (main.clone(), cell.clone());
            thread::spawn(move || main.with_gil(|_| cell.bump()).unwrap())
        };
        let in_sub = {
            let (sub, cell) = (sub.clone(), cell.clone());
            thread::spawn(move || sub.with_gil(|_| cell.bump()).is_ok())
        };
        sub.decref_id().unwrap();
        in_main.join().unwrap();
        let entered = in_sub.join().unwrap();
        assert_eq!(cell.get(), 1 + u32::from(entered));
        assert_eq!(sub.state(), InterpreterState::Closed, "the deferred close was lost");
        assert_eq!(main.state(), InterpreterState::Ready);
        assert_eq!(rt.ids(), vec![0]);
    });
}
