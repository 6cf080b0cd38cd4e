//! The built-in exception hierarchy of an interpreter (`docs/exceptions.md`):
//! CPython 3.13's classes (`Objects/exceptions.c`, the `builtins` names),
//! with CPython's names and bases, as heap type objects of the object model.
//!
//! Each interpreter has its own classes, made on first use (a class and,
//! first, its bases; nothing is made when an interpreter is created) and
//! kept in the interpreter's type cache until it closes. They are classes
//! only: there is no raise/except machinery, and the Rust [`Error`] stays the
//! error channel ([`Error::exception_name`] names an error's class). The
//! warnings categories and the codecs' Unicode exception objects use them.

use crate::error::{Error, Result};
use crate::gc::types::TypeKey;
use crate::{Gil, Obj};

/// Every class with its bases, bases first (CPython 3.13).
const TABLE: &[(&str, &[&str])] = &[
    ("BaseException", &[]),
    ("BaseExceptionGroup", &["BaseException"]),
    ("GeneratorExit", &["BaseException"]),
    ("KeyboardInterrupt", &["BaseException"]),
    ("SystemExit", &["BaseException"]),
    ("Exception", &["BaseException"]),
    ("ArithmeticError", &["Exception"]),
    ("FloatingPointError", &["ArithmeticError"]),
    ("OverflowError", &["ArithmeticError"]),
    ("ZeroDivisionError", &["ArithmeticError"]),
    ("AssertionError", &["Exception"]),
    ("AttributeError", &["Exception"]),
    ("BufferError", &["Exception"]),
    ("EOFError", &["Exception"]),
    ("ExceptionGroup", &["BaseExceptionGroup", "Exception"]),
    ("ImportError", &["Exception"]),
    ("ModuleNotFoundError", &["ImportError"]),
    ("LookupError", &["Exception"]),
    ("IndexError", &["LookupError"]),
    ("KeyError", &["LookupError"]),
    ("MemoryError", &["Exception"]),
    ("NameError", &["Exception"]),
    ("UnboundLocalError", &["NameError"]),
    ("OSError", &["Exception"]),
    ("BlockingIOError", &["OSError"]),
    ("ChildProcessError", &["OSError"]),
    ("ConnectionError", &["OSError"]),
    ("BrokenPipeError", &["ConnectionError"]),
    ("ConnectionAbortedError", &["ConnectionError"]),
    ("ConnectionRefusedError", &["ConnectionError"]),
    ("ConnectionResetError", &["ConnectionError"]),
    ("FileExistsError", &["OSError"]),
    ("FileNotFoundError", &["OSError"]),
    ("InterruptedError", &["OSError"]),
    ("IsADirectoryError", &["OSError"]),
    ("NotADirectoryError", &["OSError"]),
    ("PermissionError", &["OSError"]),
    ("ProcessLookupError", &["OSError"]),
    ("TimeoutError", &["OSError"]),
    ("ReferenceError", &["Exception"]),
    ("RuntimeError", &["Exception"]),
    ("NotImplementedError", &["RuntimeError"]),
    ("PythonFinalizationError", &["RuntimeError"]),
    ("RecursionError", &["RuntimeError"]),
    ("StopAsyncIteration", &["Exception"]),
    ("StopIteration", &["Exception"]),
    ("SyntaxError", &["Exception"]),
    ("IndentationError", &["SyntaxError"]),
    ("TabError", &["IndentationError"]),
    ("SystemError", &["Exception"]),
    ("TypeError", &["Exception"]),
    ("ValueError", &["Exception"]),
    ("UnicodeError", &["ValueError"]),
    ("UnicodeDecodeError", &["UnicodeError"]),
    ("UnicodeEncodeError", &["UnicodeError"]),
    ("UnicodeTranslateError", &["UnicodeError"]),
    ("Warning", &["Exception"]),
    ("UserWarning", &["Warning"]),
    ("DeprecationWarning", &["Warning"]),
    ("PendingDeprecationWarning", &["Warning"]),
    ("SyntaxWarning", &["Warning"]),
    ("RuntimeWarning", &["Warning"]),
    ("FutureWarning", &["Warning"]),
    ("ImportWarning", &["Warning"]),
    ("UnicodeWarning", &["Warning"]),
    ("BytesWarning", &["Warning"]),
    ("ResourceWarning", &["Warning"]),
    ("EncodingWarning", &["Warning"]),
];

/// The aliases `builtins` has for `OSError` (the same class).
const ALIASES: &[(&str, &str)] = &[("EnvironmentError", "OSError"), ("IOError", "OSError")];

/// The names of the built-in exception classes of CPython 3.13 (its
/// `builtins` module: every public class of `Objects/exceptions.c`, the
/// warning categories included), each class after its bases: what
/// [`Gil::exception_class`] accepts (and the aliases `EnvironmentError` and
/// `IOError` of `OSError`). Not included: the private
/// `_IncompleteInputError`.
pub const EXCEPTION_CLASSES: [&str; TABLE.len()] = {
    let mut out = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        out[i] = TABLE[i].0;
        i += 1;
    }
    out
};

fn find(name: &str) -> Option<&'static (&'static str, &'static [&'static str])> {
    let name = ALIASES.iter().find(|(a, _)| *a == name).map_or(name, |(_, to)| to);
    TABLE.iter().find(|(n, _)| *n == name)
}

impl<'i> Gil<'i> {
    /// The interpreter's built-in exception class `name` (one of
    /// [`EXCEPTION_CLASSES`], CPython 3.13's names and bases; `IOError` and
    /// `EnvironmentError` are `OSError`). One class per name and
    /// interpreter, made on first use with its bases, kept until the
    /// interpreter closes; its MRO is CPython's (`ExceptionGroup` derives
    /// from `BaseExceptionGroup` and `Exception`). These are classes of the
    /// object model ([`new_class`](Self::new_class)'s kind: calling one makes
    /// an instance, a subclass is `g.new_class("MyError", &[value_error])`);
    /// nothing raises them, errors stay Rust [`Error`]s.
    ///
    /// Errors: an unknown name is an [`Error::AttributeError`] with
    /// CPython's text ("module 'builtins' has no attribute 'X'").
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let decode = g.exception_class("UnicodeDecodeError")?;
    ///     let names: Vec<String> = decode.mro()?.iter().map(|c| c.class_name()).collect::<Result<_, _>>()?;
    ///     assert_eq!(names, ["UnicodeDecodeError", "UnicodeError", "ValueError", "Exception", "BaseException", "object"]);
    ///     assert!(decode.is(&g.exception_class("UnicodeDecodeError")?)); // one per interpreter
    ///     assert!(g.exception_class("IOError")?.is(&g.exception_class("OSError")?));
    ///     let e = g.exception_class("NoSuchError").unwrap_err();
    ///     assert_eq!(e.to_string(), "AttributeError: module 'builtins' has no attribute 'NoSuchError'");
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn exception_class(&self, name: &str) -> Result<Obj<'i>> {
        let &(name, bases) = find(name).ok_or_else(|| Error::AttributeError {
            message: format!("module 'builtins' has no attribute {}", crate::warnings::filters::py_repr(name)),
        })?;
        self.cached_type(TypeKey::Exception(name), || {
            let bases = bases.iter().map(|b| self.exception_class(b)).collect::<Result<Vec<_>>>()?;
            self.new_class(name, &bases)
        })
    }

    /// The interpreter's exception class of `error` (see
    /// [`Error::exception_name`]), or `None` for an error with no CPython
    /// built-in class (interpreter management, a caught panic, an exception
    /// raised with a class name that is not a built-in one).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let err = g.int(1)?.setattr("x", &g.none()?).unwrap_err();
    ///     let cls = g.exception_class_of(&err)?.expect("a built-in class");
    ///     assert!(cls.is(&g.exception_class("AttributeError")?));
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn exception_class_of(&self, error: &Error) -> Result<Option<Obj<'i>>> {
        error.exception_name().map(|n| self.exception_class(n)).transpose()
    }
}

/// The static name of a built-in exception class named `name`, if it is one.
pub(crate) fn builtin_name(name: &str) -> Option<&'static str> {
    find(name).map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_come_first_and_names_are_unique() {
        for (i, (name, bases)) in TABLE.iter().enumerate() {
            assert!(!TABLE[..i].iter().any(|(n, _)| n == name), "{name} twice");
            for b in *bases {
                assert!(TABLE[..i].iter().any(|(n, _)| n == b), "{name}'s base {b} comes later");
            }
        }
        for w in crate::WARNING_CATEGORIES {
            assert!(builtin_name(w).is_some(), "{w}");
        }
    }
}
