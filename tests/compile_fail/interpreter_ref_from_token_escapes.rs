// Borrows taken from the token live no longer than the closure.
use subinterp::{Interpreter, Runtime, RuntimeConfig};

fn main() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let main = rt.main();
    let r: &Interpreter = main.with_gil(|g| g.interpreter()).unwrap();
    let _ = r.id();
}
