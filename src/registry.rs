//! The registry of live interpreters.
//!
//! A lock-free, epoch-reclaimed, copy-on-write **chunked list** of
//! `(id, record)` pairs sorted by id: a small top array of chunk pointers
//! (each tagged with the chunk's first id) over immutable chunks of at most
//! [`CHUNK`] entries.
//!
//! * **Lookup by id** pins the runtime's own epoch `Collector`, loads the top
//!   array with one atomic load, binary-searches it, then the chunk: wait-free,
//!   O(log n) (about 10 probes with 1,000 interpreters), never a walk.
//! * **Iteration** walks one published top array: a consistent snapshot that
//!   holds every interpreter alive through the walk exactly once, in id order,
//!   and never touches freed memory (the guard is never held across user code:
//!   the walk copies what it needs first).
//! * **Insert / remove** copy the one chunk they change and the top array,
//!   publish the new top with one compare-and-swap, and retry if another
//!   writer won (lock-free). The old top, the replaced chunk and, on removal,
//!   the registry's reference to the record go to the epoch collector and are
//!   freed once no pinned reader can see them. Chunks that did not change are
//!   shared between versions, so a write dirties a few cache lines that
//!   readers use, not the whole list: lookups stay fast while other threads
//!   create and close interpreters.
//!
//! Each runtime has its own `Collector`, so a runtime's garbage never waits on
//! another runtime's readers and [`Registry::quiesce`] can drain it to zero.

use crossbeam_epoch::{self as epoch, Atomic, Collector, Guard, Owned, Shared};

use crate::interp::tstate::ThreadCtx;
use crate::interp::Record;
use crate::sync::{self, Arc, AtomicUsize, Ordering};
use crate::InterpreterId;

/// Entries per chunk at most.
#[cfg(not(any(test, loom)))]
pub(crate) const CHUNK: usize = 64;
/// Small chunks under test and loom, so that models and unit tests exercise
/// chunk splits, multi-chunk tops and emptied chunks.
#[cfg(any(test, loom))]
pub(crate) const CHUNK: usize = 2;

/// One registry entry. `rec` owns references to the record as described in
/// [`own`]: a strong one that keeps it alive while it is registered and
/// (outside loom) a weak one that keeps its allocation valid for readers until
/// the epoch collector retires the entry.
#[derive(Clone, Copy)]
struct Entry {
    id: InterpreterId,
    rec: *const Record,
}

/// An immutable, sorted, non-empty run of entries.
struct Chunk {
    entries: Box<[Entry]>,
}

impl Chunk {
    fn alloc(entries: Vec<Entry>) -> *const Chunk {
        debug_assert!(!entries.is_empty() && entries.len() <= CHUNK);
        Box::into_raw(Box::new(Chunk { entries: entries.into_boxed_slice() }))
    }
}

/// The published root: `(first id, chunk)` pairs sorted by first id.
struct Top {
    chunks: Vec<(InterpreterId, *const Chunk)>,
    len: usize,
}

impl Top {
    /// The chunk that holds `id`, or would hold it: the last one whose first
    /// id is not above it (the first chunk if `id` is below all of them).
    fn chunk_for(&self, id: InterpreterId) -> Option<usize> {
        if self.chunks.is_empty() {
            return None;
        }
        Some(self.chunks.partition_point(|(first, _)| *first <= id).saturating_sub(1))
    }

    /// The entry for `id`, if registered.
    fn find(&self, id: InterpreterId) -> Option<Entry> {
        let i = self.chunk_for(id)?;
        // SAFETY: chunks reachable from a published top stay allocated until
        // every guard that could have loaded that top is dropped (they are
        // retired through the epoch collector only after being unlinked).
        let chunk = unsafe { &*self.chunks[i].1 };
        let j = chunk.entries.binary_search_by_key(&id, |e| e.id).ok()?;
        Some(chunk.entries[j])
    }

    /// Every entry, in id order.
    fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.chunks.iter().flat_map(|(_, c)| {
            // SAFETY: as in `find`.
            unsafe { &**c }.entries.iter().copied()
        })
    }
}

/// What a write publishes: the new top, the chunks it allocated (freed if the
/// publication loses a race), the chunk it replaced and the entry it removed.
struct Plan {
    top: Top,
    fresh: Vec<*const Chunk>,
    replaced: Option<*const Chunk>,
    removed: Option<Entry>,
}

/// A raw record pointer that a deferred function may carry to another thread.
struct SendPtr(*const Record);
// SAFETY: `Record` is `Send + Sync`; the pointer is only given to
// `own::release`, once, by the deferred function.
unsafe impl Send for SendPtr {}

/// A raw chunk or top pointer carried by a deferred function.
struct SendBox<T>(*mut T);
// SAFETY: tops and chunks hold plain ids and pointers to `Send + Sync` records;
// each is freed exactly once, by the deferred function that carries it.
unsafe impl<T> Send for SendBox<T> {}

/// How an entry owns its record.
///
/// Outside loom an entry holds a strong and a weak count. Removal drops the
/// strong count at once, on the closing thread, so the record's contents (its
/// tables, its reference to the runtime) are freed by whoever drops the last
/// handle, never by the epoch collector; only the weak count, which keeps the
/// allocation valid for readers that loaded the entry, waits for the epoch.
/// Readers upgrade the weak count. The collector's deferred work is therefore
/// a deallocation, cheap enough that readers that happen to run it do not
/// slow down, and a retired entry never keeps a runtime alive.
///
/// loom's `Arc` has no weak count: under loom an entry holds one strong count,
/// released by the epoch collector, and readers increment it.
mod own {
    use super::Record;
    use crate::sync::Arc;

    /// Turns a record into an entry pointer that owns it.
    pub(super) fn publish(rec: Arc<Record>) -> *const Record {
        #[cfg(not(loom))]
        std::mem::forget(Arc::downgrade(&rec));
        Arc::into_raw(rec)
    }

    /// A new strong reference from an entry, or `None` if its record is gone.
    ///
    /// # Safety
    /// `p` came from [`publish`], and [`release`] has not run for it.
    pub(super) unsafe fn acquire(p: *const Record) -> Option<Arc<Record>> {
        #[cfg(not(loom))]
        {
            // SAFETY: the entry's weak count (made in `publish`, given back in
            // `release`) keeps the allocation valid; the `ManuallyDrop` leaves
            // that count to the entry.
            let weak = std::mem::ManuallyDrop::new(unsafe { std::sync::Weak::from_raw(p) });
            weak.upgrade()
        }
        #[cfg(loom)]
        // SAFETY: the entry's strong count keeps the record alive until `release`.
        unsafe {
            Arc::increment_strong_count(p);
            Some(Arc::from_raw(p))
        }
    }

    /// Called once, when the entry is unlinked: drops what may go at once and
    /// returns what must wait for readers (pass it to [`release`]).
    ///
    /// # Safety
    /// `p` came from [`publish`]; `unlink` runs once per `publish`.
    pub(super) unsafe fn unlink(p: *const Record) -> *const Record {
        #[cfg(not(loom))]
        // SAFETY: gives back the strong count made in `publish`.
        drop(unsafe { Arc::from_raw(p) });
        p
    }

    /// Gives back what [`unlink`] left, once no reader can reach the entry.
    ///
    /// # Safety
    /// `p` came from [`unlink`]; `release` runs once per `unlink`.
    pub(super) unsafe fn release(p: *const Record) {
        #[cfg(not(loom))]
        // SAFETY: gives back the weak count made in `publish`.
        drop(unsafe { std::sync::Weak::from_raw(p) });
        #[cfg(loom)]
        // SAFETY: gives back the strong count made in `publish`.
        drop(unsafe { Arc::from_raw(p) });
    }
}

pub(crate) struct Registry {
    uid: u64,
    alive: Arc<()>,
    collector: Collector,
    head: Atomic<Top>,
    /// Deferred frees not run yet.
    garbage: Arc<AtomicUsize>,
}

// SAFETY: the raw pointers inside the published lists point to `Send + Sync`
// records; all access goes through atomics and epoch guards.
unsafe impl Send for Registry {}
// SAFETY: as above.
unsafe impl Sync for Registry {}

impl Registry {
    pub(crate) fn new(uid: u64) -> Self {
        Self {
            uid,
            alive: Arc::new(()),
            collector: Collector::new(),
            head: Atomic::new(Top { chunks: Vec::new(), len: 0 }),
            garbage: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Pins this registry's collector on the calling thread.
    #[inline]
    fn pin(&self) -> Guard {
        ThreadCtx::with(|ctx| ctx.pin_epoch(self.uid, &self.alive, &self.collector))
            // During thread-local teardown, fall back to a fresh handle (its
            // guard keeps the participant registered until dropped).
            .unwrap_or_else(|| self.collector.register().pin())
    }

    /// Runs `f` on the current top with the guard pinned.
    fn read<R>(&self, f: impl FnOnce(&Top) -> R) -> R {
        let guard = self.pin();
        let top = self.head.load(Ordering::Acquire, &guard);
        // SAFETY: the head is never null while the registry is alive, and the
        // top it points to is freed only after every guard that could have
        // loaded it is dropped.
        f(unsafe { top.deref() })
    }

    /// Looks up `id`, returning a new strong reference to its record.
    #[inline]
    pub(crate) fn get(&self, id: InterpreterId) -> Option<Arc<Record>> {
        self.read(|top| {
            let e = top.find(id)?;
            // SAFETY: `e` was reachable from a top loaded under our guard, so
            // its retirement (see `own::unlink`) has not run yet.
            unsafe { own::acquire(e.rec) }
        })
    }

    /// Strong references to every registered record, in id order.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Record>> {
        self.read(|top| {
            top.entries()
                // SAFETY: as in `get`.
                .filter_map(|e| unsafe { own::acquire(e.rec) })
                .collect()
        })
    }

    /// Registered ids, in order.
    pub(crate) fn ids(&self) -> Vec<InterpreterId> {
        self.read(|top| top.entries().map(|e| e.id).collect())
    }

    /// How many interpreters are registered.
    pub(crate) fn len(&self) -> usize {
        self.read(|top| top.len)
    }

    /// Publishes a new top computed from the current one; `edit` returns
    /// `None` to leave the registry unchanged. Returns the removed entry, if any.
    fn update(&self, edit: impl Fn(&Top) -> Option<Plan>) -> Option<Option<Entry>> {
        let guard = self.pin();
        let mut cur = self.head.load(Ordering::Acquire, &guard);
        loop {
            // SAFETY: as in `read`.
            let plan = edit(unsafe { cur.deref() })?;
            match self.head.compare_exchange(cur, Owned::new(plan.top), Ordering::AcqRel, Ordering::Acquire, &guard) {
                Ok(_) => {
                    self.retire_top(SendBox(cur.as_raw() as *mut Top), &guard);
                    if let Some(c) = plan.replaced {
                        self.retire(SendBox(c as *mut Chunk), &guard);
                    }
                    if let Some(e) = plan.removed {
                        self.retire_record(e.rec, &guard);
                    }
                    return Some(plan.removed);
                }
                Err(e) => {
                    for c in plan.fresh {
                        // SAFETY: allocated by `edit` for this attempt and never
                        // published (the CAS failed), so we still own it.
                        drop(unsafe { Box::from_raw(c as *mut Chunk) });
                    }
                    drop(e.new);
                    cur = e.current;
                }
            }
        }
    }

    /// Frees `p` once no pinned reader can reach it.
    fn retire<T: 'static>(&self, p: SendBox<T>, guard: &Guard) {
        self.garbage.fetch_add(1, Ordering::Relaxed);
        let garbage = self.garbage.clone();
        // SAFETY: `p` was just unlinked by our successful CAS, so no new reader
        // can reach it; readers that did hold guards, and the deferred function
        // runs only after all of them are unpinned. It was made by `Box::new`
        // (a chunk) and is freed exactly once here.
        unsafe {
            guard.defer_unchecked(move || {
                let p = p;
                drop(Box::from_raw(p.0));
                garbage.fetch_sub(1, Ordering::Relaxed);
            })
        };
    }

    /// Like `retire`, for a top, which `Owned::new` allocated.
    fn retire_top(&self, p: SendBox<Top>, guard: &Guard) {
        self.garbage.fetch_add(1, Ordering::Relaxed);
        let garbage = self.garbage.clone();
        // SAFETY: as in `retire`; the top was allocated by `Owned::new` and is
        // given back to `Owned` to be freed, exactly once.
        unsafe {
            guard.defer_unchecked(move || {
                let p = p;
                drop(Owned::from_raw(p.0));
                garbage.fetch_sub(1, Ordering::Relaxed);
            })
        };
    }

    fn retire_record(&self, rec: *const Record, guard: &Guard) {
        self.garbage.fetch_add(1, Ordering::Relaxed);
        let garbage = self.garbage.clone();
        // SAFETY: the record's entry was just unlinked by our CAS, exactly once.
        let p = SendPtr(unsafe { own::unlink(rec) });
        // SAFETY: what `unlink` left for later is released only after every
        // reader that could have loaded the entry is unpinned.
        unsafe {
            guard.defer_unchecked(move || {
                let p = p;
                own::release(p.0);
                garbage.fetch_sub(1, Ordering::Relaxed);
            })
        };
        // The writer, not the readers, pays for reclamation: push this
        // thread's garbage to the global queue and collect now. (Under loom
        // the deferred part is a strong count, which holds the runtime that
        // owns this collector: it must reach the global queue for `quiesce`.)
        guard.flush();
    }

    /// Adds a record. Its id must not be registered yet.
    pub(crate) fn insert(&self, rec: Arc<Record>) {
        let id = rec.id;
        let raw = own::publish(rec);
        let entry = Entry { id, rec: raw };
        let added = self.update(|top| {
            let mut chunks = top.chunks.clone();
            let (fresh, replaced) = match top.chunk_for(id) {
                None => {
                    let c = Chunk::alloc(vec![entry]);
                    chunks.push((id, c));
                    (vec![c], None)
                }
                Some(i) => {
                    let old = chunks[i].1;
                    // SAFETY: as in `Top::find`.
                    let es = &unsafe { &*old }.entries;
                    let pos = es.binary_search_by_key(&id, |e| e.id).err()?;
                    if es.len() < CHUNK {
                        let mut v = Vec::with_capacity(es.len() + 1);
                        v.extend_from_slice(&es[..pos]);
                        v.push(entry);
                        v.extend_from_slice(&es[pos..]);
                        let c = Chunk::alloc(v);
                        chunks[i] = (chunks[i].0.min(id), c);
                        (vec![c], Some(old))
                    } else if pos == es.len() {
                        // Appending past a full chunk (the usual case: ids grow):
                        // start a new chunk and leave this one shared.
                        let c = Chunk::alloc(vec![entry]);
                        chunks.insert(i + 1, (id, c));
                        (vec![c], None)
                    } else {
                        // Split a full chunk around the new entry.
                        let mut v = Vec::with_capacity(es.len() + 1);
                        v.extend_from_slice(&es[..pos]);
                        v.push(entry);
                        v.extend_from_slice(&es[pos..]);
                        let right = v.split_off(v.len() / 2);
                        let (lf, rf) = (v[0].id, right[0].id);
                        let (l, r) = (Chunk::alloc(v), Chunk::alloc(right));
                        chunks[i] = (lf, l);
                        chunks.insert(i + 1, (rf, r));
                        (vec![l, r], Some(old))
                    }
                }
            };
            Some(Plan { top: Top { chunks, len: top.len + 1 }, fresh, replaced, removed: None })
        });
        if added.is_none() {
            // Duplicate id (ids are unique, so unreachable); give the count back.
            // SAFETY: `raw` came from `own::publish` above and was never
            // reachable by a reader: unlink and release at once.
            unsafe { own::release(own::unlink(raw)) };
        }
    }

    /// Removes `id`; returns whether it was registered.
    pub(crate) fn remove(&self, id: InterpreterId) -> bool {
        self.update(|top| {
            let i = top.chunk_for(id)?;
            let old = top.chunks[i].1;
            // SAFETY: as in `Top::find`.
            let es = &unsafe { &*old }.entries;
            let pos = es.binary_search_by_key(&id, |e| e.id).ok()?;
            let removed = es[pos];
            let mut chunks = top.chunks.clone();
            let mut fresh = Vec::new();
            if es.len() == 1 {
                chunks.remove(i);
            } else {
                let mut v = Vec::with_capacity(es.len() - 1);
                v.extend_from_slice(&es[..pos]);
                v.extend_from_slice(&es[pos + 1..]);
                let first = v[0].id;
                let c = Chunk::alloc(v);
                fresh.push(c);
                chunks[i] = (first, c);
            }
            Some(Plan { top: Top { chunks, len: top.len - 1 }, fresh, replaced: Some(old), removed: Some(removed) })
        })
        .is_some()
    }

    /// Number of deferred frees that have not run yet.
    pub(crate) fn garbage(&self) -> usize {
        self.garbage.load(Ordering::Relaxed)
    }

    /// Drives epoch reclamation until every deferred free has run or `rounds`
    /// attempts have passed (a reader pinned on another thread holds it back).
    /// Returns the number of frees still outstanding.
    pub(crate) fn quiesce(&self, rounds: usize) -> usize {
        for _ in 0..rounds {
            if self.garbage() == 0 {
                return 0;
            }
            let g = self.pin();
            g.flush();
            drop(g);
            sync::spin_hint();
        }
        self.garbage()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The runtime is being freed, which happens only after every record
        // (each holds the runtime) is gone, so no entry is left. This may run
        // inside a deferred function of this very collector: do not pin here.
        // SAFETY: `&mut self`: no other thread can reach this registry, so the
        // top and its chunks can be taken and freed without a guard; each
        // chunk pointer in the live top is owned by it alone.
        unsafe {
            let g = epoch::unprotected();
            let head = self.head.swap(Shared::null(), Ordering::AcqRel, g);
            if !head.is_null() {
                let top = head.into_owned();
                for (_, c) in &top.chunks {
                    let chunk = Box::from_raw(*c as *mut Chunk);
                    for e in chunk.entries.iter() {
                        own::release(own::unlink(e.rec));
                    }
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{InterpreterConfig, Runtime, RuntimeConfig};

    /// Re-inserts records in a scrambled order and removes them in another,
    /// checking order, lookups and counts against a model after every step.
    #[test]
    fn chunked_list_matches_a_sorted_model() {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let interps: Vec<_> = (0..40).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
        let reg = &interps[0].rec.rt.registry;
        for i in &interps {
            assert!(reg.remove(i.id()));
        }
        assert!(!reg.remove(1), "removing twice is refused");
        let mut model: std::collections::BTreeSet<u64> = [0].into();
        let mut order: Vec<usize> = (0..interps.len()).collect();
        // A fixed scramble: middle inserts into full chunks force splits.
        order.sort_by_key(|&k| (k * 17) % 41);
        let check = |model: &std::collections::BTreeSet<u64>| {
            assert_eq!(reg.ids(), model.iter().copied().collect::<Vec<_>>());
            assert_eq!(reg.len(), model.len());
            for id in 0..45 {
                assert_eq!(reg.get(id).map(|r| r.id), model.contains(&id).then_some(id));
            }
        };
        for &k in &order {
            reg.insert(interps[k].rec.clone());
            model.insert(interps[k].id());
            check(&model);
        }
        order.sort_by_key(|&k| (k * 7) % 41);
        for &k in &order {
            assert!(reg.remove(interps[k].id()));
            model.remove(&interps[k].id());
            check(&model);
        }
        assert_eq!(rt.quiesce(), 0);
    }
}
