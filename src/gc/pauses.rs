//! Pause statistics: how long each collection stopped its interpreter.
//!
//! Every collection (automatic, from the allocation threshold at a
//! checkpoint; or explicit, [`Gil::gc_collect`](crate::Gil::gc_collect)) is
//! timed from its start to its end, callbacks, finalizers and weakref
//! callbacks included: the time the interpreter's own code did not run. The
//! durations go into a log-linear histogram (8 buckets per power of two, so
//! a percentile is within 12.5 % of the true value, never below it) and
//! per-generation totals. The histogram's buckets are allocated on the
//! first collection: an interpreter that never collects pays nothing.

use std::time::Duration;

/// Sub-buckets per power of two.
const SUB: u32 = 8;
const SUB_BITS: u32 = 3;
/// Durations below this many nanoseconds get a bucket each.
const LINEAR: u64 = 16;
/// The largest power of two kept apart (2^40 ns, about 18 minutes); longer
/// pauses share the last bucket.
const MAX_OCTAVE: u32 = 40;
const BUCKETS: usize = LINEAR as usize + ((MAX_OCTAVE - 4 + 1) * SUB) as usize;

/// A histogram of pause durations (nanosecond resolution).
///
/// ```
/// use subinterp::{Runtime, RuntimeConfig};
///
/// let rt = Runtime::new(RuntimeConfig::default())?;
/// rt.main().with_gil(|g| -> subinterp::Result<()> {
///     for _ in 0..10 {
///         g.gc_collect(0)?;
///     }
///     let p = g.gc_pause_stats();
///     assert_eq!(p.explicit.count(), 10);
///     assert!(p.explicit.p50() <= p.explicit.p99() && p.explicit.p99() <= p.explicit.max());
///     assert!(p.explicit.total() >= p.explicit.max());
///     assert_eq!(p.automatic.count(), 0);
///     Ok(())
/// })??;
/// # Ok::<(), subinterp::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PauseHistogram {
    /// Empty until the first pause.
    buckets: Vec<u64>,
    count: u64,
    total_ns: u64,
    max_ns: u64,
}

fn bucket_of(ns: u64) -> usize {
    if ns < LINEAR {
        return ns as usize;
    }
    let octave = 63 - ns.leading_zeros(); // >= 4
    if octave > MAX_OCTAVE {
        return BUCKETS - 1;
    }
    let sub = ((ns >> (octave - SUB_BITS)) & (SUB as u64 - 1)) as u32;
    LINEAR as usize + ((octave - 4) * SUB + sub) as usize
}

/// The largest duration (ns) that falls in bucket `b`.
fn bucket_upper(b: usize) -> u64 {
    if b < LINEAR as usize {
        return b as u64;
    }
    let i = (b - LINEAR as usize) as u32;
    let (octave, sub) = (i / SUB + 4, (i % SUB) as u64);
    let lower = (1u64 << octave) + (sub << (octave - SUB_BITS));
    lower + (1u64 << (octave - SUB_BITS)) - 1
}

impl PauseHistogram {
    pub(crate) fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS];
        }
        self.buckets[bucket_of(ns)] += 1;
        self.count += 1;
        self.total_ns = self.total_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// How many pauses were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their total duration.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.total_ns)
    }

    /// The longest.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The mean (zero when there was none).
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.total_ns.checked_div(self.count).unwrap_or(0))
    }

    /// The `q`-quantile (`q` in 0..=1, e.g. 0.99): a duration at least
    /// `q` of the pauses did not exceed, within 12.5 % above the exact
    /// value and never above [`max`](Self::max). Zero when there was none.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(bucket_upper(b).min(self.max_ns));
            }
        }
        self.max()
    }

    /// The median pause.
    pub fn p50(&self) -> Duration {
        self.quantile(0.5)
    }

    /// The 99th-percentile pause.
    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// The non-empty buckets: (largest duration of the bucket, pauses in it),
    /// shortest first; for plotting a distribution.
    pub fn buckets(&self) -> Vec<(Duration, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(b, &n)| (Duration::from_nanos(bucket_upper(b)), n))
            .collect()
    }
}

/// Per-generation pause totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenPauses {
    /// Collections of this generation that were timed.
    pub count: u64,
    /// Their total duration.
    pub total: Duration,
    /// The longest.
    pub max: Duration,
}

/// How long the collector stopped an interpreter (see
/// [`Gil::gc_pause_stats`](crate::Gil::gc_pause_stats)). The final
/// collection of a close is not counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PauseStats {
    /// Collections started by the allocation thresholds (at a checkpoint).
    pub automatic: PauseHistogram,
    /// Collections asked for with `gc_collect`.
    pub explicit: PauseHistogram,
    /// Both kinds, by the generation collected.
    pub by_generation: [GenPauses; 3],
}

impl PauseStats {
    pub(crate) fn record(&mut self, automatic: bool, gen: usize, d: Duration) {
        if automatic {
            self.automatic.record(d);
        } else {
            self.explicit.record(d);
        }
        let g = &mut self.by_generation[gen.min(2)];
        g.count += 1;
        g.total = g.total.saturating_add(d);
        g.max = g.max.max(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_duration_in_order() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([1 << 30, (1 << 40) - 1, 1 << 40, 1 << 41, u64::MAX]) {
            let b = bucket_of(ns);
            assert!(b >= last || ns > 100_000, "monotone");
            assert!(b < BUCKETS);
            if ns < 1 << 41 && b < BUCKETS - 1 {
                assert!(bucket_upper(b) >= ns, "{ns} in bucket {b} up to {}", bucket_upper(b));
                assert!(bucket_upper(b) as f64 <= ns as f64 * 1.125 + 1.0, "{ns}: within 12.5 %");
            }
            last = b;
        }
    }

    #[test]
    fn quantiles_follow_the_recorded_pauses() {
        let mut h = PauseHistogram::default();
        assert_eq!(h.p99(), Duration::ZERO);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.max(), Duration::from_micros(100));
        assert_eq!(h.total(), Duration::from_micros(5050));
        let p50 = h.p50().as_nanos() as f64;
        assert!((50_000.0..=50_000.0 * 1.125).contains(&p50), "{p50}");
        let p99 = h.p99().as_nanos() as f64;
        assert!((99_000.0..=100_000.0).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), h.max());
        assert_eq!(h.buckets().iter().map(|b| b.1).sum::<u64>(), 100);
    }
}
