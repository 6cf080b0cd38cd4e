//! The eight built-in error handlers (CPython's `PyCodec_*Errors` in
//! `Python/codecs.c`), the Unicode exception objects they are given, and the
//! exception texts (`Objects/exceptions.c`).

use super::{push_cp, str_data};
use crate::error::{Error, Result};
use crate::gc::types::type_body;
use crate::{Gil, Kind, Obj};

/// The names of the built-in handlers (CPython's
/// `codecs_builtin_error_handlers`).
pub(crate) const BUILTIN_HANDLERS: &[&str] = &[
    "strict",
    "ignore",
    "replace",
    "xmlcharrefreplace",
    "backslashreplace",
    "namereplace",
    "surrogatepass",
    "surrogateescape",
];

/// Which Unicode exception an exception object is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ExcKind {
    Encode,
    Decode,
    Translate,
}

impl ExcKind {
    fn class(self) -> &'static str {
        match self {
            ExcKind::Encode => "UnicodeEncodeError",
            ExcKind::Decode => "UnicodeDecodeError",
            ExcKind::Translate => "UnicodeTranslateError",
        }
    }
}

/// `'\xe9'`, `'\u3042'` or `'\U0001f600'`: how CPython's exception texts
/// show one character.
fn char_repr(cp: u32) -> String {
    if cp <= 0xff {
        format!("\\x{cp:02x}")
    } else if cp <= 0xffff {
        format!("\\u{cp:04x}")
    } else {
        format!("\\U{cp:08x}")
    }
}

/// A `UnicodeEncodeError` with CPython's text; `ch` is the character at
/// `start` when the range is one character.
pub(crate) fn encode_error(encoding: &str, ch: Option<u32>, start: usize, end: usize, reason: &str) -> Error {
    let message = match ch {
        Some(c) if end == start + 1 => {
            format!("'{encoding}' codec can't encode character '{}' in position {start}: {reason}", char_repr(c))
        }
        _ => {
            format!("'{encoding}' codec can't encode characters in position {start}-{}: {reason}", end.wrapping_sub(1))
        }
    };
    Error::UnicodeEncodeError { encoding: encoding.into(), start, end, reason: reason.into(), message }
}

/// A `UnicodeDecodeError` with CPython's text; `byte` is the byte at
/// `start` when the range is one byte.
pub(crate) fn decode_error(encoding: &str, byte: Option<u8>, start: usize, end: usize, reason: &str) -> Error {
    let message = match byte {
        Some(b) if end == start + 1 => {
            format!("'{encoding}' codec can't decode byte 0x{b:02x} in position {start}: {reason}")
        }
        _ => format!("'{encoding}' codec can't decode bytes in position {start}-{}: {reason}", end.wrapping_sub(1)),
    };
    Error::UnicodeDecodeError { encoding: encoding.into(), start, end, reason: reason.into(), message }
}

fn translate_error(ch: Option<u32>, start: usize, end: usize, reason: &str) -> Error {
    let message = match ch {
        Some(c) if end == start + 1 => {
            format!("can't translate character '{}' in position {start}: {reason}", char_repr(c))
        }
        _ => format!("can't translate characters in position {start}-{}: {reason}", end.wrapping_sub(1)),
    };
    Error::UnicodeTranslateError { start, end, reason: reason.into(), message }
}

// ----- exception objects -----------------------------------------------------------------

impl<'i> Gil<'i> {
    fn unicode_error(
        &self,
        kind: ExcKind,
        encoding: Option<&str>,
        object: &Obj<'i>,
        start: usize,
        end: usize,
        reason: &str,
    ) -> Result<Obj<'i>> {
        let want = if kind == ExcKind::Decode { Kind::Bytes } else { Kind::Str };
        if object.kind() != want {
            return Err(object.type_error(&format!("argument 'object' must be {}", want.name())));
        }
        let exc = self.instance_of(&self.exception_class(kind.class())?)?;
        if let Some(e) = encoding {
            exc.setattr("encoding", &self.str(e)?)?;
        }
        exc.setattr("object", object)?;
        exc.setattr("start", &self.int(start as i64)?)?;
        exc.setattr("end", &self.int(end as i64)?)?;
        exc.setattr("reason", &self.str(reason)?)?;
        Ok(exc)
    }

    /// A `UnicodeEncodeError` exception object (an instance of the
    /// interpreter's built-in exception class of that name
    /// ([`exception_class`](Self::exception_class)), with CPython's attributes
    /// `encoding`, `object` (a str), `start`, `end` (code point indexes) and
    /// `reason`), as error handlers receive it.
    pub fn unicode_encode_error(
        &self,
        encoding: &str,
        object: &Obj<'i>,
        start: usize,
        end: usize,
        reason: &str,
    ) -> Result<Obj<'i>> {
        self.unicode_error(ExcKind::Encode, Some(encoding), object, start, end, reason)
    }

    /// A `UnicodeDecodeError` exception object (`object` is bytes; `start`
    /// and `end` are byte offsets), as error handlers receive it.
    pub fn unicode_decode_error(
        &self,
        encoding: &str,
        object: &Obj<'i>,
        start: usize,
        end: usize,
        reason: &str,
    ) -> Result<Obj<'i>> {
        self.unicode_error(ExcKind::Decode, Some(encoding), object, start, end, reason)
    }

    /// A `UnicodeTranslateError` exception object (`object` is a str; no
    /// `encoding`), as error handlers receive it.
    pub fn unicode_translate_error(&self, object: &Obj<'i>, start: usize, end: usize, reason: &str) -> Result<Obj<'i>> {
        self.unicode_error(ExcKind::Translate, None, object, start, end, reason)
    }
}

/// The attributes of a Unicode exception object, `start` and `end` clamped
/// as CPython's `PyUnicode*Error_GetStart` / `GetEnd` do.
pub(crate) struct Exc<'i> {
    pub(crate) kind: ExcKind,
    pub(crate) encoding: String,
    pub(crate) object: Obj<'i>,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) reason: String,
}

/// The kind of a Unicode exception object, if it is one: an instance of the
/// interpreter's `UnicodeEncodeError`, `UnicodeDecodeError` or
/// `UnicodeTranslateError` or of a subclass (CPython's `PyObject_TypeCheck`);
/// a class of the object model that only has such a name is not one.
pub(crate) fn exc_kind(o: &Obj<'_>) -> Result<Option<ExcKind>> {
    if o.kind() != Kind::Instance {
        return Ok(None);
    }
    let g = o.gil();
    let cls = o.get_type()?;
    let Some(t) = type_body(cls.raw()) else { return Ok(None) };
    // Along the MRO, the first class named like one of the three: usually
    // the class itself, so one cache look-up.
    for &c in std::iter::once(&cls.raw()).chain(t.mro.iter()) {
        let kind = match type_body(c).map(|b| &*b.name) {
            Some("UnicodeEncodeError") => ExcKind::Encode,
            Some("UnicodeDecodeError") => ExcKind::Decode,
            Some("UnicodeTranslateError") => ExcKind::Translate,
            _ => continue,
        };
        if g.exception_class(kind.class())?.raw() == c {
            return Ok(Some(kind));
        }
    }
    Ok(None)
}

fn attr<'i>(o: &Obj<'i>, name: &str) -> Result<Obj<'i>> {
    o.getattr(name)?.ok_or_else(|| Error::AttributeError { message: format!("{name} attribute not set") })
}

fn int_attr(o: &Obj<'_>, name: &str) -> Result<i64> {
    attr(o, name)?.as_int().ok_or_else(|| Error::TypeError { message: format!("{name} attribute must be int") })
}

fn str_attr(o: &Obj<'_>, name: &str) -> Result<String> {
    let v = attr(o, name)?;
    match v.str_lossy() {
        Some(s) => Ok(s.into_owned()),
        None => Err(Error::TypeError { message: format!("{name} attribute must be unicode") }),
    }
}

/// Reads a Unicode exception object (`None`: it is not one).
pub(crate) fn read_exc<'i>(o: &Obj<'i>) -> Result<Option<Exc<'i>>> {
    let Some(kind) = exc_kind(o)? else { return Ok(None) };
    let object = attr(o, "object")?;
    let size = match kind {
        ExcKind::Decode => match object.as_bytes() {
            Some(b) => b.len(),
            None => return Err(Error::TypeError { message: "object attribute must be bytes".into() }),
        },
        _ => match str_data(&object) {
            Some(_) => object.len()?,
            None => return Err(Error::TypeError { message: "object attribute must be unicode".into() }),
        },
    };
    let encoding = if kind == ExcKind::Translate { String::new() } else { str_attr(o, "encoding")? };
    let start = int_attr(o, "start")?.max(0) as usize;
    let start = if size == 0 { 0 } else { start.min(size - 1) };
    let end = (int_attr(o, "end")?.max(1) as usize).min(size);
    let reason = str_attr(o, "reason")?;
    Ok(Some(Exc { kind, encoding, object, start, end, reason }))
}

impl Exc<'_> {
    /// The error this exception object stands for (what `strict` raises).
    pub(crate) fn to_error(&self) -> Error {
        match self.kind {
            ExcKind::Decode => {
                let b = self.object.as_bytes().and_then(|b| b.get(self.start).copied());
                decode_error(&self.encoding, b, self.start, self.end, &self.reason)
            }
            ExcKind::Encode | ExcKind::Translate => {
                let ch = self.object.str_code_points().and_then(|c| c.get(self.start).copied());
                if self.kind == ExcKind::Encode {
                    encode_error(&self.encoding, ch, self.start, self.end, &self.reason)
                } else {
                    translate_error(ch, self.start, self.end, &self.reason)
                }
            }
        }
    }

    /// The code points `start..end` of the str object.
    fn chars(&self) -> Vec<u32> {
        let cps = self.object.str_code_points().unwrap_or_default();
        cps.get(self.start..self.end.max(self.start)).map(<[u32]>::to_vec).unwrap_or_default()
    }

    /// The bytes `start..end` of the bytes object.
    fn bytes(&self) -> Vec<u8> {
        let b = self.object.as_bytes().unwrap_or_default();
        b.get(self.start..self.end.max(self.start)).map(<[u8]>::to_vec).unwrap_or_default()
    }
}

// ----- replacements ----------------------------------------------------------------------

/// `\xhh`, `\uhhhh` or `\Uhhhhhhhh` (backslashreplace on encode).
pub(crate) fn push_backslash(out: &mut Vec<u8>, cp: u32) {
    use std::io::Write;
    let _ = if cp <= 0xff {
        write!(out, "\\x{cp:02x}")
    } else if cp <= 0xffff {
        write!(out, "\\u{cp:04x}")
    } else {
        write!(out, "\\U{cp:08x}")
    };
}

/// `&#DDD;` (xmlcharrefreplace).
pub(crate) fn push_xmlcharref(out: &mut Vec<u8>, cp: u32) {
    use std::io::Write;
    let _ = write!(out, "&#{cp};");
}

/// `\N{NAME}` where this build knows the name, else the backslash escape
/// (namereplace). Names are computed for the ranges whose names are
/// algorithmic in the Unicode standard (CJK unified ideographs, Hangul
/// syllables); the name table itself is not included (`docs/codecs.md`).
pub(crate) fn push_namereplace(out: &mut Vec<u8>, cp: u32) {
    match unicode_name(cp) {
        Some(name) => {
            out.extend_from_slice(b"\\N{");
            out.extend_from_slice(name.as_bytes());
            out.push(b'}');
        }
        None => push_backslash(out, cp),
    }
}

const CJK_RANGES: &[(u32, u32)] = &[
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B739),
    (0x2B740, 0x2B81D),
    (0x2B820, 0x2CEA1),
    (0x2CEB0, 0x2EBE0),
    (0x30000, 0x3134A),
    (0x31350, 0x323AF),
];
const JAMO_L: [&str; 19] =
    ["G", "GG", "N", "D", "DD", "R", "M", "B", "BB", "S", "SS", "", "J", "JJ", "C", "K", "T", "P", "H"];
const JAMO_V: [&str; 21] = [
    "A", "AE", "YA", "YAE", "EO", "E", "YEO", "YE", "O", "WA", "WAE", "OE", "YO", "U", "WEO", "WE", "WI", "YU", "EU",
    "YI", "I",
];
const JAMO_T: [&str; 28] = [
    "", "G", "GG", "GS", "N", "NJ", "NH", "D", "L", "LG", "LM", "LB", "LS", "LT", "LP", "LH", "M", "B", "BS", "S",
    "SS", "NG", "J", "C", "K", "T", "P", "H",
];

/// The Unicode name of `cp`, for the algorithmically named ranges.
pub(crate) fn unicode_name(cp: u32) -> Option<String> {
    if CJK_RANGES.iter().any(|&(a, b)| (a..=b).contains(&cp)) {
        return Some(format!("CJK UNIFIED IDEOGRAPH-{cp:X}"));
    }
    if (0xAC00..=0xD7A3).contains(&cp) {
        let s = cp - 0xAC00;
        let (l, v, t) = (s / (21 * 28), (s % (21 * 28)) / 28, s % 28);
        return Some(format!("HANGUL SYLLABLE {}{}{}", JAMO_L[l as usize], JAMO_V[v as usize], JAMO_T[t as usize]));
    }
    None
}

/// Whether `encoding` (an exception's) names UTF-8, for surrogatepass.
pub(crate) fn is_utf8_name(encoding: &str) -> bool {
    matches!(super::normalize_encoding(encoding).as_str(), "utf_8" | "utf8" | "u8" | "utf" | "cp65001")
}

/// The generalized UTF-8 surrogate at the start of `b`, if any.
pub(crate) fn utf8_surrogate(b: &[u8]) -> Option<u32> {
    match b {
        [0xED, b1 @ 0xA0..=0xBF, b2 @ 0x80..=0xBF, ..] => {
            Some(0xD000 | ((*b1 as u32 & 0x3F) << 6) | (*b2 as u32 & 0x3F))
        }
        _ => None,
    }
}

// ----- the built-in handler functions ---------------------------------------------------

/// A native function object for built-in handler `name`.
pub(crate) fn make_builtin<'i>(g: Gil<'i>, name: &'static str) -> Result<Obj<'i>> {
    let fname = match name {
        "strict" => "strict_errors",
        "ignore" => "ignore_errors",
        "replace" => "replace_errors",
        "xmlcharrefreplace" => "xmlcharrefreplace_errors",
        "backslashreplace" => "backslashreplace_errors",
        "namereplace" => "namereplace_errors",
        "surrogatepass" => "surrogatepass",
        _ => "surrogateescape",
    };
    g.function(fname, &[], move |g, _, args| match args {
        [exc] => builtin_handler(g, name, exc),
        _ => Err(Error::TypeError { message: format!("{fname}() takes exactly one argument ({} given)", args.len()) }),
    })
}

fn wrong_type(exc: &Obj<'_>) -> Error {
    Error::TypeError { message: format!("don't know how to handle {} in error callback", exc.type_name()) }
}

fn result_str<'i>(g: Gil<'i>, text: &[u8], surrogates: bool, end: usize) -> Result<Obj<'i>> {
    let s = super::new_str_data(g, text, surrogates)?;
    g.tuple(&[s, g.int(end as i64)?])
}

/// What built-in handler `name` does with exception object `exc`.
fn builtin_handler<'i>(g: Gil<'i>, name: &str, exc: &Obj<'i>) -> Result<Obj<'i>> {
    let Some(e) = read_exc(exc)? else {
        if name == "strict" {
            return Err(Error::TypeError { message: "codec must pass exception instance".into() });
        }
        return Err(wrong_type(exc));
    };
    let mut out = Vec::new();
    match (name, e.kind) {
        ("strict", _) => Err(e.to_error()),
        ("ignore", _) => result_str(g, b"", false, e.end),
        ("replace", ExcKind::Encode) => result_str(g, &vec![b'?'; e.end.saturating_sub(e.start)], false, e.end),
        ("replace", ExcKind::Decode) => result_str(g, "\u{fffd}".as_bytes(), false, e.end),
        ("replace", ExcKind::Translate) => {
            e.chars().iter().for_each(|_| push_cp(&mut out, 0xFFFD));
            result_str(g, &out, false, e.end)
        }
        ("xmlcharrefreplace", ExcKind::Encode) => {
            e.chars().into_iter().for_each(|c| push_xmlcharref(&mut out, c));
            result_str(g, &out, false, e.end)
        }
        ("backslashreplace", ExcKind::Decode) => {
            e.bytes().into_iter().for_each(|b| push_backslash(&mut out, b as u32));
            result_str(g, &out, false, e.end)
        }
        ("backslashreplace", _) => {
            e.chars().into_iter().for_each(|c| push_backslash(&mut out, c));
            result_str(g, &out, false, e.end)
        }
        ("namereplace", ExcKind::Encode) => {
            e.chars().into_iter().for_each(|c| push_namereplace(&mut out, c));
            result_str(g, &out, false, e.end)
        }
        ("surrogateescape", ExcKind::Decode) => {
            let b = e.object.as_bytes().unwrap_or_default();
            let mut n = 0;
            while n < 4 && e.start + n < e.end {
                let c = b[e.start + n];
                if c < 128 {
                    break;
                }
                push_cp(&mut out, 0xDC00 + c as u32);
                n += 1;
            }
            if n == 0 {
                return Err(e.to_error());
            }
            result_str(g, &out, true, e.start + n)
        }
        ("surrogateescape", ExcKind::Encode) => {
            for c in e.chars() {
                if !(0xDC80..=0xDCFF).contains(&c) {
                    return Err(e.to_error());
                }
                out.push((c - 0xDC00) as u8);
            }
            g.tuple(&[g.bytes(&out)?, g.int(e.end as i64)?])
        }
        ("surrogatepass", ExcKind::Encode) if is_utf8_name(&e.encoding) => {
            for c in e.chars() {
                if !(0xD800..=0xDFFF).contains(&c) {
                    return Err(e.to_error());
                }
                push_cp(&mut out, c);
            }
            g.tuple(&[g.bytes(&out)?, g.int(e.end as i64)?])
        }
        ("surrogatepass", ExcKind::Decode) if is_utf8_name(&e.encoding) => {
            let b = e.object.as_bytes().unwrap_or_default();
            match utf8_surrogate(&b[e.start..]) {
                Some(c) => {
                    push_cp(&mut out, c);
                    result_str(g, &out, true, e.start + 3)
                }
                None => Err(e.to_error()),
            }
        }
        ("surrogatepass", ExcKind::Encode | ExcKind::Decode) => match super::wide::surrogatepass_codec(&e.encoding) {
            None => Err(e.to_error()),
            Some((w, le)) if e.kind == ExcKind::Encode => {
                for c in e.chars() {
                    if !(0xD800..=0xDFFF).contains(&c) {
                        return Err(e.to_error());
                    }
                    w.push_cp(&mut out, c, le);
                }
                g.tuple(&[g.bytes(&out)?, g.int(e.end as i64)?])
            }
            Some((w, le)) => {
                let b = e.object.as_bytes().unwrap_or_default();
                match w.surrogate_at(b, e.start, le) {
                    Some(c) => {
                        push_cp(&mut out, c);
                        result_str(g, &out, true, e.start + w.unit)
                    }
                    None => Err(e.to_error()),
                }
            }
        },
        _ => Err(wrong_type(exc)),
    }
}
