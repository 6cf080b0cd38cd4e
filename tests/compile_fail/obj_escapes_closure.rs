// An object handle cannot leave the `with_gil` closure it was made in.
use subinterp::{Runtime, RuntimeConfig};

fn main() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let obj = rt.main().with_gil(|g| g.list(&[]).unwrap()).unwrap();
    drop(obj);
}
