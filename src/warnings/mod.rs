//! The warnings machinery of an interpreter: categories, filters, the
//! registries and the per-thread `catch_warnings` (`docs/warnings.md`).
//!
//! CPython's design (`Python/_warnings.c`, `Lib/warnings.py`): one filter
//! list per interpreter, searched first match first; a per-module
//! `__warningregistry__` dict keyed `(text, category, lineno)` and
//! invalidated by a version that every filter mutation bumps; a once
//! registry; a default action. What differs, on purpose:
//!
//! * The filter list is an immutable snapshot (`Rc<[Entry]>`) replaced on
//!   every mutation: a warning matches against a snapshot with no copy and
//!   no lock (every access holds the GIL; nothing here is lock-free, so
//!   there is no loom model).
//! * [`Gil::catch_warnings`] is per thread: its temporary filters and its
//!   record list live in a thread-local stack keyed by the interpreter, so
//!   two threads of one interpreter never see each other's temporary
//!   filters (CPython's `catch_warnings` mutates the shared list).
//! * Categories are the interpreter's built-in exception classes
//!   ([`Gil::exception_class`]): `BaseException` → `Exception` → `Warning` →
//!   the standard categories, one set per interpreter. There is no
//!   raise/except machinery: the `error` action gives an
//!   [`Error::Warning`].

pub(crate) mod filters;
pub(crate) mod registry;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::rc::Rc;

use filters::{class_name, py_repr, Action, Entry, Filter, Matcher, Pattern};

use crate::error::{Error, Result};
use crate::gc::object::{incref, Obj, Raw};
use crate::gc::st;
use crate::gc::types::{is_subtype, type_body};
use crate::interp::run_callback;
use crate::{Gil, Kind};

/// Where shown warnings go (see [`Gil::set_warning_output`]): called with
/// the text of CPython's `formatwarning` (without the source line).
pub type WarningOutput = Rc<dyn Fn(&str)>;

/// The classes of the warnings machinery: the two exception bases,
/// `Warning`, and its standard subclasses (each a direct subclass of
/// `Warning`, as in CPython). They are the interpreter's built-in exception
/// classes of these names ([`Gil::exception_class`]).
pub const WARNING_CATEGORIES: [&str; 14] = [
    "BaseException",
    "Exception",
    "Warning",
    "UserWarning",
    "DeprecationWarning",
    "PendingDeprecationWarning",
    "SyntaxWarning",
    "RuntimeWarning",
    "FutureWarning",
    "ImportWarning",
    "UnicodeWarning",
    "BytesWarning",
    "ResourceWarning",
    "EncodingWarning",
];

const WARNING: usize = 2;
const USER: usize = 3;
const DEPRECATION: usize = 4;
const PENDING: usize = 5;
const IMPORT: usize = 9;
const RESOURCE: usize = 12;

/// How many shows may nest (an output sink that warns again).
const MAX_SHOW_DEPTH: u32 = 8;

/// A warning that was shown inside [`Gil::catch_warnings`] with `record`
/// (CPython's `warnings.WarningMessage`, without the source line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarningMessage {
    /// The warning's text.
    pub message: String,
    /// The category class's name.
    pub category: String,
    /// Where it was issued.
    pub filename: String,
    /// The line it was issued at (0: unknown).
    pub lineno: u64,
}

impl fmt::Display for WarningMessage {
    /// CPython's `formatwarning` without the source line:
    /// `"file:lineno: Category: message\n"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}:{}: {}: {}", self.filename, self.lineno, self.category, self.message)
    }
}

/// One entry of the filter list as [`Gil::warnings_filters`] reports it:
/// CPython's 5-tuple, with the patterns as their source text.
#[derive(Clone, Debug)]
pub struct WarningFilter<'i> {
    /// The action (`"default"`, `"error"`, …; any text when the list was
    /// set directly).
    pub action: String,
    /// The message pattern (matched case-insensitively from the start), or
    /// `None` for any message.
    pub message: Option<String>,
    /// The category class (a warning matches its subclasses too).
    pub category: Obj<'i>,
    /// The module pattern (case-sensitive, from the start), or `None`.
    pub module: Option<String>,
    /// The line, 0 for any.
    pub lineno: u64,
}

/// The per-interpreter state (in `GcState`, GIL-protected).
pub(crate) struct WarnState {
    /// Parallel to [`WARNING_CATEGORIES`] (one reference each).
    cats: Vec<Raw>,
    filters: Rc<[Entry]>,
    version: u64,
    /// `_onceregistry` (a dict).
    once: Raw,
    /// The registry of warnings issued without a module (CPython's
    /// `sys.__dict__` one).
    sys_registry: Raw,
    /// Interned keys: `"version"`, `"__warningregistry__"`, `"__name__"`,
    /// `"__file__"`.
    keys: [Raw; 4],
    default_action: Box<str>,
    output: Option<WarningOutput>,
    /// Categories named by a filter, one reference each until close, so a
    /// filter is plain data.
    pins: HashSet<Raw>,
    /// The last registry key made (one reference): a warning repeated from
    /// one place reuses it instead of making a str and a tuple each time.
    last_key: Option<Raw>,
}

impl WarnState {
    /// The references the state holds, one per entry, for the close to
    /// release (`gc::teardown`): tracked objects are freed by the close
    /// anyway, but untracked ones (the interned strs) only by their count.
    pub(crate) fn references(&self) -> Vec<Raw> {
        let mut v: Vec<Raw> = self.cats.clone();
        v.extend([self.once, self.sys_registry]);
        v.extend(self.keys);
        v.extend(self.last_key);
        v.extend(self.pins.iter().copied());
        v
    }

    fn pin(&mut self, r: Raw) {
        if self.pins.insert(r) {
            incref(r);
        }
    }
}

/// A scope of [`Gil::catch_warnings`] on this thread.
struct Ctx {
    uid: u64,
    filters: Rc<[Entry]>,
    record: Option<Vec<WarningMessage>>,
}

thread_local! {
    static CTX: RefCell<Vec<Ctx>> = const { RefCell::new(Vec::new()) };
    static SHOW_DEPTH: Cell<u32> = const { Cell::new(0) };
}

fn uid(g: Gil<'_>) -> u64 {
    g.interpreter().rec.gc.uid()
}

fn simple(action: &str, cat: Raw, module: Matcher) -> Entry {
    Entry::Filter(Filter {
        action: action.into(),
        parsed: Action::parse(action),
        message: Matcher::Any,
        category: cat,
        module,
        lineno: 0,
    })
}

/// CPython's release-build defaults (`init_filters`).
fn default_filters(cats: &[Raw]) -> Result<Rc<[Entry]>> {
    Ok(vec![
        simple("default", cats[DEPRECATION], Matcher::Re(Pattern::compile("__main__", false)?)),
        simple("ignore", cats[DEPRECATION], Matcher::Any),
        simple("ignore", cats[PENDING], Matcher::Any),
        simple("ignore", cats[IMPORT], Matcher::Any),
        simple("ignore", cats[RESOURCE], Matcher::Any),
    ]
    .into())
}

/// Makes the state on first use.
fn ensure(g: Gil<'_>) -> Result<()> {
    if st(g, |s| s.warnings.is_some()) {
        return Ok(());
    }
    if g.interpreter().rec.gc.is_closing() {
        return Err(Error::InterpreterClosed { id: g.id() });
    }
    // The exception hierarchy's classes (`crate::exceptions`).
    let cats = WARNING_CATEGORIES.iter().map(|name| g.exception_class(name)).collect::<Result<Vec<_>>>()?;
    let once = g.dict()?;
    let sys_registry = g.dict()?;
    let keys = [g.str("version")?, g.str("__warningregistry__")?, g.str("__name__")?, g.str("__file__")?];
    let cats: Vec<Raw> = cats.into_iter().map(Obj::into_raw).collect();
    let state = WarnState {
        filters: default_filters(&cats)?,
        pins: HashSet::new(),
        cats,
        version: 1,
        once: once.into_raw(),
        sys_registry: sys_registry.into_raw(),
        keys: keys.map(Obj::into_raw),
        default_action: "default".into(),
        output: None,
        last_key: None,
    };
    // Nothing ran since the check above that could have made another.
    st(g, |s| {
        s.warnings.get_or_insert(Box::new(state));
    });
    Ok(())
}

fn with_state<R>(g: Gil<'_>, f: impl FnOnce(&mut WarnState) -> R) -> Result<R> {
    ensure(g)?;
    st(g, |s| s.warnings.as_deref_mut().map(f)).ok_or_else(|| Error::InterpreterClosed { id: g.id() })
}

/// The filters this thread sees: its innermost `catch_warnings` scope's,
/// else the interpreter's.
fn snapshot(g: Gil<'_>) -> Result<Rc<[Entry]>> {
    let id = uid(g);
    if let Some(f) = CTX.with(|c| c.borrow().iter().rev().find(|x| x.uid == id).map(|x| x.filters.clone())) {
        return Ok(f);
    }
    with_state(g, |w| w.filters.clone())
}

/// Replaces the filters this thread sees and bumps the version
/// (`_filters_mutated`).
fn replace_filters(g: Gil<'_>, new: Vec<Entry>) -> Result<()> {
    let id = uid(g);
    let new: Rc<[Entry]> = new.into();
    let in_ctx = CTX.with(|c| {
        let mut c = c.borrow_mut();
        match c.iter_mut().rev().find(|x| x.uid == id) {
            Some(x) => {
                x.filters = new.clone();
                true
            }
            None => false,
        }
    });
    with_state(g, |w| {
        for e in new.iter() {
            if let Entry::Filter(f) = e {
                w.pin(f.category);
            }
        }
        if !in_ctx {
            w.filters = new;
        }
        w.version += 1;
    })
}

fn check_action(action: &str) -> Result<Action> {
    Action::parse(action).ok_or_else(|| Error::ValueError { message: format!("invalid action: {}", py_repr(action)) })
}

/// `filterwarnings`' category check.
fn filter_category(g: Gil<'_>, category: Option<&Obj<'_>>) -> Result<Raw> {
    let warning = with_state(g, |w| w.cats[WARNING])?;
    match category {
        None => Ok(warning),
        Some(c) if type_body(c.raw()).is_some() && is_subtype(c.raw(), warning) => Ok(c.raw()),
        Some(_) => Err(Error::TypeError { message: "category must be a Warning subclass".into() }),
    }
}

/// `warn`'s category check (`get_category`): `None` is `UserWarning`.
fn warn_category(g: Gil<'_>, category: Option<&Obj<'_>>) -> Result<Raw> {
    let (warning, user) = with_state(g, |w| (w.cats[WARNING], w.cats[USER]))?;
    check_warn_category(warning, user, category)
}

fn check_warn_category(warning: Raw, user: Raw, category: Option<&Obj<'_>>) -> Result<Raw> {
    match category {
        None => Ok(user),
        Some(c) if type_body(c.raw()).is_some() && is_subtype(c.raw(), warning) => Ok(c.raw()),
        Some(c) => {
            Err(Error::TypeError { message: format!("category must be a Warning subclass, not '{}'", c.type_name()) })
        }
    }
}

/// `_add_filter`: without `append`, an equal filter is removed and the new
/// one goes first; with it, the new one is appended unless an equal one is
/// there.
fn add_filter(g: Gil<'_>, f: Filter, append: bool) -> Result<()> {
    let cur = snapshot(g)?;
    let mut v: Vec<Entry> = cur.to_vec();
    let same = |e: &Entry| matches!(e, Entry::Filter(x) if *x == f);
    if append {
        if !v.iter().any(same) {
            v.push(Entry::Filter(f));
        }
    } else {
        if let Some(i) = v.iter().position(same) {
            v.remove(i);
        }
        v.insert(0, Entry::Filter(f));
    }
    replace_filters(g, v)
}

fn make_key<'i>(g: Gil<'i>, text: &str, cat: Raw, lineno: Option<u64>) -> Result<Obj<'i>> {
    let c = Obj::from_raw_borrowed(cat, g);
    match lineno {
        Some(l) => g.tuple(&[g.str(text)?, c, g.int(i64::try_from(l).unwrap_or(i64::MAX))?]),
        None => g.tuple(&[g.str(text)?, c]),
    }
}

/// The registry key `(text, category, lineno)`, the last one made if it is
/// the same (a tuple is immutable, so sharing it is unobservable).
fn location_key<'i>(g: Gil<'i>, text: &str, cat: Raw, lineno: u64) -> Result<Obj<'i>> {
    if let Some(r) = with_state(g, |w| w.last_key)? {
        let k = Obj::from_raw_borrowed(r, g);
        let same = k.get_item(0)?.as_str() == Some(text)
            && k.get_item(1)?.raw() == cat
            && k.get_item(2)?.as_int() == i64::try_from(lineno).ok();
        if same {
            return Ok(k);
        }
    }
    let k = make_key(g, text, cat, Some(lineno))?;
    let old = with_state(g, |w| w.last_key.replace(k.clone().into_raw()))?;
    // A tuple of a str, a class and an int: its release runs no user code.
    drop(old.map(|r| Obj::from_raw_owned(r, g)));
    Ok(k)
}

/// `warn_explicit` (`Python/_warnings.c`), from the registry check to the
/// show.
fn warn_core<'i>(
    g: Gil<'i>,
    text: &str,
    cat: Raw,
    filename: &dyn Fn() -> String,
    lineno: u64,
    module: &dyn Fn() -> String,
    registry: Option<&Obj<'i>>,
) -> Result<()> {
    // One visit of the state for the fast paths; the filters this thread
    // sees (see `snapshot`).
    let id = uid(g);
    let scoped = CTX.with(|c| c.borrow().iter().rev().find(|x| x.uid == id).map(|x| x.filters.clone()));
    let (version, vkey, once, filters) =
        with_state(g, |w| (w.version, w.keys[0], w.once, scoped.unwrap_or_else(|| w.filters.clone())))?;
    let mut key = None;
    if let Some(reg) = registry {
        registry::check_version(reg, &Obj::from_raw_borrowed(vkey, g), version)?;
        // Only `'version'` in it: no key can be set, skip making one.
        if reg.len()? > 1 {
            let k = location_key(g, text, cat, lineno)?;
            if registry::already_warned(reg, &k, false)? {
                return Ok(());
            }
            key = Some(k);
        }
    }
    let module_name = std::cell::OnceCell::new();
    let mut found: Option<&Filter> = None;
    for e in filters.iter() {
        match e {
            Entry::Filter(f) => {
                if f.matches(text, cat, lineno, || module_name.get_or_init(module).as_str()) {
                    found = Some(f);
                    break;
                }
            }
            bad => return Err(bad.error().unwrap_or(Error::RuntimeError { message: "bad filter".into() })),
        }
    }
    let action = match found {
        Some(f) => f.parsed.ok_or_else(|| unrecognized(&f.action, &f.repr())),
        None => {
            let d = with_state(g, |w| w.default_action.clone())?;
            Action::parse(&d).ok_or_else(|| unrecognized(&d, "None"))
        }
    };
    drop(filters);
    match action {
        Ok(Action::Error) => {
            return Err(Error::Warning { category: class_name(cat), message: text.to_owned() });
        }
        Ok(Action::Ignore) => return Ok(()),
        Ok(Action::Always) => {}
        _ => {
            if let Some(reg) = registry {
                let k = match key {
                    Some(k) => k,
                    None => location_key(g, text, cat, lineno)?,
                };
                reg.dict_set(&k, &g.bool(true)?)?;
            }
            match action {
                Ok(Action::Once) => {
                    let once = Obj::from_raw_borrowed(once, g);
                    if registry::already_warned(&once, &make_key(g, text, cat, None)?, true)? {
                        return Ok(());
                    }
                }
                Ok(Action::Module) => {
                    if let Some(reg) = registry {
                        if registry::already_warned(reg, &make_key(g, text, cat, Some(0))?, true)? {
                            return Ok(());
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    }
    show(g, WarningMessage { message: text.to_owned(), category: class_name(cat), filename: filename(), lineno })
}

fn unrecognized(action: &str, item: &str) -> Error {
    Error::RuntimeError { message: format!("Unrecognized action ({}) in warnings.filters:\n {item}", py_repr(action)) }
}

/// `showwarning`: into the innermost recording scope of this thread, else
/// to the output sink (stderr by default).
fn show(g: Gil<'_>, msg: WarningMessage) -> Result<()> {
    let id = uid(g);
    let msg = CTX.with(|c| {
        let mut c = c.borrow_mut();
        match c.iter_mut().rev().filter(|x| x.uid == id).find_map(|x| x.record.as_mut()) {
            Some(log) => {
                log.push(msg);
                None
            }
            None => Some(msg),
        }
    });
    let Some(msg) = msg else { return Ok(()) };
    let text = msg.to_string();
    let sink = with_state(g, |w| w.output.clone())?;
    let depth = SHOW_DEPTH.with(|d| d.get());
    if depth >= MAX_SHOW_DEPTH {
        return Err(Error::RecursionError {
            limit: MAX_SHOW_DEPTH as usize,
            context: "showing a warning from inside the warning output",
        });
    }
    SHOW_DEPTH.with(|d| d.set(depth + 1));
    // The sink is user code: no borrow of the state or of the scopes is held.
    let r = match sink {
        Some(f) => run_callback("warning output", || f(&text)),
        None => {
            eprint!("{text}");
            Ok(())
        }
    };
    SHOW_DEPTH.with(|d| d.set(depth));
    r
}

impl<'i> Gil<'i> {
    /// A standard class of the warnings machinery by name: one of
    /// [`WARNING_CATEGORIES`] (`"Warning"`, `"UserWarning"`, …, and the
    /// bases `"Exception"`, `"BaseException"`), one per interpreter: the
    /// built-in exception class of that name ([`exception_class`](Self::exception_class)).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let dep = g.warning_category("DeprecationWarning")?;
    ///     assert!(dep.issubclass(&g.warning_category("Warning")?)?);
    ///     assert!(dep.issubclass(&g.warning_category("Exception")?)?);
    ///     assert!(g.warning_category("NoSuchWarning").is_err());
    ///     assert!(g.warning_category("Exception")?.is(&g.exception_class("Exception")?));
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn warning_category(&self, name: &str) -> Result<Obj<'i>> {
        let g = *self;
        let i = WARNING_CATEGORIES.iter().position(|&n| n == name).ok_or_else(|| Error::AttributeError {
            message: format!("module 'builtins' has no attribute {}", py_repr(name)),
        })?;
        let r = with_state(g, |w| w.cats[i])?;
        Ok(Obj::from_raw_borrowed(r, g))
    }

    /// `warnings.filterwarnings(action, message, category, module, lineno,
    /// append)`: a filter whose `message` (a regular expression matched
    /// case-insensitively at the start; `""` for any) and `module` (matched
    /// case-sensitively at the start; `""` for any) select warnings of
    /// `category` (`None`: `Warning`) and its subclasses, at `lineno` (0:
    /// any). It goes first, replacing an equal filter, or with `append` last
    /// unless an equal one exists. Inside [`catch_warnings`](Self::catch_warnings)
    /// it changes only that scope's filters. Every call bumps the filters'
    /// version, which resets every `__warningregistry__`.
    ///
    /// Errors (CPython's texts): an unknown action is a
    /// [`Error::ValueError`] "invalid action: 'x'"; a category that is not a
    /// `Warning` subclass a [`Error::TypeError`]; a pattern that does not
    /// compile a [`Error::ValueError`] (patterns use the `regex` crate's
    /// syntax, which lacks look-around and backreferences; `\Z` and `$`
    /// mean what they mean in Python).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig, Error};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     g.filterwarnings("error", "^bad", None, "", 0, false)?;
    ///     let e = g.warn("Bad input", None).unwrap_err(); // IGNORECASE
    ///     assert!(matches!(&e, Error::Warning { category, .. } if category == "UserWarning"));
    ///     assert_eq!(e.to_string(), "UserWarning: Bad input");
    ///     let e = g.filterwarnings("x", "", None, "", 0, false).unwrap_err();
    ///     assert_eq!(e.to_string(), "ValueError: invalid action: 'x'");
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn filterwarnings(
        &self,
        action: &str,
        message: &str,
        category: Option<&Obj<'i>>,
        module: &str,
        lineno: u64,
        append: bool,
    ) -> Result<()> {
        let g = *self;
        let parsed = check_action(action)?;
        let category = filter_category(g, category)?;
        let message = if message.is_empty() { Matcher::Any } else { Matcher::Re(Pattern::compile(message, true)?) };
        let module = if module.is_empty() { Matcher::Any } else { Matcher::Re(Pattern::compile(module, false)?) };
        add_filter(g, Filter { action: action.into(), parsed: Some(parsed), message, category, module, lineno }, append)
    }

    /// `warnings.simplefilter(action, category, lineno, append)`: a filter
    /// for any message and module (see [`filterwarnings`](Self::filterwarnings)).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     g.simplefilter("ignore", None, 0, false)?;
    ///     g.warn("nobody sees this", None)?;
    ///     assert_eq!(g.warnings_filters()?[0].action, "ignore");
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn simplefilter(&self, action: &str, category: Option<&Obj<'i>>, lineno: u64, append: bool) -> Result<()> {
        let g = *self;
        let parsed = check_action(action)?;
        let category = filter_category(g, category)?;
        let f = Filter {
            action: action.into(),
            parsed: Some(parsed),
            message: Matcher::Any,
            category,
            module: Matcher::Any,
            lineno,
        };
        add_filter(g, f, append)
    }

    /// One `-W` / `PYTHONWARNINGS` option, `action:message:category:module:lineno`
    /// (`Lib/warnings.py` `_setoption`): fields may be left out or empty;
    /// the action may be a prefix (`"e"` is `error`; empty is `default`);
    /// the message and module are literal texts (the module must be whole:
    /// `re.escape(module) + r"\Z"`); the category is a name of
    /// [`WARNING_CATEGORIES`] or `module.Name` of an importable module (empty
    /// is `Warning`). Then as [`filterwarnings`](Self::filterwarnings).
    ///
    /// CPython raises `warnings._OptionError` (and its startup prints
    /// "Invalid -W option ignored: …"); here it is an [`Error::ValueError`]
    /// with the same texts: "too many fields (max 5): 'a:b:c:d:e:f'",
    /// "invalid action: 'x'", "invalid lineno 'x'", "invalid module name:
    /// 'm'", "unknown warning category: 'X'", "invalid warning category:
    /// 'Exception'".
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     g.warnings_option("e::UserWarning:spam")?;
    ///     let f = &g.warnings_filters()?[0];
    ///     assert_eq!((f.action.as_str(), f.module.as_deref()), ("error", Some("spam\\Z")));
    ///     let e = g.warnings_option("ignore::NoSuchWarning").unwrap_err();
    ///     assert_eq!(e.to_string(), "ValueError: unknown warning category: 'NoSuchWarning'");
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn warnings_option(&self, arg: &str) -> Result<()> {
        let bad = |m: String| Error::ValueError { message: m };
        let mut parts: Vec<&str> = arg.split(':').map(str::trim).collect();
        if parts.len() > 5 {
            return Err(bad(format!("too many fields (max 5): {}", py_repr(arg))));
        }
        parts.resize(5, "");
        let (action, message, category, module, lineno) = (parts[0], parts[1], parts[2], parts[3], parts[4]);
        let action = if action.is_empty() {
            "default"
        } else if action == "all" {
            "always"
        } else {
            ["default", "always", "ignore", "module", "once", "error"]
                .into_iter()
                .find(|a| a.starts_with(action))
                .ok_or_else(|| bad(format!("invalid action: {}", py_repr(action))))?
        };
        let cat = if category.is_empty() {
            self.warning_category("Warning")?
        } else {
            let found = match category.rsplit_once('.') {
                None => self.warning_category(category).ok(),
                Some((m, klass)) => {
                    let m = self.import(m).map_err(|_| bad(format!("invalid module name: {}", py_repr(m))))?;
                    m.getattr(klass)?
                }
            };
            let c = found.ok_or_else(|| bad(format!("unknown warning category: {}", py_repr(category))))?;
            let warning = self.warning_category("Warning")?;
            if type_body(c.raw()).is_none() || !is_subtype(c.raw(), warning.raw()) {
                return Err(bad(format!("invalid warning category: {}", py_repr(category))));
            }
            c
        };
        let lineno = if lineno.is_empty() {
            0
        } else {
            lineno.parse::<u64>().map_err(|_| bad(format!("invalid lineno {}", py_repr(lineno))))?
        };
        let message = if message.is_empty() { String::new() } else { regex::escape(message) };
        let module = if module.is_empty() { String::new() } else { format!("{}\\Z", regex::escape(module)) };
        self.filterwarnings(action, &message, Some(&cat), &module, lineno, false)
    }

    /// `warnings.resetwarnings()`: no filters at all (the default action
    /// then applies to every warning); bumps the version.
    pub fn resetwarnings(&self) -> Result<()> {
        replace_filters(*self, Vec::new())
    }

    /// The filters this thread sees (`warnings.filters`), first match
    /// first: inside [`catch_warnings`](Self::catch_warnings) the scope's,
    /// else the interpreter's. Malformed items of a list set with
    /// [`set_warnings_filters_list`](Self::set_warnings_filters_list) are
    /// left out.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let f = g.warnings_filters()?; // CPython's release-build defaults
    ///     assert_eq!(f.len(), 5);
    ///     assert_eq!((f[0].action.as_str(), f[0].module.as_deref()), ("default", Some("__main__")));
    ///     assert!(f[0].category.is(&g.warning_category("DeprecationWarning")?));
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn warnings_filters(&self) -> Result<Vec<WarningFilter<'i>>> {
        let g = *self;
        let src = |m: &Matcher| match m {
            Matcher::Any => None,
            Matcher::Exact(s) => Some(s.to_string()),
            Matcher::Re(p) => Some(p.source.to_string()),
        };
        Ok(snapshot(g)?
            .iter()
            .filter_map(|e| match e {
                Entry::Filter(f) => Some(WarningFilter {
                    action: f.action.to_string(),
                    message: src(&f.message),
                    category: Obj::from_raw_borrowed(f.category, g),
                    module: src(&f.module),
                    lineno: f.lineno,
                }),
                _ => None,
            })
            .collect())
    }

    /// Sets the filters from a heap list, as assigning `warnings.filters`
    /// in CPython: each item a 5-tuple `(action, message, category, module,
    /// lineno)` where `message` and `module` are `None` (any) or a `str`
    /// that must be **equal** (C's `check_matched`: a plain string is not a
    /// pattern). Actions are not checked here: an unknown one is a
    /// [`Error::RuntimeError`] "Unrecognized action ('x') in
    /// warnings.filters: …" when a warning reaches it; an item that is not a
    /// 5-tuple, or whose action is not a str, is CPython's `ValueError` /
    /// `TypeError` at that point too. A category that is not a class, or a
    /// lineno that is not an int ≥ 0, is refused here
    /// ([`Error::TypeError`]). Bumps the version.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let item = g.tuple(&[g.str("bogus")?, g.none()?, g.warning_category("UserWarning")?, g.none()?, g.int(0)?])?;
    ///     g.set_warnings_filters_list(&g.list(&[item])?)?;
    ///     let e = g.warn("m", None).unwrap_err();
    ///     assert_eq!(
    ///         e.to_string(),
    ///         "RuntimeError: Unrecognized action ('bogus') in warnings.filters:\n ('bogus', None, <class 'UserWarning'>, None, 0)"
    ///     );
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn set_warnings_filters_list(&self, list: &Obj<'i>) -> Result<()> {
        let g = *self;
        if list.kind() != Kind::List {
            return Err(Error::TypeError {
                message: format!("warnings.filters must be a list, not '{}'", list.type_name()),
            });
        }
        let matcher = |o: &Obj<'i>, what: &str| -> Result<Matcher> {
            if o.is_none() {
                Ok(Matcher::Any)
            } else if let Some(s) = o.as_str() {
                Ok(Matcher::Exact(s.into()))
            } else {
                Err(Error::TypeError { message: format!("{what} must be None or a str, not '{}'", o.type_name()) })
            }
        };
        let mut v = Vec::with_capacity(list.len()?);
        for i in 0..list.len()? {
            let item = list.get_item(i)?;
            if item.kind() != Kind::Tuple || item.len()? != 5 {
                v.push(Entry::NotFiveTuple(i));
                continue;
            }
            let action = item.get_item(0)?;
            let Some(action) = action.as_str().map(str::to_owned) else {
                v.push(Entry::ActionNotStr(action.type_name()));
                continue;
            };
            let cat = item.get_item(2)?;
            if type_body(cat.raw()).is_none() {
                return Err(Error::TypeError {
                    message: "issubclass() arg 2 must be a class, a tuple of classes, or a union".into(),
                });
            }
            let lineno = item.get_item(4)?.as_int().and_then(|l| u64::try_from(l).ok()).ok_or_else(|| {
                Error::TypeError { message: format!("warnings.filters item {i}: lineno must be an int >= 0") }
            })?;
            v.push(Entry::Filter(Filter {
                parsed: Action::parse(&action),
                action: action.into(),
                message: matcher(&item.get_item(1)?, "message")?,
                category: cat.raw(),
                module: matcher(&item.get_item(3)?, "module")?,
                lineno,
            }));
        }
        replace_filters(g, v)
    }

    /// The filters' version (`_filters_version`): bumped by every filter
    /// mutation and by entering and leaving
    /// [`catch_warnings`](Self::catch_warnings); a `__warningregistry__`
    /// stamped with another version is cleared when next used.
    pub fn warnings_filters_version(&self) -> Result<u64> {
        with_state(*self, |w| w.version)
    }

    /// The once registry (`_onceregistry`): a dict keyed `(text, category)`
    /// of the warnings the `once` action showed, for the whole interpreter.
    pub fn warnings_onceregistry(&self) -> Result<Obj<'i>> {
        let g = *self;
        Ok(Obj::from_raw_borrowed(with_state(g, |w| w.once)?, g))
    }

    /// The action for a warning no filter matches (`_defaultaction`,
    /// `"default"` at first).
    pub fn warnings_default_action(&self) -> Result<String> {
        with_state(*self, |w| w.default_action.to_string())
    }

    /// Sets the default action. Like assigning `_warnings._defaultaction`,
    /// the text is not checked: an unknown action is CPython's
    /// "Unrecognized action" [`Error::RuntimeError`] when a warning falls
    /// through to it.
    pub fn set_warnings_default_action(&self, action: &str) -> Result<()> {
        with_state(*self, |w| w.default_action = action.into())
    }

    /// Where shown warnings go (CPython's `showwarning`): `None` restores
    /// the default, stderr. The sink gets CPython's `formatwarning` text
    /// without the source line (`"file:lineno: Category: message\n"`). It
    /// runs behind the catch-unwind boundary: a panic comes back from the
    /// `warn` call as [`Error::CallbackPanicked`]. A sink may re-enter the
    /// interpreter and warn again, up to 8 levels deep
    /// ([`Error::RecursionError`] beyond).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// use std::{cell::RefCell, rc::Rc};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let seen = Rc::new(RefCell::new(String::new()));
    ///     let s = seen.clone();
    ///     g.set_warning_output(Some(Rc::new(move |text: &str| s.borrow_mut().push_str(text))))?;
    ///     g.warn_explicit("spam", None, "eggs.py", 12, None, None)?;
    ///     assert_eq!(*seen.borrow(), "eggs.py:12: UserWarning: spam\n");
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn set_warning_output(&self, output: Option<WarningOutput>) -> Result<()> {
        let old = with_state(*self, |w| std::mem::replace(&mut w.output, output))?;
        run_callback("drop of the warning output", move || drop(old))
    }

    /// CPython's `formatwarning(message, category, filename, lineno)`
    /// without the source line: `"file:lineno: Category: message\n"`.
    pub fn formatwarning(&self, message: &str, category: &Obj<'i>, filename: &str, lineno: u64) -> Result<String> {
        if type_body(category.raw()).is_none() {
            return Err(Error::TypeError {
                message: format!("formatwarning needs a category class, not '{}'", category.type_name()),
            });
        }
        Ok(WarningMessage {
            message: message.into(),
            category: class_name(category.raw()),
            filename: filename.into(),
            lineno,
        }
        .to_string())
    }

    /// `warnings.warn(message, category)` with no calling frame (this
    /// runtime has no frames): CPython's fallback context, module `sys`,
    /// filename `<sys>`, line 0, and the registry of that context (one per
    /// interpreter). `category` `None` is `UserWarning`; one that is not a
    /// `Warning` subclass is a [`Error::TypeError`] ("category must be a
    /// Warning subclass, not 'T'"). The `error` action returns
    /// [`Error::Warning`].
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let ((), log) = g.catch_warnings(true, |g| {
    ///         g.simplefilter("always", None, 0, false).unwrap();
    ///         g.warn("careful", None).unwrap();
    ///     })?;
    ///     assert_eq!(log[0].to_string(), "<sys>:0: UserWarning: careful\n");
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn warn(&self, message: &str, category: Option<&Obj<'i>>) -> Result<()> {
        let g = *self;
        let cat = warn_category(g, category)?;
        let reg = Obj::from_raw_borrowed(with_state(g, |w| w.sys_registry)?, g);
        warn_core(g, message, cat, &|| "<sys>".to_owned(), 0, &|| "sys".to_owned(), Some(&reg))
    }

    /// `warnings.warn` as if issued from `module` (a module object) at
    /// `lineno`: the registry is the module's `__warningregistry__` (made in
    /// its globals if missing), the module name its `__name__` (else
    /// `<string>`), the filename its `__file__` (else the module name).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let m = g.new_module("spam")?;
    ///     let ((), log) = g.catch_warnings(true, |g| {
    ///         g.simplefilter("default", None, 0, false).unwrap();
    ///         for _ in 0..3 {
    ///             g.warn_in("once per line", None, &m, 7).unwrap();
    ///         }
    ///     })?;
    ///     assert_eq!(log.len(), 1);
    ///     assert!(m.module_dict()?.dict_get(&g.str("__warningregistry__")?)?.is_some());
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn warn_in(&self, message: &str, category: Option<&Obj<'i>>, module: &Obj<'i>, lineno: u64) -> Result<()> {
        let g = *self;
        let (warning, user, keys) = with_state(g, |w| (w.cats[WARNING], w.cats[USER], w.keys))?;
        let cat = check_warn_category(warning, user, category)?;
        let globals = module.module_dict()?;
        let rkey = Obj::from_raw_borrowed(keys[1], g);
        let reg = match globals.dict_get(&rkey)? {
            Some(r) if r.kind() == Kind::Dict => r,
            _ => {
                let r = g.dict()?;
                globals.dict_set(&rkey, &r)?;
                r
            }
        };
        // Read only when needed: the name by a filter with a module
        // pattern, the file when the warning is shown.
        let read = |key: Raw| match globals.dict_get(&Obj::from_raw_borrowed(key, g)) {
            Ok(Some(v)) => v.as_str().map(str::to_owned),
            _ => None,
        };
        let name = || read(keys[2]).unwrap_or_else(|| "<string>".to_owned());
        let file = || read(keys[3]).unwrap_or_else(name);
        warn_core(g, message, cat, &file, lineno, &name, Some(&reg))
    }

    /// `warnings.warn_explicit(message, category, filename, lineno, module,
    /// registry)`: `module` `None` is derived from `filename` as CPython
    /// does (`".py"` stripped; `"<unknown>"` for an empty name); `registry`
    /// is a dict or `None` (then nothing is remembered per location: only
    /// `once` deduplicates, through the once registry).
    pub fn warn_explicit(
        &self,
        message: &str,
        category: Option<&Obj<'i>>,
        filename: &str,
        lineno: u64,
        module: Option<&str>,
        registry: Option<&Obj<'i>>,
    ) -> Result<()> {
        let g = *self;
        let cat = warn_category(g, category)?;
        let registry = registry.filter(|r| !r.is_none());
        if let Some(r) = registry {
            if r.kind() != Kind::Dict {
                return Err(Error::TypeError {
                    message: format!("'registry' must be a dict or None, not '{}'", r.type_name()),
                });
            }
        }
        let derived;
        let module = match module {
            Some(m) => m,
            None => {
                derived = if filename.is_empty() {
                    "<unknown>".to_owned()
                } else {
                    filename.strip_suffix(".py").unwrap_or(filename).to_owned()
                };
                &derived
            }
        };
        warn_core(g, message, cat, &|| filename.to_owned(), lineno, &|| module.to_owned(), registry)
    }

    /// A `catch_warnings` scope for this thread only: inside `f` the
    /// filters start as a copy of what this thread saw, and
    /// [`filterwarnings`](Self::filterwarnings),
    /// [`simplefilter`](Self::simplefilter) and
    /// [`resetwarnings`](Self::resetwarnings) change the copy; with
    /// `record`, shown warnings are collected and returned instead of going
    /// to the output. Other threads of the interpreter keep seeing their own
    /// filters all along (CPython's `catch_warnings` swaps the shared list,
    /// so concurrent threads see each other's). Entering and leaving bump
    /// the version, as CPython's does. Scopes nest; leaving by a panic
    /// restores too. The once registry and the module registries are
    /// shared, as in CPython.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let before = g.warnings_filters()?.len();
    ///     let (n, log) = g.catch_warnings(true, |g| {
    ///         g.simplefilter("always", None, 0, false).unwrap();
    ///         g.warn("a", None).unwrap();
    ///         g.warn("a", None).unwrap();
    ///         g.warnings_filters().unwrap().len()
    ///     })?;
    ///     assert_eq!((n, log.len()), (before + 1, 2));
    ///     assert_eq!(g.warnings_filters()?.len(), before);
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn catch_warnings<R>(&self, record: bool, f: impl FnOnce(Gil<'i>) -> R) -> Result<(R, Vec<WarningMessage>)> {
        let g = *self;
        let filters = snapshot(g)?;
        with_state(g, |w| w.version += 1)?;
        let depth = CTX.with(|c| {
            let mut c = c.borrow_mut();
            c.push(Ctx { uid: uid(g), filters, record: record.then(Vec::new) });
            c.len()
        });
        struct Scope<'i> {
            g: Gil<'i>,
            depth: usize,
        }
        impl Scope<'_> {
            fn leave(&self) -> Option<Ctx> {
                let ctx = CTX.with(|c| {
                    let mut c = c.borrow_mut();
                    if c.len() < self.depth {
                        return None;
                    }
                    // Inner scopes left without their own exit (cannot
                    // happen with closures, but a leak would be silent).
                    c.truncate(self.depth);
                    c.pop()
                });
                if !self.g.interpreter().rec.gc.is_closing() {
                    let _ = with_state(self.g, |w| w.version += 1);
                }
                ctx
            }
        }
        impl Drop for Scope<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    drop(self.leave());
                }
            }
        }
        let scope = Scope { g, depth };
        let r = f(g);
        let ctx = scope.leave();
        std::mem::forget(scope);
        Ok((r, ctx.and_then(|c| c.record).unwrap_or_default()))
    }
}
