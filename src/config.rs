//! Runtime and interpreter configuration.

use std::time::Duration;

use crate::error::{Error, Result};

/// CPython's default GIL switch interval (`sys.getswitchinterval() == 0.005`).
pub const DEFAULT_SWITCH_INTERVAL: Duration = Duration::from_millis(5);

/// The longest switch interval accepted (CPython has no upper bound; a longer
/// one only starves waiting threads).
pub const MAX_SWITCH_INTERVAL: Duration = Duration::from_secs(10);

/// Which GIL an interpreter runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GilMode {
    /// Its own GIL: it runs in parallel with every other interpreter (PEP 684,
    /// CPython's `PyInterpreterConfig_OWN_GIL`).
    Own,
    /// The main interpreter's GIL: it never runs at the same time as main or
    /// any other shared-GIL interpreter (`PyInterpreterConfig_SHARED_GIL`).
    Shared,
}

/// How an interpreter is built; mirrors CPython's `PyInterpreterConfig`.
///
/// Start from a preset, [`InterpreterConfig::isolated`] (the default, like
/// CPython's `_PyInterpreterConfig_INIT`) or [`InterpreterConfig::legacy`]
/// (`_PyInterpreterConfig_LEGACY_INIT`), and change fields. Contradictory
/// combinations are refused by [`Runtime::create`](crate::Runtime::create)
/// with [`Error::InvalidConfig`], including the one CPython accepts by
/// mistake (a shared allocator with an own GIL).
///
/// ```
/// use subinterp::{GilMode, InterpreterConfig};
///
/// let cfg = InterpreterConfig { gil: GilMode::Shared, ..InterpreterConfig::isolated() };
/// // An own allocator needs the multi-interpreter extension check:
/// assert!(InterpreterConfig { check_multi_interp_extensions: false, ..cfg }.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpreterConfig {
    /// Own GIL or main's.
    pub gil: GilMode,
    /// The GIL switch interval: how long a waiting thread lets the holder run
    /// before it asks for the GIL. `None` takes the default (5 ms) for an own
    /// GIL; a shared GIL always uses main's interval, so `Some` is refused there.
    pub switch_interval: Option<Duration>,
    /// Whether more than one OS thread may enter this interpreter. With `false`
    /// the interpreter is bound to the first thread that enters it and any other
    /// thread gets [`Error::ThreadsNotAllowed`].
    pub allow_threads: bool,
    /// Whether daemon threads are allowed (stored for the threading layer;
    /// requires `allow_threads`).
    pub allow_daemon_threads: bool,
    /// Whether `fork` is allowed (stored for embedders that expose it).
    pub allow_fork: bool,
    /// Whether `exec` is allowed (stored for embedders that expose it).
    pub allow_exec: bool,
    /// Refuse extension modules that do not declare support for several
    /// interpreters (CPython's `check_multi_interp_extensions`).
    pub check_multi_interp_extensions: bool,
    /// Allocate from the main interpreter's heap instead of an own one. Only
    /// valid with [`GilMode::Shared`].
    pub use_main_obmalloc: bool,
    /// Byte budget for this interpreter's heap (arenas plus large blocks);
    /// `None` means unlimited.
    pub memory_limit: Option<usize>,
}

impl InterpreterConfig {
    /// The isolated preset (CPython's `_PyInterpreterConfig_INIT`): own GIL, own
    /// allocator, no fork/exec/daemon threads, extension check on.
    pub fn isolated() -> Self {
        Self {
            gil: GilMode::Own,
            switch_interval: None,
            allow_threads: true,
            allow_daemon_threads: false,
            allow_fork: false,
            allow_exec: false,
            check_multi_interp_extensions: true,
            use_main_obmalloc: false,
            memory_limit: None,
        }
    }

    /// The legacy preset (CPython's `_PyInterpreterConfig_LEGACY_INIT`): main's
    /// GIL and allocator, everything allowed, extension check off.
    pub fn legacy() -> Self {
        Self {
            gil: GilMode::Shared,
            switch_interval: None,
            allow_threads: true,
            allow_daemon_threads: true,
            allow_fork: true,
            allow_exec: true,
            check_multi_interp_extensions: false,
            use_main_obmalloc: true,
            memory_limit: None,
        }
    }

    /// The main interpreter's config: legacy, but with its own GIL (as CPython).
    pub(crate) fn main() -> Self {
        Self { gil: GilMode::Own, use_main_obmalloc: false, check_multi_interp_extensions: false, ..Self::legacy() }
    }

    /// CPython's feature-flag word for this config (`Py_RTFLAGS_*`:
    /// `USE_MAIN_OBMALLOC = 1<<5`, `MULTI_INTERP_EXTENSIONS = 1<<8`,
    /// `THREADS = 1<<10`, `DAEMON_THREADS = 1<<11`, `FORK = 1<<15`,
    /// `EXEC = 1<<16`), as `test_configured_settings` checks them.
    ///
    /// ```
    /// use subinterp::InterpreterConfig;
    /// assert_eq!(InterpreterConfig::isolated().feature_flags(), (1 << 8) | (1 << 10));
    /// ```
    pub fn feature_flags(&self) -> u32 {
        let mut f = 0;
        if self.use_main_obmalloc {
            f |= 1 << 5;
        }
        if self.check_multi_interp_extensions {
            f |= 1 << 8;
        }
        if self.allow_threads {
            f |= 1 << 10;
        }
        if self.allow_daemon_threads {
            f |= 1 << 11;
        }
        if self.allow_fork {
            f |= 1 << 15;
        }
        if self.allow_exec {
            f |= 1 << 16;
        }
        f
    }

    /// Checks the config for contradictions; [`Runtime::create`](crate::Runtime::create) calls this.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &str| Err(Error::InvalidConfig { reason: reason.to_owned() });
        if self.use_main_obmalloc && self.gil == GilMode::Own {
            return bad("use_main_obmalloc = true needs gil = Shared: two GILs must not share one heap \
                 (CPython documents this rule but accepts it by mistake)");
        }
        if !self.use_main_obmalloc && !self.check_multi_interp_extensions {
            return bad("per-interpreter obmalloc does not support single-phase init extension modules: \
                 set check_multi_interp_extensions = true or use_main_obmalloc = true");
        }
        if self.allow_daemon_threads && !self.allow_threads {
            return bad("allow_daemon_threads = true needs allow_threads = true");
        }
        if self.use_main_obmalloc && self.memory_limit.is_some() {
            return bad("memory_limit needs an own heap (use_main_obmalloc = false)");
        }
        match (self.gil, self.switch_interval) {
            (GilMode::Shared, Some(_)) => {
                return bad("a shared GIL uses the main interpreter's switch interval: leave switch_interval = None")
            }
            (GilMode::Own, Some(d)) if d.is_zero() => return bad("switch_interval must be greater than zero"),
            (GilMode::Own, Some(d)) if d > MAX_SWITCH_INTERVAL => return bad("switch_interval must be at most 10 s"),
            _ => {}
        }
        Ok(())
    }
}

impl Default for InterpreterConfig {
    /// The isolated preset.
    fn default() -> Self {
        Self::isolated()
    }
}

/// How a [`Runtime`](crate::Runtime) is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The main interpreter's GIL switch interval (also used by every
    /// shared-GIL interpreter). Default 5 ms.
    pub switch_interval: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { switch_interval: DEFAULT_SWITCH_INTERVAL }
    }
}

impl RuntimeConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.switch_interval.is_zero() || self.switch_interval > MAX_SWITCH_INTERVAL {
            return Err(Error::InvalidConfig {
                reason: "RuntimeConfig::switch_interval must be greater than zero and at most 10 s".into(),
            });
        }
        Ok(())
    }
}
