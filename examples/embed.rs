//! The embedding example from the README (kept identical; `cargo run --example embed`).

use subinterp::{Error, InterpreterConfig, Runtime, RuntimeConfig};

fn main() -> Result<(), Error> {
    let rt = Runtime::new(RuntimeConfig::default())?;

    // One interpreter per worker thread, each with its own GIL.
    let workers: Vec<_> = (0..2).map(|_| rt.create(InterpreterConfig::isolated())).collect::<Result<_, _>>()?;

    let results: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter()
            .map(|w| {
                s.spawn(move || {
                    w.with_gil(|g| {
                        let mut acc = 0u64;
                        for i in 0..1_000_000u64 {
                            acc = acc.wrapping_add(i);
                            g.checkpoint()?; // safepoint: pending calls, interrupts, GIL hand-off
                        }
                        // Blocking work without the GIL; other threads of this interpreter run.
                        let extra = g.allow_threads(|| 1);
                        Ok::<_, Error>(acc + extra)
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap().unwrap()).collect()
    });
    assert_eq!(results.len(), 2);

    // Ask an interpreter from any thread to run something under its GIL.
    workers[0].add_pending_call(|g| println!("hello from interpreter {}", g.id()))?;
    workers[0].with_gil(|g| g.checkpoint())??;

    for w in workers {
        w.close()?; // refused with a typed error while another thread is inside
    }
    Ok(())
}
