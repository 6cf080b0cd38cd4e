// Inside allow_threads the GIL is released: the token cannot be used there.
use subinterp::{Runtime, RuntimeConfig};

fn main() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    rt.main().with_gil(|g| g.allow_threads(|| g.checkpoint())).unwrap().unwrap();
}
