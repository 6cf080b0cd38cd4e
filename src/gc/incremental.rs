//! Incremental collection of the old generation (issue 14; `docs/gc.md`,
//! "Incremental old generation").
//!
//! The old generation is two tables: the *clean* objects (`GEN2`), not
//! decremented since a collection last examined them, and the *suspects*
//! (`SUSPECT`): objects promoted from the young generations, and clean ones
//! that lost a reference and live on (`object::decref` moves them). A garbage
//! cycle is always made by a decrement that leaves its target alive: every
//! object the cycle holds is reachable from that target, so the cycle lies in
//! the forward closure of a suspect (or of a young object, whose survivors
//! become suspects). An increment examines the young generations, a batch of
//! suspects and their forward closures through the old generation, and runs
//! the ordinary trial deletion on that set: trial deletion on any subset of
//! the heap frees only garbage (a reference from outside the subset counts as
//! a reference from a root), so the batch can stop at the budget.

use super::object::*;
use super::{st, uid_of, GcState, GEN2, SUSPECT};
use crate::Gil;

/// What the incremental collector did since the interpreter started (see
/// [`Gil::gc_set_pause_budget`](crate::Gil::gc_set_pause_budget)).
///
/// ```
/// use subinterp::{Runtime, RuntimeConfig};
///
/// let rt = Runtime::new(RuntimeConfig::default())?;
/// rt.main().with_gil(|g| -> subinterp::Result<()> {
///     let a = g.list(&[])?;
///     let b = g.list(&[])?;
///     a.list_append(&b)?;
///     b.list_append(&a)?;
///     g.gc_collect(0)?; // both survive into generation 1 (held here)
///     drop((a, b)); // now a garbage cycle
///     g.gc_collect(1)?; // an increment (the default mode) finds it
///     let s = g.gc_incremental_stats();
///     assert_eq!(s.increments, 1);
///     Ok(())
/// })??;
/// # Ok::<(), subinterp::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IncrementalStats {
    /// Increments run (automatic and `gc_collect(1)` in incremental mode).
    pub increments: u64,
    /// Suspects taken into increments.
    pub suspects_examined: u64,
    /// Clean old objects pulled into increments by the suspects' closures.
    pub closure_objects: u64,
    /// Rounds begun. A round is the suspects waiting when it begins, taken
    /// one after the other; each is examined (or deferred) before the next
    /// round begins, and a suspect made during a round is in the next one.
    pub rounds: u64,
    /// Suspects whose closure alone was larger than the budget: put back
    /// among the clean, owing a full collection (see `full_fallbacks`).
    pub deferred: u64,
    /// Automatic full collections run because a deferred suspect (or a
    /// failed trace) left garbage that increments may not see, once the old
    /// generation had grown by a quarter.
    pub full_fallbacks: u64,
    /// Suspects waiting now.
    pub pending_suspects: usize,
    /// Whether a full collection is owed now (a deferred suspect or a
    /// failed trace since the last one): until it runs, garbage may sit
    /// where no increment looks.
    pub full_collection_owed: bool,
}

/// The incremental collector's state in `GcState`.
#[derive(Default)]
pub(crate) struct IncState {
    /// `None`: stop-the-world (automatic full collections as CPython 3.13);
    /// `Some`: incremental, an increment's old-generation work is sized to
    /// this pause.
    pub(crate) budget: Option<std::time::Duration>,
    /// A fixed work budget in objects per increment (`Gil::gc_set_increment_work`),
    /// instead of the one derived from `budget`.
    pub(crate) work: Option<usize>,
    /// Measured cost of a candidate that survives an increment (ns),
    /// smoothed; 0 until measured.
    pub(crate) ns_per_obj: f64,
    /// Measured extra cost of a candidate the increment frees (ns: its
    /// finalization, clearing and deallocation), smoothed; 0 until measured.
    pub(crate) ns_per_freed: f64,
    /// Some garbage may be outside every suspect's closure (a deferred
    /// suspect, a trace that panicked): a full collection is owed.
    pub(crate) incomplete: bool,
    /// The current round: the suspects at indexes below `cursor` in their
    /// table, taken from the top down. A suspect made meanwhile is pushed
    /// above it (the next round); a removal moves the table's last object
    /// into the hole, which keeps every member of the round below the
    /// cursor until it is taken (see `next_suspect`).
    pub(crate) cursor: usize,
    pub(crate) stats: IncrementalStats,
}

/// Candidates below which an increment's budget never goes (the measured
/// rates may be pessimistic after one slow step).
const MIN_BUDGET_OBJECTS: usize = 1024;
/// Until measured: pessimistic costs of a surviving candidate and of the
/// extra work for a freed one (about twice what a 2-core VM measures).
const INITIAL_NS_PER_OBJ: f64 = 20.0;
const INITIAL_NS_PER_FREED: f64 = 80.0;

impl IncState {
    /// How many candidates (young objects, suspects and their closures) an
    /// increment may take: the budget at the measured rates, every
    /// candidate costed as if the increment freed it (a bound, not a
    /// target: an increment that frees nothing takes a fraction of its
    /// budget), but at least a quarter of the waiting suspects once they
    /// exceed eight budgets, so that the backlog (and the garbage in it)
    /// cannot grow without bound when the program makes suspects faster
    /// than increments examine them.
    pub(crate) fn work_budget(&self, pending: usize) -> usize {
        let objs = self.work.unwrap_or_else(|| self.objects_in(self.survivor_ns() + self.freed_ns()));
        if pending > 8 * objs {
            pending / 4
        } else {
            objs
        }
    }

    /// The closure a single suspect may have and still be examined: the
    /// budget at the survivors' rate (a closure is mostly live: a suspect
    /// that is garbage with a huge closure is left to the owed full
    /// collection). With a fixed work budget, that budget.
    pub(crate) fn closure_budget(&self) -> usize {
        self.work.unwrap_or_else(|| self.objects_in(self.survivor_ns()))
    }

    fn survivor_ns(&self) -> f64 {
        if self.ns_per_obj > 0.0 {
            self.ns_per_obj
        } else {
            INITIAL_NS_PER_OBJ
        }
    }

    fn freed_ns(&self) -> f64 {
        if self.ns_per_freed > 0.0 {
            self.ns_per_freed
        } else {
            INITIAL_NS_PER_FREED
        }
    }

    fn objects_in(&self, per: f64) -> usize {
        let ns = self.budget.map_or(0.0, |d| d.as_nanos() as f64);
        ((ns / per) as usize).max(MIN_BUDGET_OBJECTS)
    }

    /// Folds an increment's measured cost (`ns` for `objects` candidates of
    /// which `freed` were freed) into the rates: an increment that freed
    /// almost nothing measures the survivors' rate, one that freed many the
    /// extra cost of a freed candidate over it. A rate that turns out
    /// higher is taken at once, a lower one smoothed in.
    pub(crate) fn observe(&mut self, ns: f64, objects: usize, freed: usize) {
        fn fold(old: &mut f64, x: f64) {
            *old = if *old <= 0.0 || x > *old { x } else { 0.75 * *old + 0.25 * x };
        }
        if objects < 256 {
            return; // too small to time
        }
        if freed < objects / 16 {
            fold(&mut self.ns_per_obj, ns / objects as f64);
        } else if freed >= 256 {
            let rest = ns - self.survivor_ns() * objects as f64;
            fold(&mut self.ns_per_freed, (rest / freed as f64).max(1.0));
        }
    }
}

/// A clean old object lost a reference and lives on: from now on a suspect.
/// When the suspects' table cannot grow, it stays clean and a full
/// collection is owed (nothing is lost: the full collection sees it).
#[cold]
pub(crate) fn suspect(g: Gil<'_>, r: Raw) {
    st(g, |s| {
        s.untrack(r);
        if s.gens[SUSPECT].try_reserve(1).is_ok() {
            s.track(r, SUSPECT);
        } else {
            s.track(r, GEN2); // the slot it left is free
            s.inc.incomplete = true;
        }
    });
}

/// Tracks a survivor of a collection: one an increment examined with its
/// whole closure (`FLAG_SCANNED`) among the clean old objects, any other in
/// `target`.
pub(crate) fn track_survivor(s: &mut GcState, r: Raw, target: usize) {
    if has_flag(r, FLAG_SCANNED) {
        set_flag(r, FLAG_SCANNED, false);
        s.track(r, GEN2);
    } else {
        s.track(r, target);
    }
}

/// Adds to `cands` (which holds the young generations, set up lazily by the
/// caller's tag mask) suspects and their forward closures through the old
/// generation, each set up as a candidate now (`SLOT_COLLECTING`, `gc_refs`
/// = refcount) and flagged `FLAG_SCANNED`, until about `budget` objects were
/// added. A suspect whose closure would pass the budget is undone (its
/// objects back in their tables) and left for the next increment; when it
/// is the first of the increment, its closure alone exceeds the budget: it
/// is marked `FLAG_BIG`, put among the clean and a full collection is owed.
/// Counts what it did in `IncrementalStats`. Runs no user code but
/// `Trace::trace` (whose panics `traverse` catches for the caller).
pub(crate) fn increment_candidates(g: Gil<'_>, cands: &mut Vec<Raw>, stack: &mut Vec<Raw>) {
    let uid = uid_of(g);
    let (budget, closure_budget) = st(g, |s| (s.inc.work_budget(s.gens[SUSPECT].len()), s.inc.closure_budget()));
    // The young candidates count against the budget (the cadence rule in
    // `run_scheduled` keeps them a fraction of it).
    let (mut work, mut taken, mut added, mut deferred) = (cands.len(), 0usize, 0usize, 0u64);
    // The young candidates' closures first: a young survivor whose closure
    // was examined goes to the clean old table, not among the suspects (the
    // commonest survivor, an object that refers to nothing old or only to
    // candidates, costs one look). A young object whose closure would pass
    // the budget is undone and its survivor becomes a suspect, as every
    // young one after it.
    let young = cands.len();
    for i in 0..young {
        let y = cands[i];
        let mark = cands.len();
        if !expand(g, uid, y, cands, stack, &mut work, budget) {
            undo(g, &cands[mark..]);
            cands.truncate(mark);
            break;
        }
        added += cands.len() - mark;
        set_flag(y, FLAG_SCANNED, true);
    }
    // Then suspects, in rounds, each with its closure. The first suspect of
    // an increment gets a closure budget of its own, whatever the young
    // closures took: only a suspect whose closure alone exceeds it is
    // deferred, and every increment examines at least one suspect (so a
    // round ends within as many increments as it has suspects). An
    // increment is thus at most the budget plus one closure budget.
    loop {
        if taken > 0 && work >= budget {
            break;
        }
        let Some(r) = next_suspect(g) else { break };
        if has_flag(r, FLAG_ROOTED) {
            // Held by the interpreter: live, and so is everything it
            // reaches. No garbage is behind it.
            st(g, |s| to_clean(s, r));
            work += 1;
            continue;
        }
        if has_flag(r, FLAG_BIG) {
            st(g, |s| {
                to_clean(s, r);
                s.inc.incomplete = true;
            });
            deferred += 1;
            work += 1;
            continue;
        }
        let first = taken == 0;
        let full = if first { closure_budget.max(budget) } else { budget.saturating_sub(work) };
        // The first suspect's closure is walked in two steps: a quarter of
        // the budget, then, if it is larger, a look whether the globals of a
        // module the interpreter holds refer to it (a big structure stored in
        // a global and its local handle dropped: live, with all it reaches)
        // before its whole closure budget is spent on it.
        let steps: &[usize] = if first && full > budget / 4 { &[budget / 4, full] } else { &[full] };
        let mut outcome = Walk::TooBig;
        for (i, &allowance) in steps.iter().enumerate() {
            let mark = cands.len();
            let start = work;
            enlist(g, r, cands);
            work += 1;
            if expand(g, uid, r, cands, stack, &mut work, start + allowance) {
                added += cands.len() - mark - 1;
                outcome = Walk::Done;
                break;
            }
            // Undo this attempt: each object back in its table.
            undo(g, &cands[mark..]);
            cands.truncate(mark);
            if i + 1 < steps.len() && super::modules::held_by_rooted(g, r, closure_budget) == Some(true) {
                outcome = Walk::Live;
                break;
            }
        }
        match outcome {
            Walk::Done => {
                taken += 1;
                continue;
            }
            Walk::Live => {
                st(g, |s| to_clean(s, r));
                // It left the suspects (progress); the walk's work counts.
                if work >= budget {
                    break;
                }
                continue;
            }
            Walk::TooBig => {}
        }
        // The first of the increment is too big for any: deferred (among
        // the clean, marked, a full collection owed). Another is put back as
        // the next of its round, the first of the next increment.
        if first {
            set_flag(r, FLAG_BIG, true);
            st(g, |s| {
                to_clean(s, r);
                s.inc.incomplete = true;
            });
            deferred += 1;
        } else {
            st(g, |s| suspect_to_front(s, r));
        }
        break;
    }
    st(g, |s| {
        s.inc.stats.suspects_examined += taken as u64;
        s.inc.stats.closure_objects += added as u64;
        s.inc.stats.deferred += deferred;
    });
}

/// Moves `r` (in a table) among the clean old objects.
fn to_clean(s: &mut GcState, r: Raw) {
    s.untrack(r);
    s.track(r, GEN2);
}

/// How walking a suspect's closure ended.
enum Walk {
    /// Within its allowance: the suspect and its closure are candidates.
    Done,
    /// Found held by a module the interpreter holds: live.
    Live,
    /// Larger than its allowance.
    TooBig,
}

/// The next suspect of the round, still in its table (the caller takes it
/// out), starting a new round when the last one is done. Taking the object
/// below the cursor and then lowering the cursor keeps the round's invariant:
/// a removal from the table moves its last object into the hole, and that
/// object is either in the round already (the table ends below the cursor)
/// or above the cursor, where it lands back when the taken one leaves.
fn next_suspect(g: Gil<'_>) -> Option<Raw> {
    st(g, |s| {
        let len = s.gens[SUSPECT].len();
        if len == 0 {
            return None;
        }
        s.inc.cursor = s.inc.cursor.min(len);
        if s.inc.cursor == 0 {
            s.inc.cursor = len;
            s.inc.stats.rounds += 1;
        }
        s.inc.cursor -= 1;
        Some(s.gens[SUSPECT][s.inc.cursor])
    })
}

/// Moves `r`, a suspect just put back in its table (pushed after the
/// round's members), to the round's next place and sets the cursor just
/// above it: it is the first suspect of the next increment. The object it
/// swaps with stays above the cursor; suspects of its closure put back
/// after it may land above the cursor too, in the next round (they are in
/// the closure `r`'s next examination takes).
fn suspect_to_front(s: &mut GcState, r: Raw) {
    let tag = SUSPECT + 1;
    let i = gc_head(r).slot.get() >> SLOT_SHIFT;
    let t = &mut s.gens[SUSPECT];
    debug_assert!(gc_head(r).slot.get() & TAG_MASK == tag && t[i] == r, "r is a suspect in its table");
    // The table may have shrunk below the cursor while the closure was
    // enlisted: then `r` is inside the round already, the next one taken
    // once the cursor is lowered to it.
    let at = s.inc.cursor.min(i);
    t.swap(at, i);
    gc_head(t[i]).slot.set((i << SLOT_SHIFT) | tag);
    gc_head(r).slot.set((at << SLOT_SHIFT) | tag);
    s.inc.cursor = at + 1;
}

/// Puts enlisted objects back in their tables (not candidates any more).
fn undo(g: Gil<'_>, objs: &[Raw]) {
    st(g, |s| {
        for &c in objs {
            let tag = gc_head(c).slot.get() & TAG_MASK;
            gc_head(c).slot.set(0);
            set_flag(c, FLAG_SCANNED, false);
            s.track(c, tag - 1);
        }
    });
}

/// Makes `c` (an old object, clean or suspect) a candidate of the increment:
/// out of its table, `gc_refs` = its refcount, `FLAG_SCANNED`.
fn enlist(g: Gil<'_>, c: Raw, cands: &mut Vec<Raw>) {
    let tag = gc_head(c).slot.get() & TAG_MASK;
    st(g, |s| s.untrack(c));
    gc_head(c).slot.set(refs_start(head(c).refcnt.get(), tag));
    set_flag(c, FLAG_SCANNED, true);
    cands.push(c);
}

/// Enlists the old objects reachable from `from` that are not candidates
/// yet (depth first, an explicit stack), one unit of `work` each. Returns
/// false, with the stack emptied, when `work` passed `budget` first (the
/// caller undoes what was enlisted).
fn expand(
    g: Gil<'_>,
    uid: u64,
    from: Raw,
    cands: &mut Vec<Raw>,
    stack: &mut Vec<Raw>,
    work: &mut usize,
    budget: usize,
) -> bool {
    let mut x = from;
    loop {
        // Enlisted objects count against the budget as they are found, so
        // that one object with many children (a list of 10^5) does not
        // enlist them all before the budget is checked.
        let mut over = false;
        super::traverse_fast(x, uid, &mut |c| {
            // Untracked objects have no closure to follow; what the
            // interpreter holds is live with its whole closure.
            if over || head(c).flags.get() & (FLAG_GC | FLAG_ROOTED) != FLAG_GC {
                return;
            }
            let p = gc_head(c).slot.get();
            let tag = p & TAG_MASK;
            if p & SLOT_COLLECTING == 0 && (tag == TAG_OLD || tag == SUSPECT + 1) {
                if *work + stack.len() >= budget {
                    over = true;
                    return;
                }
                enlist(g, c, cands);
                stack.push(c);
            }
        });
        if over {
            stack.clear();
            return false;
        }
        let Some(next) = stack.pop() else { return true };
        *work += 1;
        if *work > budget {
            stack.clear();
            return false;
        }
        x = next;
    }
}
