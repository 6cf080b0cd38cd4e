// The GIL token cannot be stashed in a variable that outlives the closure.
use subinterp::{Gil, Runtime, RuntimeConfig};

fn main() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut stash: Option<Gil<'_>> = None;
    rt.main().with_gil(|g| stash = Some(g)).unwrap();
    let _ = stash.map(|g| g.id());
}
