// Each with_gil call brands its token with its own invariant lifetime, so
// two tokens never unify, even for the same interpreter (nested entry).
use subinterp::{Gil, Runtime, RuntimeConfig};

fn same_interpreter<'i>(_a: Gil<'i>, _b: Gil<'i>) {}

fn main() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let main = rt.main();
    main.with_gil(|outer| main.with_gil(|inner| same_interpreter(outer, inner)).unwrap()).unwrap();
}
