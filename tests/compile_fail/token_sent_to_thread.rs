// The GIL token is !Send: it cannot move to another thread, not even a scoped one.
use subinterp::{Runtime, RuntimeConfig};

fn main() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    rt.main()
        .with_gil(|g| {
            std::thread::scope(|s| {
                s.spawn(move || g.checkpoint());
            });
        })
        .unwrap();
}
