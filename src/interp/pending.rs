//! Pending calls: an unbounded multi-producer queue drained by the GIL holder.
//!
//! Producers push onto a Treiber stack with one compare-and-swap (no fixed
//! ring: CPython's 32/300-entry rings report "full"; this never does). The
//! consumer, always the GIL holder, takes the whole stack with one swap and
//! reverses it into FIFO order. Because the consumer only ever takes
//! everything, there is no ABA problem and no need for epochs. Closing swaps
//! in a sentinel, after which every push is refused: a call is either run or
//! handed back to its producer as an error, never silently dropped.

use std::collections::VecDeque;

use crate::sync::{self, AtomicPtr, Ordering, UnsafeCell};
use crate::Gil;

/// A call queued with [`Interpreter::add_pending_call`](crate::Interpreter::add_pending_call).
pub(crate) type PendingFn = Box<dyn for<'i> FnOnce(Gil<'i>) + Send + 'static>;

/// A stack node. Its data lives in a facade `UnsafeCell`: the producer
/// writes it before the push publishes the node, the consumer that detached
/// the node reads it, and under loom every such access is checked against
/// the happens-before order that the push and the swap must create.
struct Node {
    data: UnsafeCell<NodeData>,
}

struct NodeData {
    /// Taken by the consumer (`None` afterwards).
    call: Option<PendingFn>,
    next: *mut Node,
}

/// The address of this static is the "closed" sentinel; it is never dereferenced.
static CLOSED_SENTINEL: u8 = 0;

fn closed() -> *mut Node {
    std::ptr::addr_of!(CLOSED_SENTINEL) as *mut Node
}

pub(crate) struct PendingCalls {
    head: AtomicPtr<Node>,
    /// Calls taken off the stack but not run yet, in FIFO order. Touched only
    /// by the holder of the owning interpreter's GIL, one short borrow at a time.
    ready: UnsafeCell<VecDeque<PendingFn>>,
}

// SAFETY: `head` is an atomic pointer to heap nodes whose payload is `Send`;
// `ready` is only accessed by the thread that holds the interpreter's GIL
// (see `pop_ready`), so no two threads touch it at once.
unsafe impl Sync for PendingCalls {}
// SAFETY: all owned payloads are `Send`.
unsafe impl Send for PendingCalls {}

impl std::fmt::Debug for PendingCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCalls").field("closed", &self.is_closed()).finish_non_exhaustive()
    }
}

impl PendingCalls {
    pub(crate) fn new() -> Self {
        Self { head: AtomicPtr::new(std::ptr::null_mut()), ready: UnsafeCell::new(VecDeque::new()) }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.head.load(Ordering::Acquire) == closed()
    }

    /// Queues `call`; hands it back if the queue is closed.
    pub(crate) fn push(&self, call: PendingFn) -> Result<(), PendingFn> {
        let node = Box::into_raw(Box::new(Node {
            data: UnsafeCell::new(NodeData { call: Some(call), next: std::ptr::null_mut() }),
        }));
        // The push publishes the node's data: Release on success. (Mutation
        // `pending_relaxed_push`: publish with Relaxed.)
        let publish = if sync::mutation("pending_relaxed_push") { Ordering::Relaxed } else { Ordering::AcqRel };
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            if head == closed() {
                // SAFETY: `node` came from `Box::into_raw` above and was never
                // published, so we still own it.
                let node = unsafe { Box::from_raw(node) };
                // SAFETY: the node is ours alone (never published).
                let call = node.data.with_mut(|d| unsafe { (*d).call.take() });
                return Err(call.expect("a fresh node holds its call"));
            }
            // SAFETY: `node` is not published yet; we own it exclusively.
            unsafe { (*node).data.with_mut(|d| (*d).next = head) };
            match self.head.compare_exchange(head, node, publish, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(h) => head = h,
            }
        }
    }

    /// Converts a detached stack into FIFO order.
    fn collect(mut p: *mut Node) -> Vec<PendingFn> {
        let mut out = Vec::new();
        while !p.is_null() {
            // SAFETY: every non-sentinel pointer reachable from a detached
            // head was created by `Box::into_raw` in `push` and is owned by
            // the single thread that detached it.
            let node = unsafe { Box::from_raw(p) };
            // SAFETY: detached: no other thread can reach the node; its data
            // was published by the push that the detaching swap read.
            let (call, next) = node.data.with_mut(|d| unsafe { ((*d).call.take(), (*d).next) });
            p = next;
            out.extend(call);
        }
        out.reverse();
        out
    }

    /// Moves everything pushed so far to the ready queue. GIL holder only.
    pub(crate) fn take_pushed(&self) {
        let head = self.head.load(Ordering::Acquire);
        if head.is_null() || head == closed() {
            return;
        }
        let head = self.head.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if head == closed() {
            // Closed in between (only the GIL holder closes, so not really
            // reachable); put the sentinel back.
            self.head.store(closed(), Ordering::Release);
            return;
        }
        let calls = Self::collect(head);
        // SAFETY: only the GIL holder calls this; the borrow ends before any
        // user code runs.
        self.ready.with_mut(|q| unsafe { (*q).extend(calls) });
    }

    /// Pops the next ready call. GIL holder only.
    pub(crate) fn pop_ready(&self) -> Option<PendingFn> {
        // SAFETY: only the GIL holder calls this; the borrow ends before the
        // popped call runs, so a call that re-enters the queue is fine.
        self.ready.with_mut(|q| unsafe { (*q).pop_front() })
    }

    /// Whether calls are waiting in the ready queue. GIL holder only.
    pub(crate) fn has_ready(&self) -> bool {
        // SAFETY: as in `pop_ready`.
        self.ready.with(|q| unsafe { !(*q).is_empty() })
    }

    /// Closes the queue and returns every call not run yet, in FIFO order.
    /// GIL holder only. Later pushes are refused.
    pub(crate) fn close(&self) -> Vec<PendingFn> {
        // (Mutation `pending_close_no_sentinel`: empty the stack but leave it
        // open, so later pushes are accepted and never run.)
        let sentinel = if sync::mutation("pending_close_no_sentinel") { std::ptr::null_mut() } else { closed() };
        let head = self.head.swap(sentinel, Ordering::AcqRel);
        let pushed = if head == closed() { Vec::new() } else { Self::collect(head) };
        // SAFETY: only the GIL holder calls this.
        let mut out: Vec<PendingFn> = self.ready.with_mut(|q| unsafe { (*q).drain(..).collect() });
        out.extend(pushed);
        out
    }
}

impl Drop for PendingCalls {
    fn drop(&mut self) {
        let head = self.head.swap(closed(), Ordering::AcqRel);
        if head != closed() {
            drop(Self::collect(head));
        }
    }
}
