//! Process-wide map from arena address ranges to the heap that owns them.
//!
//! Consulted only to *explain* a refused free ("owned by interpreter N"), and
//! updated only when an arena is mapped or unmapped: never on the allocation
//! or free fast path. It is a plain `std` mutex rather than the sync facade's:
//! it lives in a `static` (loom primitives cannot outlive one model run) and is
//! no part of any lock-free protocol, so there is nothing for loom to check.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use crate::InterpreterId;

/// Who owns a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) id: InterpreterId,
    /// Process-unique heap number (interpreter ids repeat across runtimes).
    pub(crate) heap_uid: u64,
}

fn table() -> &'static Mutex<BTreeMap<usize, (usize, Owner)>> {
    static TABLE: OnceLock<Mutex<BTreeMap<usize, (usize, Owner)>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<usize, (usize, Owner)>> {
    // Every critical section below leaves the map consistent: poisoning can be ignored.
    table().lock().unwrap_or_else(|e| e.into_inner())
}

/// Records that `[start, end)` belongs to `owner`.
pub(crate) fn register(start: usize, end: usize, owner: Owner) {
    lock().insert(start, (end, owner));
}

/// Forgets the range that starts at `start`.
pub(crate) fn unregister(start: usize) {
    lock().remove(&start);
}

/// The owner of the arena containing `addr`, if any heap's does.
pub(crate) fn owner_of(addr: usize) -> Option<Owner> {
    let t = lock();
    let (_, &(end, owner)) = t.range(..=addr).next_back()?;
    (addr < end).then_some(owner)
}
