//! The per-interpreter GIL.
//!
//! CPython's protocol (`Python/ceval_gil.c`), re-done on one atomic word:
//!
//! * `word` holds `LOCKED` and `WAITERS`. Taking an uncontended GIL is one
//!   compare-and-swap; releasing it with no waiters is another. The mutex and
//!   condition variables are touched only when threads wait.
//! * A waiter sleeps for one switch interval (default 5 ms). If the GIL did not
//!   change hands during a whole interval it sets `drop_request`, which the
//!   holder sees at its next [`checkpoint`](crate::Gil::checkpoint).
//! * Forced switching: a holder that yields because of a drop request waits
//!   on `switch_cond` until another thread has taken the GIL, so it cannot
//!   take it straight back.
//! * Better than CPython: a thread returning from a blocking call
//!   ([`allow_threads`](crate::Gil::allow_threads)) is a *priority* waiter and
//!   sets the drop request at once instead of after a whole interval, which
//!   removes the convoy effect (bpo-7946). Its wait is bounded by the holder's
//!   checkpoint spacing, not by the switch interval.
//! * Newcomers do not barge past sleeping waiters: while `WAITERS` is set the
//!   fast path is closed and every acquirer queues on the condition variable.

use std::time::{Duration, Instant};

use crate::sync::{self, AtomicBool, AtomicU32, AtomicU64, Condvar, Mutex, Ordering};

const LOCKED: u32 = 1;
const WAITERS: u32 = 2;
/// An interpreter under this GIL is to be closed by the last thread that
/// leaves it: forces releases onto the slow path, which tells the releaser to
/// check. Living in the GIL word makes "set request, then find the GIL busy"
/// and "release, then look for a request" two RMWs on one location, so one of
/// the two sides always sees the other.
const CLOSE_PENDING: u32 = 4;

/// How long a thread spins for the GIL before it parks.
#[cfg_attr(loom, allow(dead_code))]
const SPIN_LIMIT: Duration = Duration::from_micros(50);
/// Spin iterations between two clock reads (under loom, where a spin
/// iteration is a yield, every iteration).
const SPIN_CHECK_EVERY: u32 = if cfg!(loom) { 1 } else { 64 };
/// Under loom (no clock) a spin lasts this many iterations: one attempt, and
/// the spinner either won or parks. (A yield between attempts lets the holder
/// run to its release, and loom then never explores a waiter that parks
/// behind a holder: the lost wake-up went unseen that way.)
#[cfg_attr(not(loom), allow(dead_code))]
const LOOM_SPIN_ITERATIONS: u32 = 1;
/// How often a forced-switch dropper re-checks whether the hand-off happened.
const FORCED_SWITCH_RECHECK: Duration = Duration::from_millis(1);

/// Spinning only pays when another core can run the holder meanwhile.
fn spin_enabled() -> bool {
    #[cfg(loom)]
    {
        true
    }
    #[cfg(not(loom))]
    {
        static MULTICORE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *MULTICORE.get_or_init(|| std::thread::available_parallelism().map(|n| n.get() > 1).unwrap_or(false))
    }
}

/// Whether a spin of `iterations` rounds reads the clock now.
#[inline]
#[allow(clippy::modulo_one)] // (every round under loom)
fn spin_check_due(iterations: u32) -> bool {
    iterations % SPIN_CHECK_EVERY == 0
}

/// Whether a spin that began at `start` has run long enough. Under loom, where
/// time does not exist, a spin lasts [`LOOM_SPIN_ITERATIONS`] rounds.
fn spin_expired(start: Instant, iterations: u32) -> bool {
    #[cfg(loom)]
    {
        let _ = start;
        iterations >= LOOM_SPIN_ITERATIONS
    }
    #[cfg(not(loom))]
    {
        let _ = iterations;
        start.elapsed() >= SPIN_LIMIT
    }
}

/// Statistics of one GIL, as returned by [`Interpreter::gil_stats`](crate::Interpreter::gil_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GilStats {
    /// Times the GIL was taken (fast path and slow path).
    pub acquisitions: u64,
    /// Times a thread found the GIL taken and had to wait.
    pub contended_acquisitions: u64,
    /// Total time threads spent waiting for the GIL.
    pub wait_total: Duration,
    /// Longest single wait.
    pub wait_max: Duration,
    /// Times the GIL changed owner (CPython's `switch_number`).
    pub switches: u64,
    /// Times a holder yielded because a waiter asked it to (drop requests honoured).
    pub forced_switches: u64,
}

/// Counters written only by the GIL holder (load + store, no read-modify-write
/// on the hot path) and read by anyone.
#[derive(Debug, Default)]
struct StatCells {
    acquisitions: AtomicU64,
    contended: AtomicU64,
    wait_total_ns: AtomicU64,
    wait_max_ns: AtomicU64,
    forced: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64, by: u64) {
    // Only the GIL holder writes these counters, so a plain load + store
    // cannot lose an update; readers may see a slightly stale value.
    c.store(c.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

#[derive(Debug, Default)]
struct Slow {
    /// Threads sleeping (or about to sleep) on `cond`.
    waiters: u32,
    /// Interpreters under this GIL with a close deferred to their last thread.
    pending_closes: u32,
}

/// One GIL. Shared through an `Arc` by every interpreter that runs under it.
#[derive(Debug)]
pub(crate) struct RawGil {
    word: AtomicU32,
    /// The eval-breaker bit of this GIL: "holder, please yield".
    drop_request: AtomicBool,
    slow: Mutex<Slow>,
    /// Threads spinning for the GIL before they park (not counted in `waiters`).
    spinners: AtomicU32,
    /// Priority (returning) threads waiting for the GIL: while one waits, a
    /// new holder keeps the drop request set (see `on_acquired_contended`).
    priority_waiters: AtomicU32,
    cond: Condvar,
    switch_cond: Condvar,
    /// Ownership changes (CPython's `switch_number`); written by the holder.
    switch_number: AtomicU64,
    /// Thread uid of the last holder (CPython's `last_holder`).
    last_holder: AtomicU64,
    interval_ns: AtomicU64,
    stats: StatCells,
}

impl RawGil {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            word: AtomicU32::new(0),
            drop_request: AtomicBool::new(false),
            slow: Mutex::new(Slow::default()),
            spinners: AtomicU32::new(0),
            priority_waiters: AtomicU32::new(0),
            cond: Condvar::new(),
            switch_cond: Condvar::new(),
            switch_number: AtomicU64::new(0),
            last_holder: AtomicU64::new(0),
            interval_ns: AtomicU64::new(interval.as_nanos().min(u64::MAX as u128) as u64),
            stats: StatCells::default(),
        }
    }

    /// The switch interval.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn set_interval(&self, d: Duration) {
        self.interval_ns.store(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Whether some thread holds the GIL right now (a racy snapshot).
    pub(crate) fn is_locked(&self) -> bool {
        self.word.load(Ordering::SeqCst) & LOCKED != 0
    }

    /// Whether a waiter asked the holder to yield. Read by the holder only.
    #[inline]
    pub(crate) fn drop_requested(&self) -> bool {
        self.drop_request.load(Ordering::Relaxed)
    }

    /// Takes the GIL if nobody holds it and nobody is queued; never blocks.
    #[inline]
    pub(crate) fn try_acquire(&self, me: u64) -> bool {
        let mut w = 0;
        loop {
            match self.word.compare_exchange(w, w | LOCKED, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => {
                    self.on_acquired_fast(me);
                    return true;
                }
                Err(cur) if cur & (LOCKED | WAITERS) == 0 => w = cur,
                Err(_) => return false,
            }
        }
    }

    /// Takes the GIL, waiting as long as needed.
    ///
    /// `priority` marks a thread coming back from a blocking call: it asks the
    /// holder to yield at once instead of after a switch interval.
    #[inline]
    pub(crate) fn acquire(&self, me: u64, priority: bool) {
        if !self.try_acquire(me) {
            self.acquire_slow(me, priority);
        }
    }

    #[inline]
    fn on_acquired_fast(&self, me: u64) {
        bump(&self.stats.acquisitions, 1);
        if self.last_holder.load(Ordering::Relaxed) != me {
            self.last_holder.store(me, Ordering::Relaxed);
            bump(&self.switch_number, 1);
        }
    }

    /// Spins for the GIL for a short while before parking. A hand-off to a
    /// spinning thread costs well under a microsecond; a hand-off to a parked
    /// one costs a futex wake (tens of microseconds), which the CPU-bound
    /// holder would otherwise pay on every I/O round trip of another thread.
    /// Returns whether the GIL was taken.
    fn spin_acquire(&self, me: u64, priority: bool, start: Instant) -> bool {
        if !spin_enabled() {
            return false;
        }
        self.spinners.fetch_add(1, Ordering::SeqCst);
        let mut got = false;
        let mut i: u32 = 0;
        loop {
            let w = self.word.load(Ordering::Relaxed);
            // A priority thread may pass parked waiters (it asked for the GIL);
            // others queue behind them.
            if w & LOCKED == 0
                && (priority || w & WAITERS == 0)
                && self.word.compare_exchange(w, w | LOCKED, Ordering::SeqCst, Ordering::Relaxed).is_ok()
            {
                got = true;
                break;
            }
            i = i.wrapping_add(1);
            if spin_check_due(i) && spin_expired(start, i) {
                break;
            }
            sync::spin_hint();
        }
        self.spinners.fetch_sub(1, Ordering::SeqCst);
        if got {
            self.on_acquired_contended(me, priority, start);
        }
        got
    }

    /// Bookkeeping after a contended acquisition.
    fn on_acquired_contended(&self, me: u64, priority: bool, start: Instant) {
        if priority {
            self.priority_waiters.fetch_sub(1, Ordering::SeqCst);
        }
        // A pending request was addressed to the previous holder, unless a
        // priority thread still waits: its request stands for this holder too
        // (else a plain waiter that takes the GIL first consumes it, and the
        // returning thread waits a whole interval; the three-thread loom model
        // found this). The fences pair with the one in `acquire_slow`: either
        // we see its count or its request is ordered after our clear.
        self.drop_request.store(false, Ordering::Relaxed);
        sync::fence(Ordering::SeqCst);
        if self.priority_waiters.load(Ordering::Relaxed) > 0 {
            self.drop_request.store(true, Ordering::Relaxed);
        }
        bump(&self.stats.acquisitions, 1);
        bump(&self.stats.contended, 1);
        // Time is not modelled under loom (and must not steer the model).
        #[cfg(not(loom))]
        let waited = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        #[cfg(loom)]
        let waited = {
            let _ = start;
            0
        };
        bump(&self.stats.wait_total_ns, waited);
        if waited > self.stats.wait_max_ns.load(Ordering::Relaxed) {
            self.stats.wait_max_ns.store(waited, Ordering::Relaxed);
        }
        if self.last_holder.load(Ordering::Relaxed) != me {
            self.last_holder.store(me, Ordering::SeqCst);
            bump(&self.switch_number, 1);
        }
    }

    #[cold]
    fn acquire_slow(&self, me: u64, priority: bool) {
        let start = Instant::now();
        // (Mutation `no_priority`: a returning thread waits like any other.)
        let priority = priority && !sync::mutation("no_priority");
        if priority {
            // Coming back from a blocking call: ask the holder to yield now,
            // not after a whole switch interval (no convoy effect).
            self.priority_waiters.fetch_add(1, Ordering::SeqCst);
            sync::fence(Ordering::SeqCst);
            self.drop_request.store(true, Ordering::Release);
        }
        if self.spin_acquire(me, priority, start) {
            return;
        }
        let mut slow = sync::lock(&self.slow);
        slow.waiters += 1;
        self.word.fetch_or(WAITERS, Ordering::SeqCst);
        loop {
            let prev = self.word.fetch_or(LOCKED, Ordering::SeqCst);
            if prev & LOCKED == 0 {
                break;
            }
            if priority {
                // Every time it finds the GIL taken, not once: a holder that
                // saw the first request while this thread was neither
                // spinning nor queued yet dropped it as stale.
                self.drop_request.store(true, Ordering::Release);
            }
            let seen_switch = self.switch_number.load(Ordering::Relaxed);
            let (s, timed_out) = sync::wait_timeout(&self.cond, &self.slow, slow, self.interval());
            slow = s;
            if timed_out
                && self.word.load(Ordering::Relaxed) & LOCKED != 0
                && self.switch_number.load(Ordering::Relaxed) == seen_switch
            {
                // A whole interval without a switch: ask the holder to yield.
                self.drop_request.store(true, Ordering::Release);
            }
        }
        slow.waiters -= 1;
        if slow.waiters == 0 {
            self.word.fetch_and(!WAITERS, Ordering::SeqCst);
        }
        // We hold the GIL now: a pending request was addressed to the
        // previous holder (unless a priority thread waits).
        self.on_acquired_contended(me, priority, start);
        // Wake a forced-switch dropper waiting for exactly this.
        self.switch_cond.notify_all();
        drop(slow);
    }

    /// Releases the GIL. The caller must hold it. Returns true when a close
    /// was deferred to a leaving thread of some interpreter under this GIL:
    /// the caller then checks whether that is its interpreter.
    #[inline]
    pub(crate) fn release(&self) -> bool {
        if self.word.compare_exchange(LOCKED, 0, Ordering::SeqCst, Ordering::Relaxed).is_err() {
            return self.release_slow();
        }
        false
    }

    #[cold]
    fn release_slow(&self) -> bool {
        let slow = sync::lock(&self.slow);
        let prev = self.word.fetch_and(!LOCKED, Ordering::SeqCst);
        // (Mutation `no_notify`: a parked waiter is left to its timeout.)
        if prev & WAITERS != 0 && !sync::mutation("no_notify") {
            self.cond.notify_one();
        }
        drop(slow);
        // (Mutation `ignore_close_request`: a deferred close is never run.)
        prev & CLOSE_PENDING != 0 && !sync::mutation("ignore_close_request")
    }

    /// Notes that an interpreter under this GIL wants its last leaving thread
    /// to close it. Paired with exactly one [`Self::remove_close_pending`].
    pub(crate) fn add_close_pending(&self) {
        let mut slow = sync::lock(&self.slow);
        slow.pending_closes += 1;
        self.word.fetch_or(CLOSE_PENDING, Ordering::SeqCst);
    }

    /// Withdraws one [`Self::add_close_pending`].
    pub(crate) fn remove_close_pending(&self) {
        let mut slow = sync::lock(&self.slow);
        slow.pending_closes -= 1;
        if slow.pending_closes == 0 {
            self.word.fetch_and(!CLOSE_PENDING, Ordering::SeqCst);
        }
    }

    /// Honours a drop request: if another thread waits, hand it the GIL and
    /// wait until it has taken it (forced switching), then queue to take the
    /// GIL back. Returns whether the GIL changed hands. The caller holds it.
    pub(crate) fn yield_to_waiter(&self, me: u64) -> bool {
        let slow = sync::lock(&self.slow);
        self.drop_request.store(false, Ordering::Relaxed);
        if slow.waiters == 0 && self.spinners.load(Ordering::SeqCst) == 0 {
            // Stale request (the waiter left or got the GIL another way): keep it.
            return false;
        }
        bump(&self.stats.forced, 1);
        // (A deferred close cannot be for this interpreter: this thread is inside it.)
        self.word.fetch_and(!LOCKED, Ordering::SeqCst);
        if slow.waiters > 0 {
            self.cond.notify_one();
        }
        // FORCE_SWITCHING: do not re-take the GIL before someone else had it.
        // A spinner takes it within nanoseconds: spin for that first.
        drop(slow);
        if sync::mutation("no_forced_switch") {
            // (Mutation: take the GIL straight back, past the woken waiter,
            // as a GIL without forced switching does.)
            loop {
                let w = self.word.load(Ordering::Relaxed);
                if w & LOCKED == 0
                    && self.word.compare_exchange(w, w | LOCKED, Ordering::SeqCst, Ordering::Relaxed).is_ok()
                {
                    self.on_acquired_fast(me);
                    return true;
                }
                sync::spin_hint();
            }
        }
        let start = Instant::now();
        let mut i: u32 = 0;
        while self.last_holder.load(Ordering::SeqCst) == me && spin_enabled() {
            sync::spin_hint();
            i = i.wrapping_add(1);
            if spin_check_due(i) && spin_expired(start, i) {
                break;
            }
        }
        let mut slow = sync::lock(&self.slow);
        while (slow.waiters > 0 || self.spinners.load(Ordering::SeqCst) > 0)
            && self.last_holder.load(Ordering::SeqCst) == me
        {
            // Timed: a spinner that takes the GIL does not signal this condvar.
            let (s, _) = sync::wait_recheck(&self.switch_cond, &self.slow, slow, FORCED_SWITCH_RECHECK);
            slow = s;
        }
        drop(slow);
        self.acquire(me, false);
        true
    }

    /// A snapshot of the statistics.
    pub(crate) fn stats(&self) -> GilStats {
        GilStats {
            acquisitions: self.stats.acquisitions.load(Ordering::Relaxed),
            contended_acquisitions: self.stats.contended.load(Ordering::Relaxed),
            wait_total: Duration::from_nanos(self.stats.wait_total_ns.load(Ordering::Relaxed)),
            wait_max: Duration::from_nanos(self.stats.wait_max_ns.load(Ordering::Relaxed)),
            switches: self.switch_number.load(Ordering::Relaxed),
            forced_switches: self.stats.forced.load(Ordering::Relaxed),
        }
    }
}
