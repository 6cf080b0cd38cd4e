//! Warning filters: CPython's 5-tuples `(action, message, category, module,
//! lineno)` (`Lib/warnings.py` `filterwarnings`, `Python/_warnings.c`
//! `filter_search`), compiled once and matched without allocating.

use regex::Regex;

use crate::error::{Error, Result};
use crate::gc::object::Raw;
use crate::gc::types::{is_subtype, type_body};

/// A filter's action, parsed once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Action {
    Default,
    Once,
    Module,
    /// `always`, and its alias `all` (CPython 3.14).
    Always,
    Ignore,
    Error,
}

impl Action {
    /// The actions `filterwarnings` accepts.
    pub(crate) fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "default" => Action::Default,
            "once" => Action::Once,
            "module" => Action::Module,
            "always" | "all" => Action::Always,
            "ignore" => Action::Ignore,
            "error" => Action::Error,
            _ => return None,
        })
    }
}

/// A compiled message or module pattern, matched as Python's `re.match`:
/// anchored at the start, not at the end.
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    pub(crate) source: Box<str>,
    pub(crate) ignorecase: bool,
    re: Regex,
}

impl PartialEq for Pattern {
    /// As compiled `re` patterns compare: by source and flags.
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source && self.ignorecase == other.ignorecase
    }
}

impl Pattern {
    /// Compiles `source` with Python's `re` semantics where the `regex`
    /// crate differs in spelling (see [`translate`]).
    pub(crate) fn compile(source: &str, ignorecase: bool) -> Result<Pattern> {
        let full = format!("{}\\A(?:{})", if ignorecase { "(?i)" } else { "" }, translate(source));
        let re = Regex::new(&full).map_err(|e| Error::ValueError {
            message: format!(
                "bad warnings filter pattern {}: {} (the regex crate's syntax: no look-around or backreferences)",
                py_repr(source),
                e.to_string().lines().last().unwrap_or("invalid pattern").trim()
            ),
        })?;
        Ok(Pattern { source: source.into(), ignorecase, re })
    }

    #[inline]
    pub(crate) fn matches(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

/// Python `re` spellings the `regex` crate reads differently: `\Z` (end of
/// string) is `\z` there, and `$` outside a class matches at the end or
/// before a final newline (Python) where the crate's matches only at the
/// end. Everything else is passed through: constructs the crate lacks
/// (look-around, backreferences) are refused when compiling.
pub(crate) fn translate(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 8);
    let mut chars = src.chars().peekable();
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('Z') if !in_class => out.push_str("\\z"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().unwrap_or('^'));
                }
                // A `]` first in a class is literal in Python.
                if chars.peek() == Some(&']') {
                    chars.next();
                    out.push_str("\\]");
                }
                continue;
            }
            '[' if in_class => out.push_str("\\["),
            ']' if in_class && !class_start => {
                in_class = false;
                out.push(']');
            }
            '$' if !in_class => out.push_str("(?:\\n?\\z)"),
            c => out.push(c),
        }
        class_start = false;
    }
    out
}

/// How a filter's message or module field matches (C's `check_matched`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Matcher {
    /// `None`: everything.
    Any,
    /// A plain `str` put in the list directly: equality.
    Exact(Box<str>),
    /// A compiled pattern: `pattern.match(text)`.
    Re(Pattern),
}

impl Matcher {
    #[inline]
    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Exact(e) => &**e == s,
            Matcher::Re(p) => p.matches(s),
        }
    }

    fn repr(&self) -> String {
        match self {
            Matcher::Any => "None".into(),
            Matcher::Exact(e) => py_repr(e),
            Matcher::Re(p) if p.ignorecase => format!("re.compile({}, re.IGNORECASE)", py_repr(&p.source)),
            Matcher::Re(p) => format!("re.compile({})", py_repr(&p.source)),
        }
    }
}

/// One filter. The category is a type object kept alive by the state's
/// pins (`WarnState::pin`), so a filter is plain data.
#[derive(Clone, Debug)]
pub(crate) struct Filter {
    pub(crate) action: Box<str>,
    pub(crate) parsed: Option<Action>,
    pub(crate) message: Matcher,
    pub(crate) category: Raw,
    pub(crate) module: Matcher,
    pub(crate) lineno: u64,
}

impl PartialEq for Filter {
    fn eq(&self, o: &Filter) -> bool {
        self.action == o.action
            && self.message == o.message
            && self.category == o.category
            && self.module == o.module
            && self.lineno == o.lineno
    }
}

impl Filter {
    /// Whether the filter applies (CPython's order of checks).
    #[inline]
    /// The module name is asked for only when the module field is a
    /// pattern (the checks have no side effects, so their order is free).
    pub(crate) fn matches<'m>(&self, text: &str, category: Raw, lineno: u64, module: impl FnOnce() -> &'m str) -> bool {
        self.message.matches(text)
            && is_subtype(category, self.category)
            && (self.lineno == 0 || self.lineno == lineno)
            && (matches!(self.module, Matcher::Any) || self.module.matches(module()))
    }

    /// The tuple's repr, for CPython's "Unrecognized action" text.
    pub(crate) fn repr(&self) -> String {
        format!(
            "({}, {}, {}, {}, {})",
            py_repr(&self.action),
            self.message.repr(),
            class_repr(self.category),
            self.module.repr(),
            self.lineno
        )
    }
}

/// An entry of the filter list: a filter, or what a malformed item of a list
/// set with `set_warnings_filters_list` raises when the search reaches it
/// (CPython checks the items while searching, not when the list is set).
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    Filter(Filter),
    /// ValueError "_warnings.filters item N isn't a 5-tuple".
    NotFiveTuple(usize),
    /// TypeError "action must be a string, not 'T'".
    ActionNotStr(String),
}

impl Entry {
    pub(crate) fn error(&self) -> Option<Error> {
        match self {
            Entry::Filter(_) => None,
            Entry::NotFiveTuple(i) => {
                Some(Error::ValueError { message: format!("_warnings.filters item {i} isn't a 5-tuple") })
            }
            Entry::ActionNotStr(t) => Some(Error::TypeError { message: format!("action must be a string, not '{t}'") }),
        }
    }
}

/// `<class 'Name'>`.
pub(crate) fn class_repr(r: Raw) -> String {
    format!("<class '{}'>", class_name(r))
}

/// A type object's `__name__`.
pub(crate) fn class_name(r: Raw) -> String {
    type_body(r).map_or_else(|| "?".to_owned(), |t| t.name.to_string())
}

/// Python's `repr` of a str (quotes and backslash escapes).
pub(crate) fn py_repr(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_spellings() {
        let p = Pattern::compile(r"abc\Z", false).unwrap();
        assert!(p.matches("abc") && !p.matches("abcd"));
        let p = Pattern::compile("ab$", false).unwrap();
        assert!(p.matches("ab") && p.matches("ab\n") && !p.matches("abc"));
        let p = Pattern::compile("[$]x", false).unwrap();
        assert!(p.matches("$x"));
        let p = Pattern::compile("[]a]+z", false).unwrap();
        assert!(p.matches("]a]z"));
        let p = Pattern::compile("hel", true).unwrap();
        assert!(p.matches("HELLO") && !p.matches("xhello"));
        assert!(Pattern::compile("(", false).is_err());
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a\\b"), "'a\\\\b'");
    }
}
