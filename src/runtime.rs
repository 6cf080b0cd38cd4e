//! The process-wide record: the registry, the id counter and main.

use crate::config::{GilMode, InterpreterConfig, RuntimeConfig};
use crate::error::{Error, Result};
use crate::interp::gil::RawGil;
use crate::interp::{Counters, Interpreter, Record};
use crate::registry::Registry;
use crate::sync::{self, Arc, AtomicBool, AtomicU64, Mutex, Ordering};
use crate::InterpreterId;

static NEXT_RUNTIME_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How many deferred frees [`Runtime::quiesce`] drives at most.
#[cfg(not(loom))]
pub(crate) const QUIESCE_ROUNDS: usize = 4096;
/// Under loom every round is explored: keep it small.
#[cfg(loom)]
pub(crate) const QUIESCE_ROUNDS: usize = 8;

pub(crate) struct RuntimeInner {
    pub(crate) uid: u64,
    pub(crate) registry: Registry,
    /// The main interpreter; emptied when the `Runtime` value drops, which
    /// breaks the runtime ↔ main reference cycle.
    main: Mutex<Option<Arc<Record>>>,
    /// Main's GIL, shared by every `GilMode::Shared` interpreter.
    main_gil: Arc<RawGil>,
    /// Set once main is closed: no interpreter may be created after that.
    pub(crate) main_closed: AtomicBool,
    /// Subinterpreters announced by `create` and not yet closed (low bits),
    /// and `MAIN_CLOSING`: main's close has begun (or is being tried). One
    /// word, changed only by read-modify-writes, so that a create and a
    /// close of main always see each other (`claim_main_close`).
    subs: AtomicU64,
    pub(crate) finalizing: AtomicBool,
    next_id: AtomicU64,
    pub(crate) counters: Counters,
    config: RuntimeConfig,
    /// Runtime-wide module state: the builtin table and finders.
    pub(crate) modules: crate::module::RuntimeModules,
    /// Runtime-wide audit hooks and the hook count (issue 12, `services`).
    pub(crate) services: crate::services::RuntimeServices,
}

/// `RuntimeInner::subs` bit: main's close has been claimed.
const MAIN_CLOSING: u64 = 1 << 63;

impl RuntimeInner {
    /// Announces a new subinterpreter; `false` (nothing changed) once main's
    /// close has been claimed.
    pub(crate) fn announce_sub(&self) -> bool {
        let prev = self.subs.fetch_add(1, Ordering::SeqCst);
        if prev & MAIN_CLOSING != 0 && !crate::sync::mutation("main_close_unseen") {
            self.subs.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// A subinterpreter announced by `announce_sub` is gone (closed and
    /// unlinked, or its creation undone).
    pub(crate) fn retire_sub(&self) {
        self.subs.fetch_sub(1, Ordering::SeqCst);
    }

    /// Subinterpreters announced and not yet retired.
    pub(crate) fn live_subs(&self) -> u64 {
        self.subs.load(Ordering::SeqCst) & !MAIN_CLOSING
    }

    /// Claims main's close: from here every create is refused. Refused (and
    /// nothing claimed) while a subinterpreter is announced, or when another
    /// close of main holds the claim (or main is closed).
    pub(crate) fn claim_main_close(&self) -> Result<()> {
        let prev = self.subs.fetch_or(MAIN_CLOSING, Ordering::SeqCst);
        if prev & MAIN_CLOSING != 0 {
            return Err(Error::InterpreterClosed { id: 0 });
        }
        let remaining = prev & !MAIN_CLOSING;
        if remaining > 0 {
            self.unclaim_main_close();
            return Err(Error::MainHasSubinterpreters { remaining: remaining as usize });
        }
        Ok(())
    }

    /// Gives back a claim of `claim_main_close` (main's close failed before
    /// it began).
    pub(crate) fn unclaim_main_close(&self) {
        self.subs.fetch_and(!MAIN_CLOSING, Ordering::SeqCst);
    }

    /// The main interpreter's record, until the `Runtime` value has dropped
    /// and main has closed.
    pub(crate) fn main_record(&self) -> Option<Arc<Record>> {
        sync::lock(&self.main).clone()
    }

    /// Once the `Runtime` value has dropped and main has closed, forgets main:
    /// this breaks the runtime ↔ main reference cycle (handles keep what they
    /// need alive).
    pub(crate) fn release_main_if_finalized(&self) {
        if self.finalizing.load(Ordering::SeqCst) && self.main_closed.load(Ordering::SeqCst) {
            sync::lock(&self.main).take();
        }
    }
}

/// Runtime-wide counters, from [`Runtime::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeStats {
    /// Interpreters in the registry (main included).
    pub live: usize,
    /// Interpreters created so far (main included): the next id.
    pub created: u64,
    /// Interpreter records whose memory has been freed (closed, unlinked,
    /// reclaimed, and no handle left).
    pub records_freed: usize,
    /// Registry frees deferred by the epoch collector and not run yet.
    pub deferred_frees: usize,
}

/// The process-wide record (CPython's `_PyRuntime`): owns the registry of live
/// interpreters, the id counter and the main interpreter (id 0).
///
/// Create one per process with [`Runtime::global`], or independent ones with
/// [`Runtime::new`] (tests, embedders that want several). Dropping a `Runtime`
/// finalizes it: every interpreter is closed (one that a thread is still
/// inside is closed by the last thread to leave), then main.
///
/// ```
/// use subinterp::{InterpreterConfig, Runtime, RuntimeConfig};
///
/// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
/// assert_eq!(rt.main().id(), 0);
/// let a = rt.create(InterpreterConfig::isolated()).unwrap();
/// let b = rt.create(InterpreterConfig::isolated()).unwrap();
/// assert_eq!((a.id(), b.id()), (1, 2));
/// assert_eq!(rt.get(2).unwrap(), b);
/// assert_eq!(rt.ids(), vec![0, 1, 2]);
/// ```
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("uid", &self.inner.uid).field("stats", &self.stats()).finish()
    }
}

impl Runtime {
    /// Creates an independent runtime with its main interpreter.
    ///
    /// Errors: [`Error::InvalidConfig`] for a bad switch interval.
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        config.validate()?;
        let uid = NEXT_RUNTIME_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let main_gil = Arc::new(RawGil::new(config.switch_interval));
        let inner = Arc::new(RuntimeInner {
            uid,
            registry: Registry::new(uid),
            main: Mutex::new(None),
            main_gil: main_gil.clone(),
            main_closed: AtomicBool::new(false),
            subs: AtomicU64::new(0),
            finalizing: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            config,
            modules: crate::module::RuntimeModules::default(),
            services: crate::services::RuntimeServices::new(),
        });
        let main = Arc::new(Record::new(0, InterpreterConfig::main(), main_gil, None, inner.clone()));
        inner.registry.insert(main.clone());
        *sync::lock(&inner.main) = Some(main);
        Ok(Runtime { inner })
    }

    /// The lazily created process-wide runtime (default config). It is never
    /// dropped.
    #[cfg(not(loom))]
    pub fn global() -> &'static Runtime {
        static GLOBAL: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("the default RuntimeConfig is valid"))
    }

    /// The shared record behind this runtime.
    pub(crate) fn inner(&self) -> &RuntimeInner {
        &self.inner
    }

    /// The config this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The main interpreter (id 0).
    pub fn main(&self) -> Interpreter {
        Interpreter { rec: self.inner.main_record().expect("main is set until the Runtime drops") }
    }

    /// Creates an interpreter. It is `Ready` when this returns; nothing is
    /// mapped or allocated for its heap until it is used.
    ///
    /// Errors: [`Error::InvalidConfig`] for a contradictory config;
    /// [`Error::InterpreterClosed`] (id 0) once main is closed; the error of
    /// an audit hook that refused `cpython.PyInterpreterState_New`
    /// (`docs/services.md`), with nothing made.
    pub fn create(&self, config: InterpreterConfig) -> Result<Interpreter> {
        config.validate()?;
        let rt = &self.inner;
        crate::services::audit::interpreter_new(rt)?;
        if rt.main_closed.load(Ordering::SeqCst) || rt.finalizing.load(Ordering::SeqCst) {
            return Err(Error::InterpreterClosed { id: 0 });
        }
        // Announced before anything is made, so that a close of main racing
        // this create either sees it (and refuses) or is seen (and this
        // create is refused): see `RuntimeInner::claim_main_close`.
        if !rt.announce_sub() {
            return Err(Error::InterpreterClosed { id: 0 });
        }
        let gil = match config.gil {
            GilMode::Own => {
                Arc::new(RawGil::new(config.switch_interval.unwrap_or(crate::config::DEFAULT_SWITCH_INTERVAL)))
            }
            GilMode::Shared => rt.main_gil.clone(),
        };
        let heap_owner = if config.use_main_obmalloc {
            match rt.main_record() {
                Some(main) => Some(main),
                None => {
                    rt.retire_sub();
                    return Err(Error::InterpreterClosed { id: 0 });
                }
            }
        } else {
            None
        };
        let id = rt.next_id.fetch_add(1, Ordering::Relaxed);
        let rec = Arc::new(Record::new(id, config, gil, heap_owner, rt.clone()));
        rt.registry.insert(rec.clone());
        Ok(Interpreter { rec })
    }

    /// The live interpreter with this id: wait-free, O(log n), no lock.
    ///
    /// Errors: [`Error::InterpreterNotFound`] (never existed, or closed).
    pub fn get(&self, id: InterpreterId) -> Result<Interpreter> {
        match self.inner.registry.get(id) {
            Some(rec) => Ok(Interpreter { rec }),
            None => Err(Error::InterpreterNotFound { id }),
        }
    }

    /// Closes the live interpreter with this id (CPython's
    /// `_interpreters.destroy(id)`): [`Interpreter::close`] after a lookup.
    ///
    /// Errors: [`Error::InterpreterNotFound`] for an id that never existed or
    /// is already closed, then every refusal of [`Interpreter::close`].
    ///
    /// ```
    /// use subinterp::{Error, InterpreterConfig, Runtime, RuntimeConfig};
    /// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    /// let id = rt.create(InterpreterConfig::isolated()).unwrap().id();
    /// rt.close(id).unwrap();
    /// assert!(matches!(rt.close(id), Err(Error::InterpreterNotFound { .. })));
    /// ```
    pub fn close(&self, id: InterpreterId) -> Result<crate::CloseReport> {
        self.get(id)?.close()
    }

    /// Handles to every live interpreter, in id order (one consistent snapshot).
    pub fn interpreters(&self) -> Vec<Interpreter> {
        self.inner.registry.snapshot().into_iter().map(|rec| Interpreter { rec }).collect()
    }

    /// Ids of every live interpreter, in order.
    pub fn ids(&self) -> Vec<InterpreterId> {
        self.inner.registry.ids()
    }

    /// Number of live interpreters (main included).
    pub fn len(&self) -> usize {
        self.inner.registry.len()
    }

    /// Always false: main is live until the runtime is finalized.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters: live, created, freed records, deferred frees.
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            live: self.inner.registry.len(),
            created: self.inner.next_id.load(Ordering::Relaxed),
            records_freed: self.inner.counters.records_freed.load(Ordering::Relaxed),
            deferred_frees: self.inner.registry.garbage(),
        }
    }

    /// Drives the registry's epoch collector until every deferred free has
    /// run. Returns how many are still outstanding: 0 unless another thread
    /// is in the middle of a registry read.
    pub fn quiesce(&self) -> usize {
        self.inner.registry.quiesce(QUIESCE_ROUNDS)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let rt = &self.inner;
        rt.finalizing.store(true, Ordering::SeqCst);
        for interp in self.interpreters() {
            if !interp.is_main() {
                let _ = interp.close_or_defer();
            }
        }
        let _ = self.main().close_or_defer();
        rt.registry.quiesce(QUIESCE_ROUNDS);
        rt.release_main_if_finalized();
    }
}
