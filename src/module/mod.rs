//! Module tables (issue 5): process-wide module indexes, wait-free
//! `modules_by_index`, per-interpreter import. This file is the integration
//! point with the runtime and the interpreter record.

/// Runtime-wide module state (the builtin table of module definitions).
#[derive(Debug, Default)]
pub(crate) struct RuntimeModules {}

/// One interpreter's module tables.
#[derive(Debug, Default)]
pub(crate) struct ModuleTable {}

impl ModuleTable {
    pub(crate) fn new() -> Self {
        Self {}
    }

    /// Releases every module of a closing interpreter. Called by `close()`
    /// with the interpreter's GIL held, after its pending calls ran.
    pub(crate) fn teardown(&self) {}
}
