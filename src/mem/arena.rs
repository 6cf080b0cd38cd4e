//! One arena: an anonymous mapping with a pool-aligned usable window.

use memmap2::{MmapMut, MmapRaw};

use super::POOL_SIZE;

/// The smallest page size of any platform we run on. `mmap` returns
/// page-aligned addresses, so over-mapping by `POOL_SIZE - MIN_PAGE` bytes is
/// enough to contain a `POOL_SIZE`-aligned window (with larger pages the
/// misalignment is a multiple of the page and smaller still).
const MIN_PAGE: usize = 4096;

/// A mapped arena. The mapping is held as a [`MmapRaw`]: blocks inside it are
/// reached through raw pointers only, never through a `&mut [u8]` of the
/// whole arena (which would alias every block handed out).
pub(crate) struct Arena {
    map: MmapRaw,
    /// Start of the usable, `POOL_SIZE`-aligned window, with the mapping's
    /// provenance.
    base: *mut u8,
    /// Usable bytes from `base`.
    size: usize,
}

impl Arena {
    /// Bytes mapped for an arena of `size` usable bytes.
    pub(crate) const fn mapped_len(size: usize) -> usize {
        size + POOL_SIZE - MIN_PAGE
    }

    /// Maps an arena of `size` usable bytes (a multiple of `POOL_SIZE`).
    /// Nothing is touched: the pages become resident as pools are carved.
    pub(crate) fn map(size: usize) -> std::io::Result<Self> {
        debug_assert!(size > 0 && size % POOL_SIZE == 0);
        let len = Self::mapped_len(size);
        let map = MmapRaw::from(MmapMut::map_anon(len)?);
        let start = map.as_mut_ptr();
        let misalign = start.addr() & (POOL_SIZE - 1);
        let skip = if misalign == 0 { 0 } else { POOL_SIZE - misalign };
        if skip + size > map.len() {
            // Only possible with pages smaller than MIN_PAGE.
            return Err(std::io::Error::other("mapping is not page-aligned as expected"));
        }
        // `wrapping_add` keeps the mapping's provenance; `skip + size <= len`
        // (checked above), so the window is inside the mapping.
        let base = start.wrapping_add(skip);
        Ok(Self { map, base, size })
    }

    /// Start of the usable window (pool-aligned).
    #[inline]
    pub(crate) fn base(&self) -> *mut u8 {
        self.base
    }

    /// Usable bytes.
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Bytes of the whole mapping.
    pub(crate) fn mapped(&self) -> usize {
        self.map.len()
    }

    /// Gives the pages of `count` pools from pool `first` back to the OS
    /// without unmapping them; they read as zeros afterwards.
    ///
    /// # Safety
    /// No block of those pools may be live and no reference into them may
    /// exist: their contents are discarded.
    pub(crate) unsafe fn discard_pools(&self, first: usize, count: usize) {
        #[cfg(all(unix, not(miri)))]
        {
            let offset = self.base.addr() - self.map.as_mut_ptr().addr() + first * POOL_SIZE;
            // SAFETY: forwarded: nothing in the range is live or referenced, so
            // dropping its contents cannot be observed; the range is inside the
            // mapping (`first + count` pools of the usable window).
            let _ = unsafe {
                self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, count * POOL_SIZE)
            };
        }
        // Miri runs the real mapping (its `mmap` shim: private, anonymous,
        // page-aligned, zero-filled, so the window above is found the same
        // way) but has no `madvise`: the pages are zeroed instead, which is
        // what a private anonymous mapping reads as after `MADV_DONTNEED`. So
        // the code after a discard (the pool's header reads as zeros and is
        // carved again) is the code Miri checks, and a stale reference into
        // the range would see its memory overwritten.
        #[cfg(miri)]
        // SAFETY: forwarded as above; the range is inside the usable window
        // and the pointer is derived from its base (the mapping's provenance).
        unsafe {
            self.base.add(first * POOL_SIZE).write_bytes(0, count * POOL_SIZE)
        };
        #[cfg(not(any(unix, miri)))]
        let _ = (first, count);
    }
}
