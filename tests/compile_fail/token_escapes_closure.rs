// The GIL token cannot be returned out of `with_gil`.
use subinterp::{Runtime, RuntimeConfig};

fn main() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let g = rt.main().with_gil(|g| g).unwrap();
    let _ = g.id();
}
