// A field named twice would be reported twice to the collector, which would
// then free a live object: the macro refuses it.
use subinterp::{trace_fields, Member};

struct Node {
    next: Member,
}
trace_fields!(Node { next, next });

fn main() {}
