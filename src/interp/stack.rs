//! How much of the current thread's stack is left: the guard that turns a
//! deep recursion through the runtime (calls, imports, hooks) into a
//! `RecursionError` before the stack ends (a stack overflow aborts the
//! process). CPython 3.12+ checks its C stack the same way.
//!
//! The stack's lowest address comes from the thread's attributes
//! (`pthread_getattr_np` on Linux), read once per thread; the current
//! position is the address of a local. Where the bounds are unknown (other
//! systems, Miri), only the depth counters guard.

use std::cell::Cell;

/// Bytes of stack a call must find left: room for the runtime's own frames
/// between two checks (several KiB each in an unoptimized build) and for
/// what the user code in between uses.
pub(crate) const STACK_RED_ZONE: usize = 256 * 1024;

std::thread_local! {
    /// The stack's bounds (lowest usable address, end); (0, 0) until read,
    /// (1, 1) when unknown.
    static STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Whether less than [`STACK_RED_ZONE`] bytes of this thread's stack are
/// left. A position outside the thread's known stack (a signal stack, or a
/// local in a sanitizer's fake frame where the register cannot be read)
/// says nothing: then only the depth counters guard.
#[inline]
pub(crate) fn nearly_exhausted() -> bool {
    let here = stack_pointer();
    let bounds = STACK.try_with(|b| {
        if b.get() == (0, 0) {
            b.set(stack_bounds().unwrap_or((1, 1)));
        }
        b.get()
    });
    match bounds {
        Ok((low, high)) if low > 1 && (low..high).contains(&here) => here - low < STACK_RED_ZONE,
        _ => false,
    }
}

/// The current stack pointer: the register where reading it is one
/// instruction (a local's address can be elsewhere: a sanitizer moves
/// locals to fake stack frames on the heap), else a local's address.
#[inline(always)]
fn stack_pointer() -> usize {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let sp: usize;
        // SAFETY: reads the stack pointer register into a general register;
        // no memory is touched, no flags or other registers change.
        unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
        sp
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    {
        let sp: usize;
        // SAFETY: as above, for aarch64's stack pointer.
        unsafe { std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
        sp
    }
    #[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), not(miri))))]
    {
        let marker = 0u8;
        std::ptr::addr_of!(marker).addr()
    }
}

/// The current thread's stack: its lowest usable address (it grows down)
/// and its end.
#[cfg(all(target_os = "linux", not(miri)))]
fn stack_bounds() -> Option<(usize, usize)> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: `pthread_getattr_np` initializes `attr` for the calling
    // thread when it returns 0; it is destroyed exactly once below, after
    // `pthread_attr_getstack` read the stack's bounds out of it.
    unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut addr = std::ptr::null_mut();
        let mut size = 0;
        let ok = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        // The lowest page is the guard page: not usable.
        (ok && size > 0).then(|| (addr.addr() + 4096, addr.addr() + size))
    }
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn stack_bounds() -> Option<(usize, usize)> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fresh_thread_has_room_and_a_deep_one_does_not() {
        assert!(!super::nearly_exhausted());
        if !cfg!(all(target_os = "linux", not(miri))) {
            return; // no bounds there: the guard never fires, nothing to dive for
        }
        // Recurse until the guard says stop: it must, before the stack ends
        // (on Linux; elsewhere the guard never fires and we stop at a depth).
        fn dive(n: usize) -> usize {
            // A frame of at least 512 bytes that the optimizer keeps.
            let pad = std::hint::black_box([n as u8; 512]);
            if super::nearly_exhausted() || n > 10_000 {
                return n;
            }
            let deeper = dive(n + 1);
            std::hint::black_box(&pad);
            deeper
        }
        let depth = std::thread::Builder::new().stack_size(1 << 20).spawn(|| dive(0)).unwrap().join().unwrap();
        // 10,000 frames of >= 512 bytes do not fit the 1 MiB stack: the
        // guard must have fired first.
        assert!(depth < 10_000, "the guard fired at depth {depth}");
    }
}
