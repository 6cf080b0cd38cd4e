//! Interpreter services (issue 12): audit hooks (PEP 578) and code-extra
//! slots (PEP 523). See `docs/services.md`.
//!
//! The records live beside the interpreter's other state: an
//! [`InterpServices`] in every interpreter record, a [`RuntimeServices`] in
//! the runtime. Neither holds a handle to a record, so they create no
//! reference cycle through the registry.

pub(crate) mod audit;
pub(crate) mod code_extra;

use crate::error::Error;
use crate::Gil;

pub use code_extra::MAX_CODE_EXTRA_INDEXES;

/// The per-interpreter services.
pub(crate) struct InterpServices {
    /// `interp->audit_hooks`: this interpreter's hooks, in registration order.
    pub(crate) hooks: audit::HookList,
    /// `co_extra_user_count` and `co_extra_freefuncs`.
    pub(crate) code_extra: code_extra::CodeExtraTable,
}

impl InterpServices {
    pub(crate) fn new() -> Self {
        Self { hooks: audit::HookList::new(), code_extra: code_extra::CodeExtraTable::new() }
    }
}

/// The runtime-wide services.
pub(crate) struct RuntimeServices {
    /// Hooks registered anywhere in this runtime (its own and every live
    /// interpreter's): read by `audit` when some runtime of the process has
    /// hooks (the first check is a process-wide static, `audit::PROCESS_HOOKS`).
    pub(crate) hooks_total: audit::HookCount,
    /// `_PyRuntime.audit_hooks`: runtime-wide hooks, in registration order.
    pub(crate) hooks: audit::HookList,
}

impl RuntimeServices {
    pub(crate) fn new() -> Self {
        Self { hooks_total: audit::HookCount::new(), hooks: audit::HookList::new() }
    }
}

/// `PyInterpreterState_Clear`'s part for the services, called once by
/// `close()` (with the close's token, after the modules' finalization, before the objects are torn down):
/// raises `cpython.PyInterpreterState_Clear`, then drops this interpreter's
/// hooks (new ones are refused from here: the interpreter is finalizing).
/// Returns the hooks' errors for the event (CPython ignores them) and the
/// panics of their drops.
pub(crate) fn clear(g: Gil<'_>) -> Vec<Error> {
    audit::clear(g)
}
