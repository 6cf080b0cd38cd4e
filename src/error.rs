//! The crate's one error type.

use crate::InterpreterId;

/// Everything that can go wrong when using the runtime.
///
/// Misuse and bad input come back as one of these variants, never as a panic,
/// an abort or a hang. Each message says what went wrong and, where there is
/// one, what to do about it. The variant texts follow CPython's where CPython
/// has an equivalent error (for example `"unrecognized interpreter ID 7"`).
///
/// ```
/// use subinterp::{Error, Runtime, RuntimeConfig};
///
/// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
/// let err = rt.get(42).unwrap_err();
/// assert!(matches!(err, Error::InterpreterNotFound { id: 42 }));
/// assert_eq!(err.to_string(), "unrecognized interpreter ID 42");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No live interpreter has this id (it never existed, or it was closed and
    /// unlinked). Ids are never reused.
    #[error("unrecognized interpreter ID {id}")]
    InterpreterNotFound {
        /// The id that was asked for.
        id: InterpreterId,
    },

    /// The interpreter is finalizing or closed: it accepts no new work.
    #[error("interpreter {id} is closed (or being closed); create a new interpreter to run more work")]
    InterpreterClosed {
        /// The closed interpreter.
        id: InterpreterId,
    },

    /// `close()` was refused because other threads are inside the interpreter
    /// (holding its GIL, waiting for it, or detached in `allow_threads`).
    #[error(
        "interpreter running: interpreter {id} has {threads} other thread(s) inside with_gil; \
         let them leave (an InterruptHandle can ask them to) and close again"
    )]
    InterpreterRunning {
        /// The interpreter that is still in use.
        id: InterpreterId,
        /// How many other threads were inside it.
        threads: usize,
    },

    /// `close()` was called for the interpreter the calling thread is inside.
    #[error("cannot destroy the current interpreter ({id}); close it from outside its with_gil")]
    CannotCloseCurrent {
        /// The interpreter the caller is inside.
        id: InterpreterId,
    },

    /// The main interpreter cannot close while subinterpreters are alive.
    #[error(
        "cannot close the main interpreter while {remaining} subinterpreter(s) are alive; \
         close them first (or drop the Runtime, which closes all of them)"
    )]
    MainHasSubinterpreters {
        /// How many subinterpreters were still alive.
        remaining: usize,
    },

    /// An `InterpreterConfig` (or `RuntimeConfig`) contradicts itself.
    #[error("invalid interpreter config: {reason}")]
    InvalidConfig {
        /// What is contradictory, and what to change.
        reason: String,
    },

    /// The calling thread holds one interpreter's GIL and asked for another's.
    /// A thread holds at most one GIL at a time: release the first one with
    /// `Gil::allow_threads` and enter the second from inside that closure.
    #[error(
        "this thread holds the GIL of interpreter {held} and asked for interpreter {requested}; \
         a thread holds one GIL at a time: call gil.allow_threads(|| other.with_gil(..))"
    )]
    GilHeldByOtherInterpreter {
        /// The interpreter whose GIL the thread holds.
        held: InterpreterId,
        /// The interpreter it asked to enter.
        requested: InterpreterId,
    },

    /// A handle that belongs to one interpreter was used with another
    /// interpreter's GIL token.
    #[error("object belongs to interpreter {owner} but was used with the GIL of interpreter {used_with}")]
    WrongInterpreter {
        /// The interpreter the handle belongs to.
        owner: InterpreterId,
        /// The interpreter whose token was presented.
        used_with: InterpreterId,
    },

    /// An `InterruptHandle` asked the interpreter to stop; reported by the
    /// first checkpoint that saw the request.
    #[error("interpreter {id} was interrupted")]
    Interrupted {
        /// The interrupted interpreter.
        id: InterpreterId,
    },

    /// A user callback (pending call, hook, finalizer, …) panicked. The panic was
    /// caught at the boundary; every GIL and lock it held was released.
    #[error("{context} panicked: {message}")]
    CallbackPanicked {
        /// Which kind of callback panicked.
        context: &'static str,
        /// The panic payload, when it was a string.
        message: String,
    },

    /// The interpreter was created with `allow_threads: false` and a second OS
    /// thread tried to enter it.
    #[error(
        "thread is not supported for this interpreter ({id}): it was created with \
         allow_threads = false and is bound to the first thread that entered it"
    )]
    ThreadsNotAllowed {
        /// The single-threaded interpreter.
        id: InterpreterId,
    },

    /// `decref_id` was called more times than `incref_id`.
    #[error("interpreter {id}: id refcount would drop below zero (decref without a matching incref)")]
    IdRefUnderflow {
        /// The interpreter whose count would underflow.
        id: InterpreterId,
    },

    /// An allocation would exceed the interpreter's memory budget
    /// (`InterpreterConfig::memory_limit`, or a limiter hook said no).
    #[error(
        "MemoryError: interpreter {id} cannot allocate {requested} bytes: {in_use} of its {limit}-byte limit \
         are in use; raise memory_limit or free objects"
    )]
    MemoryError {
        /// The interpreter whose budget is exhausted.
        id: InterpreterId,
        /// The size of the refused request, in bytes.
        requested: usize,
        /// Bytes counted against the budget when the request came.
        in_use: usize,
        /// The budget in force, in bytes.
        limit: usize,
    },

    /// The operating system refused to map memory for an interpreter's heap
    /// (out of memory or address space, e.g. under `ulimit -v`). Like
    /// [`Error::MemoryError`], a Python `MemoryError`
    /// ([`is_memory_error`](Error::is_memory_error)): nothing was changed.
    #[error(
        "MemoryError: interpreter {id}: the system refused to map {size} bytes ({reason}); free objects, or \
         give the process more memory or address space"
    )]
    MmapFailed {
        /// The interpreter that asked.
        id: InterpreterId,
        /// The size of the mapping, in bytes.
        size: usize,
        /// What the operating system said.
        reason: String,
    },

    /// A free (or realloc) named memory this heap does not own, or memory
    /// already freed. Nothing was changed.
    #[error("interpreter {id}: refused to free {addr:#x}: {reason}")]
    InvalidFree {
        /// The interpreter whose heap refused.
        id: InterpreterId,
        /// The address that was passed.
        addr: usize,
        /// Why: "not owned by this heap", "double free", "owned by interpreter N", …
        reason: String,
    },

    /// The calling thread is exiting (its thread-locals are being destroyed),
    /// so it can no longer enter or close interpreters.
    #[error("this thread is exiting and can no longer enter an interpreter")]
    ThreadExiting,

    /// No builtin entry and no finder knows this module name (CPython's
    /// `ModuleNotFoundError`).
    #[error("No module named '{name}'")]
    ModuleNotFound {
        /// The name that was imported.
        name: String,
    },

    /// An import or a module registration was refused (see `reason`).
    #[error("cannot import module '{name}': {reason}")]
    ImportError {
        /// The module name.
        name: String,
        /// What went wrong, and what to do about it.
        reason: String,
    },

    /// Waiting for this module's init would deadlock: the init is already
    /// running on the calling thread, or on a thread that (transitively)
    /// waits for an import the calling thread is running.
    #[error(
        "import of module '{name}' would deadlock: its init is already running on this thread or on a \
         thread waiting for this one (most likely due to a circular import); import it lazily or break the cycle"
    )]
    CircularImport {
        /// The module whose init is in progress.
        name: String,
    },

    /// The module's definition does not support this kind of interpreter:
    /// not several interpreters (refused outside main), or not a
    /// per-interpreter GIL (refused in an own-GIL interpreter). Only when the
    /// interpreter's `check_multi_interp_extensions` is on. CPython's text.
    #[error("module {name} does not support loading in subinterpreters")]
    ModuleIsolation {
        /// The module name.
        name: String,
        /// The interpreter that refused it.
        id: InterpreterId,
    },

    /// A module init returned an error or panicked; nothing was kept.
    #[error("init of module '{name}' failed: {cause}")]
    ModuleInitFailed {
        /// The module name.
        name: String,
        /// The init's error text (or the panic message).
        cause: String,
    },

    /// An operation was applied to an object of the wrong type (CPython's
    /// `TypeError`), e.g. an unhashable dict key or `list_append` on a tuple.
    #[error("TypeError: {message}")]
    TypeError {
        /// What was wrong, in CPython's words where it has them.
        message: String,
    },

    /// A weak proxy was used after its referent died (CPython's
    /// `ReferenceError`); keep a strong reference while you need the object.
    #[error("ReferenceError: {message}")]
    ReferenceError {
        /// CPython's text: "weakly-referenced object no longer exists".
        message: String,
    },

    /// An attribute that does not exist, or cannot be set or deleted
    /// (CPython's `AttributeError`, with its text).
    #[error("AttributeError: {message}")]
    AttributeError {
        /// What was wrong, in CPython's words.
        message: String,
    },

    /// Integer arithmetic overflowed `i64`; ints do not wrap. Use floats or
    /// split the computation.
    #[error("OverflowError: {operation} overflowed a 64-bit int; ints do not wrap, use a float or smaller operands")]
    Overflow {
        /// The operation, e.g. `"int add"`.
        operation: &'static str,
    },

    /// Input nested deeper than the runtime follows (CPython's
    /// `RecursionError`): e.g. a dict key of tuples nested more than
    /// [`limit`](Error::RecursionError::limit) deep.
    #[error("RecursionError: maximum recursion depth ({limit}) exceeded while {context}; flatten the structure")]
    RecursionError {
        /// The depth limit.
        limit: usize,
        /// What was being done.
        context: &'static str,
    },

    /// An operation that is invalid in the object's current state (CPython's
    /// `RuntimeError`), e.g. a dict iterator stepped after the dict gained
    /// or lost keys ("dictionary changed size during iteration"): iterate
    /// over a snapshot ([`Obj::dict_items`](crate::Obj::dict_items)) to
    /// mutate while iterating.
    #[error("RuntimeError: {message}")]
    RuntimeError {
        /// What was wrong, in CPython's words.
        message: String,
    },

    /// An exception raised by user code (an audit hook, a callback), with
    /// CPython's class name: what `raise ValueError("…")` is in Python. Build
    /// one with [`Error::raised`]. `base_exception` says whether the class
    /// derives from `BaseException` but not from `Exception`
    /// (`KeyboardInterrupt`, `SystemExit`, `GeneratorExit`, `BaseException`
    /// itself): such an error is not silenced where CPython silences
    /// `Exception`s (see [`Error::is_exception`]).
    #[error("{type_name}: {message}")]
    Raised {
        /// The exception's class name, e.g. `"RuntimeError"`.
        type_name: String,
        /// Its message.
        message: String,
        /// Derives from `BaseException` only, not from `Exception`.
        base_exception: bool,
    },

    /// Every code-extra index of the interpreter is handed out (CPython's
    /// `PyUnstable_Eval_RequestCodeExtraIndex` returns -1 there). Indexes are
    /// never recycled: a tool should request one index and keep it.
    #[error(
        "interpreter {id} has handed out all {limit} code-extra indexes; indexes are never recycled: \
         request one per tool and reuse it"
    )]
    CodeExtraExhausted {
        /// The interpreter whose indexes are used up.
        id: InterpreterId,
        /// How many indexes an interpreter has (254).
        limit: usize,
    },

    /// A code-extra index that this interpreter did not hand out (CPython's
    /// `SystemError: bad argument to internal function`).
    #[error(
        "code-extra index {index} was not handed out by interpreter {id} ({count} so far); \
         get one from Interpreter::request_code_extra_index"
    )]
    CodeExtraIndex {
        /// The index that was passed.
        index: usize,
        /// The interpreter whose indexes were consulted.
        id: InterpreterId,
        /// How many indexes it has handed out.
        count: usize,
    },

    /// A name that is not registered (CPython's `LookupError`): an unknown
    /// encoding ("unknown encoding: X") or error handler ("unknown error
    /// handler name 'x'"); see `docs/codecs.md`.
    #[error("LookupError: {message}")]
    LookupError {
        /// What was not found, in CPython's words.
        message: String,
    },

    /// A str could not be encoded (CPython's `UnicodeEncodeError`): the
    /// code points `start..end` of the str (indexes in code points).
    #[error("UnicodeEncodeError: {message}")]
    UnicodeEncodeError {
        /// The codec's name, e.g. `"ascii"`.
        encoding: String,
        /// First code point that could not be encoded.
        start: usize,
        /// One past the last.
        end: usize,
        /// Why, e.g. `"ordinal not in range(128)"`.
        reason: String,
        /// CPython's whole text, e.g. "'ascii' codec can't encode character
        /// '\xe9' in position 1: ordinal not in range(128)".
        message: String,
    },

    /// Bytes could not be decoded (CPython's `UnicodeDecodeError`): the
    /// bytes `start..end` of the input.
    #[error("UnicodeDecodeError: {message}")]
    UnicodeDecodeError {
        /// The codec's name, e.g. `"utf-8"`.
        encoding: String,
        /// First byte that could not be decoded.
        start: usize,
        /// One past the last.
        end: usize,
        /// Why, e.g. `"invalid start byte"`.
        reason: String,
        /// CPython's whole text, e.g. "'utf-8' codec can't decode byte 0xff
        /// in position 0: invalid start byte".
        message: String,
    },

    /// A str could not be translated (CPython's `UnicodeTranslateError`,
    /// raised by the `strict` handler given such an exception object).
    #[error("UnicodeTranslateError: {message}")]
    UnicodeTranslateError {
        /// First code point.
        start: usize,
        /// One past the last.
        end: usize,
        /// Why.
        reason: String,
        /// CPython's whole text.
        message: String,
    },

    /// An error handler returned a position outside its input (CPython's
    /// `IndexError` with its text).
    #[error("IndexError: position {position} from error handler out of bounds")]
    HandlerPosition {
        /// The position the handler returned.
        position: i64,
    },

    /// An error with a note added on its way out (CPython's `add_note`),
    /// e.g. "encoding with 'rot13' codec failed" on an error raised by a
    /// registered codec. [`Error::without_note`] gives the original error.
    #[error("{error}\n{note}")]
    WithNote {
        /// The original error.
        error: Box<Error>,
        /// The note.
        note: String,
    },

    /// A warning turned into an error by the `error` action of a warnings
    /// filter (CPython raises `category(message)`): `category` is the
    /// category class's name (e.g. `"UserWarning"`), `message` the text.
    /// Catch it where the warning was issued, or change the filter
    /// (`docs/warnings.md`).
    #[error("{category}: {message}")]
    Warning {
        /// The name of the warning's category class.
        category: String,
        /// The warning's text.
        message: String,
    },

    /// An argument with the right type but a wrong value (CPython's
    /// `ValueError`), e.g. an unknown warnings action ("invalid action:
    /// 'x'") or a regular expression that does not compile.
    #[error("ValueError: {message}")]
    ValueError {
        /// What was wrong, in CPython's words where it has them.
        message: String,
    },

    /// A sequence index was out of range.
    #[error("IndexError: index {index} out of range for a sequence of length {len}")]
    IndexError {
        /// The index asked for.
        index: usize,
        /// The sequence's length.
        len: usize,
    },
}

impl Error {
    /// Whether this is a Python `MemoryError`: the interpreter's budget said
    /// no ([`Error::MemoryError`]) or the system did ([`Error::MmapFailed`]).
    /// Either way the operation changed nothing and the interpreter is
    /// usable.
    ///
    /// ```
    /// use subinterp::{InterpreterConfig, Runtime, RuntimeConfig};
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// let i = rt.create(InterpreterConfig::isolated())?;
    /// i.with_gil(|g| {
    ///     g.set_memory_limit(Some(1 << 20)).unwrap();
    ///     let e = g.alloc(8 << 20).unwrap_err();
    ///     assert!(e.is_memory_error());
    ///     assert!(!subinterp::Error::ThreadExiting.is_memory_error());
    /// })?;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn is_memory_error(&self) -> bool {
        matches!(self, Error::MemoryError { .. } | Error::MmapFailed { .. })
    }
}

/// Class names that derive from `BaseException` but not from `Exception`.
const BASE_EXCEPTION_ONLY: &[&str] =
    &["BaseException", "BaseExceptionGroup", "GeneratorExit", "KeyboardInterrupt", "SystemExit"];

impl Error {
    /// An [`Error::Raised`] of class `type_name`; `base_exception` is set for
    /// CPython's classes that are not `Exception`s (`BaseException`,
    /// `BaseExceptionGroup`, `GeneratorExit`, `KeyboardInterrupt`,
    /// `SystemExit`).
    ///
    /// ```
    /// use subinterp::Error;
    /// let e = Error::raised("ValueError", "bad value");
    /// assert_eq!(e.to_string(), "ValueError: bad value");
    /// assert!(e.is_exception());
    /// assert!(!Error::raised("SystemExit", "bye").is_exception());
    /// ```
    pub fn raised(type_name: impl Into<String>, message: impl Into<String>) -> Error {
        let type_name = type_name.into();
        let base_exception = BASE_EXCEPTION_ONLY.contains(&type_name.as_str());
        Error::Raised { type_name, message: message.into(), base_exception }
    }

    /// Whether CPython would class this error as an `Exception` (which some
    /// operations silence, e.g. an audit hook failing on `sys.addaudithook`)
    /// rather than a bare `BaseException`. Not `Exception`s: an
    /// [`Error::Interrupted`] (`KeyboardInterrupt`), an
    /// [`Error::ThreadExiting`] (`SystemExit`), a caught panic
    /// ([`Error::CallbackPanicked`]: a bug is never silenced), and an
    /// [`Error::Raised`] with `base_exception`. Every other variant is.
    pub fn is_exception(&self) -> bool {
        !matches!(
            self,
            Error::Interrupted { .. }
                | Error::ThreadExiting
                | Error::CallbackPanicked { .. }
                | Error::Raised { base_exception: true, .. }
        )
    }

    /// Whether CPython would class it as a `RuntimeError` (or a subclass:
    /// `RecursionError`, `NotImplementedError`, `PythonFinalizationError`).
    pub(crate) fn is_runtime_error(&self) -> bool {
        match self {
            Error::RecursionError { .. } | Error::RuntimeError { .. } => true,
            Error::Raised { type_name, base_exception: false, .. } => matches!(
                type_name.as_str(),
                "RuntimeError" | "RecursionError" | "NotImplementedError" | "PythonFinalizationError"
            ),
            _ => false,
        }
    }
}

impl Error {
    /// The name of the CPython built-in exception class this error stands
    /// for (one of [`EXCEPTION_CLASSES`](crate::EXCEPTION_CLASSES); the
    /// class itself is [`Gil::exception_class_of`](crate::Gil::exception_class_of)),
    /// or `None` where CPython has no built-in counterpart: the runtime's
    /// own errors about interpreters, GIL tokens and heap ownership, a
    /// caught panic, a module init's failure (its own text), the code-extra
    /// indexes running out, and an [`Error::Raised`] or [`Error::Warning`]
    /// whose class name is not a built-in one. A note
    /// ([`Error::WithNote`]) does not change the class.
    ///
    /// ```
    /// use subinterp::Error;
    /// assert_eq!(Error::ModuleNotFound { name: "spam".into() }.exception_name(), Some("ModuleNotFoundError"));
    /// assert_eq!(Error::raised("KeyError", "'k'").exception_name(), Some("KeyError"));
    /// assert_eq!(Error::raised("MyError", "mine").exception_name(), None);
    /// assert_eq!(Error::ThreadExiting.exception_name(), Some("SystemExit"));
    /// ```
    pub fn exception_name(&self) -> Option<&'static str> {
        Some(match self {
            Error::InterpreterNotFound { .. }
            | Error::InterpreterClosed { .. }
            | Error::InterpreterRunning { .. }
            | Error::CannotCloseCurrent { .. }
            | Error::MainHasSubinterpreters { .. }
            | Error::InvalidConfig { .. }
            | Error::GilHeldByOtherInterpreter { .. }
            | Error::WrongInterpreter { .. }
            | Error::CallbackPanicked { .. }
            | Error::IdRefUnderflow { .. }
            | Error::InvalidFree { .. }
            | Error::ModuleInitFailed { .. }
            | Error::CodeExtraExhausted { .. } => return None,
            Error::Interrupted { .. } => "KeyboardInterrupt",
            Error::ThreadExiting => "SystemExit",
            // CPython: "thread is not supported for isolated subinterpreters".
            Error::ThreadsNotAllowed { .. } => "RuntimeError",
            Error::MemoryError { .. } | Error::MmapFailed { .. } => "MemoryError",
            Error::ModuleNotFound { .. } => "ModuleNotFoundError",
            Error::ImportError { .. } | Error::ModuleIsolation { .. } => "ImportError",
            // importlib's `_DeadlockError` derives from RuntimeError.
            Error::CircularImport { .. } => "RuntimeError",
            Error::TypeError { .. } => "TypeError",
            Error::ReferenceError { .. } => "ReferenceError",
            Error::AttributeError { .. } => "AttributeError",
            Error::Overflow { .. } => "OverflowError",
            Error::RecursionError { .. } => "RecursionError",
            Error::RuntimeError { .. } => "RuntimeError",
            Error::Raised { type_name, .. } => return crate::exceptions::builtin_name(type_name),
            Error::CodeExtraIndex { .. } => "SystemError",
            Error::LookupError { .. } => "LookupError",
            Error::UnicodeEncodeError { .. } => "UnicodeEncodeError",
            Error::UnicodeDecodeError { .. } => "UnicodeDecodeError",
            Error::UnicodeTranslateError { .. } => "UnicodeTranslateError",
            Error::HandlerPosition { .. } | Error::IndexError { .. } => "IndexError",
            Error::WithNote { error, .. } => return error.exception_name(),
            Error::Warning { category, .. } => return crate::exceptions::builtin_name(category),
            Error::ValueError { .. } => "ValueError",
        })
    }
}

impl Error {
    /// The error without the notes added to it ([`Error::WithNote`]).
    pub fn without_note(&self) -> &Error {
        let mut e = self;
        while let Error::WithNote { error, .. } = e {
            e = error;
        }
        e
    }

    /// The notes added to the error, outermost last (CPython's `__notes__`
    /// order: the first added first).
    pub fn notes(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut e = self;
        while let Error::WithNote { error, note } = e {
            out.push(note.as_str());
            e = error;
        }
        out.reverse();
        out
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Renders a caught panic payload as text.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
