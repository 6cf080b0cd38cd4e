//! Heap statistics and the `sys._debugmallocstats()`-style report.

use std::fmt;

use crate::InterpreterId;

/// One size class in [`MemoryStats::classes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SizeClassStats {
    /// Class index (0 = 16-byte blocks, …, 31 = 512-byte blocks).
    pub class: usize,
    /// Block size of the class.
    pub block_size: usize,
    /// Pools carved for the class (an empty pool a class keeps is counted).
    pub pools: usize,
    /// Live blocks.
    pub blocks_in_use: usize,
    /// Free blocks in those pools (freed or never carved).
    pub free_blocks: usize,
}

/// A consistent snapshot of one interpreter's heap, from
/// [`Gil::memory_stats`](crate::Gil::memory_stats) or
/// [`Interpreter::memory_stats`](crate::Interpreter::memory_stats).
///
/// The byte counts partition the mapped memory exactly:
/// `bytes_mapped == small_bytes + free_block_bytes + unused_pool_bytes +
/// pool_header_bytes + quantization_bytes + alignment_bytes`.
/// `Display` renders a report in the manner of CPython's
/// `sys._debugmallocstats()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStats {
    /// The interpreter whose heap this is.
    pub interpreter: InterpreterId,
    /// Usable bytes per arena.
    pub arena_size: usize,
    /// Bytes per pool.
    pub pool_size: usize,
    /// Arenas mapped since the heap was created.
    pub arenas_allocated: u64,
    /// Arenas unmapped (given back to the OS) since the heap was created.
    pub arenas_reclaimed: u64,
    /// Arenas mapped now.
    pub arenas_current: usize,
    /// Most arenas mapped at once.
    pub arenas_high_water: usize,
    /// Arenas mapped now that hold no live block: at most one (the spare the
    /// heap keeps so that a live set oscillating at an arena boundary does
    /// not map and unmap it each time; `trim_memory` gives it back too).
    pub arenas_idle: usize,
    /// Per size class, 32 entries.
    pub classes: Vec<SizeClassStats>,
    /// Live small blocks.
    pub small_blocks: usize,
    /// Bytes of live small blocks (block sizes).
    pub small_bytes: usize,
    /// Live large blocks (requests above 512 bytes).
    pub large_blocks: usize,
    /// Their bytes (rounded up to 16).
    pub large_bytes: usize,
    /// `small_bytes + large_bytes`.
    pub bytes_in_use: usize,
    /// Bytes of all arena mappings (alignment slack included).
    pub bytes_mapped: usize,
    /// Bytes of free blocks inside pools in use.
    pub free_block_bytes: usize,
    /// Bytes of pools not in use inside mapped arenas.
    pub unused_pool_bytes: usize,
    /// Bytes of the headers of pools in use.
    pub pool_header_bytes: usize,
    /// Bytes at the end of pools in use too small for one more block.
    pub quantization_bytes: usize,
    /// Bytes mapped only to align arenas (never touched, never resident).
    pub alignment_bytes: usize,
    /// Bytes counted against the limit: arenas (usable size) plus large blocks.
    pub counted_bytes: usize,
    /// The limit in force (`None`: unlimited).
    pub limit: Option<usize>,
}

/// `12345678` → `12,345,678`.
fn commas(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl fmt::Display for MemoryStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Interpreter {} heap", self.interpreter)?;
        writeln!(
            f,
            "Small block threshold = {}, in {} size classes.",
            self.classes.last().map_or(0, |k| k.block_size),
            self.classes.len()
        )?;
        writeln!(f)?;
        writeln!(f, "class   size   num pools   blocks in use  avail blocks")?;
        writeln!(f, "-----   ----   ---------   -------------  ------------")?;
        for k in self.classes.iter().filter(|k| k.pools > 0) {
            writeln!(
                f,
                "{:>5} {:>6} {:>11} {:>15} {:>13}",
                k.class, k.block_size, k.pools, k.blocks_in_use, k.free_blocks
            )?;
        }
        writeln!(f)?;
        let row = |f: &mut fmt::Formatter<'_>, label: &str, v: usize| writeln!(f, "{label:<35}= {:>21}", commas(v));
        row(f, "# arenas allocated total", self.arenas_allocated as usize)?;
        row(f, "# arenas reclaimed", self.arenas_reclaimed as usize)?;
        row(f, "# arenas highwater mark", self.arenas_high_water)?;
        row(f, "# arenas allocated current", self.arenas_current)?;
        row(f, "# arenas with no live block", self.arenas_idle)?;
        row(
            f,
            &format!("{} arenas * {} bytes/arena", self.arenas_current, self.arena_size),
            self.arenas_current * self.arena_size,
        )?;
        writeln!(f)?;
        row(f, "# bytes in allocated blocks", self.small_bytes)?;
        row(f, "# bytes in available blocks", self.free_block_bytes)?;
        row(
            f,
            &format!("{} unused pools * {} bytes", self.unused_pool_bytes / self.pool_size.max(1), self.pool_size),
            self.unused_pool_bytes,
        )?;
        row(f, "# bytes lost to pool headers", self.pool_header_bytes)?;
        row(f, "# bytes lost to quantization", self.quantization_bytes)?;
        row(f, "# bytes lost to arena alignment", self.alignment_bytes)?;
        row(f, "Total (mapped)", self.bytes_mapped)?;
        writeln!(f)?;
        row(f, "# large blocks", self.large_blocks)?;
        row(f, "# bytes in large blocks", self.large_bytes)?;
        row(f, "# bytes counted against the limit", self.counted_bytes)?;
        match self.limit {
            Some(l) => row(f, "# memory limit", l),
            None => writeln!(f, "{:<35}= {:>21}", "# memory limit", "none"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn commas_groups_thousands() {
        assert_eq!(super::commas(0), "0");
        assert_eq!(super::commas(999), "999");
        assert_eq!(super::commas(1000), "1,000");
        assert_eq!(super::commas(1_048_576), "1,048,576");
    }
}
