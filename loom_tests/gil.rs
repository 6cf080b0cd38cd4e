//! GIL: mutual exclusion, no lost wake-up, drop request / forced switch.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use subinterp::{InterpreterConfig, Runtime, RuntimeConfig};

struct Shared(UnsafeCell<u32>);
// SAFETY: only touched under the interpreter's GIL, which is what the model checks.
unsafe impl Sync for Shared {}

#[test]
fn mutual_exclusion_and_no_lost_wakeup() {
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let counter = Arc::new(Shared(UnsafeCell::new(0)));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (a, c) = (a.clone(), counter.clone());
                // loom reports a data race on the cell if two threads were
                // inside at once, and a deadlock if a release lost a wake-up.
                thread::spawn(move || {
                    a.with_gil(|_| {
                        // SAFETY: under the GIL only this thread touches the cell
                        // (what the model checks).
                        c.0.with_mut(|p| unsafe { *p += 1 })
                    })
                    .unwrap()
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        a.with_gil(|_| {
            // SAFETY: both writers have been joined; we hold the GIL.
            counter.0.with(|p| assert_eq!(unsafe { *p }, 2))
        })
        .unwrap();
    });
}

#[test]
fn drop_request_and_forced_switch() {
    // A CPU-bound holder loops on checkpoint until the waiter has run. The
    // waiter's timed wait (modelled as "may time out at any point") sets the
    // drop request; the holder yields and must let the waiter in before it
    // takes the GIL back. Loom explores every interleaving of the handshake.
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let waiter_ran = Arc::new(AtomicBool::new(false));
        let holder_in = Arc::new(AtomicBool::new(false));
        let (a2, w2, h2) = (a.clone(), waiter_ran.clone(), holder_in.clone());
        let holder = thread::spawn(move || {
            a2.with_gil(|g| {
                h2.store(true, Ordering::SeqCst);
                while !w2.load(Ordering::SeqCst) {
                    g.checkpoint().unwrap();
                    thread::yield_now();
                }
            })
            .unwrap();
        });
        while !holder_in.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        a.with_gil(|_| waiter_ran.store(true, Ordering::SeqCst)).unwrap();
        holder.join().unwrap();
        assert!(a.gil_stats().forced_switches >= 1);
    });
}

#[test]
fn returning_from_allow_threads_asks_for_the_gil() {
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let back = Arc::new(AtomicBool::new(false));
        let (a2, b2) = (a.clone(), back.clone());
        let io = thread::spawn(move || {
            a2.with_gil(move |g| {
                g.allow_threads(thread::yield_now);
                b2.store(true, Ordering::SeqCst);
            })
            .unwrap();
        });
        a.with_gil(|g| {
            // Either the I/O thread finished before we got in, or it is coming
            // back and asks us to yield; we must not starve it.
            while !back.load(Ordering::SeqCst) && a.is_running_elsewhere_hint() {
                g.checkpoint().unwrap();
                thread::yield_now();
            }
        })
        .unwrap();
        io.join().unwrap();
        assert!(back.load(Ordering::SeqCst));
    });
}

trait Hint {
    fn is_running_elsewhere_hint(&self) -> bool;
}
impl Hint for subinterp::Interpreter {
    /// Whether another thread is inside (waiting or detached).
    fn is_running_elsewhere_hint(&self) -> bool {
        self.thread_count() > 1
    }
}
