// An object handle cannot be used while the GIL is released.
use subinterp::{Runtime, RuntimeConfig};

fn main() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    rt.main()
        .with_gil(|g| {
            let obj = g.list(&[]).unwrap();
            g.allow_threads(|| obj.len().unwrap());
        })
        .unwrap();
}
