//! The built-in 8-bit codecs `utf-8`, `ascii` and `latin-1` (CPython's
//! `Objects/unicodeobject.c` encoders and decoders and the alias table of
//! `Lib/encodings/aliases.py`), honouring every error handler.

use super::handlers::{decode_error, encode_error, push_backslash, push_xmlcharref, utf8_surrogate};
use super::wide::Wide;
use super::{call_user, new_str_data, next_cp, push_cp, str_data};
use crate::error::{Error, Result};
use crate::{Gil, Kind, Obj};

/// How many times in a row an error handler may send a codec back to (or
/// before) the error it was called for. CPython loops for ever (its output
/// growing until a `MemoryError`); here it is an error.
const MAX_NO_PROGRESS: usize = 10_000;

pub(crate) fn no_progress(errors: &str, position: i64, start: usize) -> Error {
    Error::RuntimeError {
        message: format!(
            "error handler '{errors}' returned position {position}, at or before the error at {start}, \
             {MAX_NO_PROGRESS} times in a row: it makes no progress; return a position past the error"
        ),
    }
}

/// One call of a decoding error handler (CPython's
/// `unicode_decode_call_errorhandler`): the handler gets a
/// `UnicodeDecodeError` for `input[start..end]`, must return `(str, int)`;
/// the str is appended to `out`, the input is re-read from the exception's
/// `object` (a handler may replace it), and the returned position (negative:
/// from the end) is where decoding resumes. `stuck` counts handler calls in
/// a row that did not move past `start` (`MAX_NO_PROGRESS` of them is an
/// error, never a hang).
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_handler_step<'i>(
    g: Gil<'i>,
    errors: &str,
    encoding: &str,
    input: &mut Obj<'i>,
    (start, end, reason): (usize, usize, &str),
    out: &mut Vec<u8>,
    surrogates: &mut bool,
    stuck: &mut usize,
) -> Result<usize> {
    let handler = g.codec_lookup_error(Some(errors))?;
    let exc = g.unicode_decode_error(encoding, input, start, end, reason)?;
    let res = call_user("codec error handler", &handler, std::slice::from_ref(&exc))?;
    let bad = || Error::TypeError { message: "decoding error handler must return (str, int) tuple".into() };
    if res.kind() != Kind::Tuple || res.len()? != 2 {
        return Err(bad());
    }
    let (rep, p) = (res.get_item(0)?, res.get_item(1)?);
    let Some(p) = p.as_int().filter(|_| p.kind() == Kind::Int) else { return Err(bad()) };
    let Some((rdata, rsur)) = str_data(&rep) else { return Err(bad()) };
    // The handler may have replaced the input (CPython re-reads `exc.object`).
    let new_input = exc.getattr("object")?;
    let new_len = match new_input.as_ref().and_then(|o| o.as_bytes()) {
        Some(d) => d.len() as i64,
        None => return Err(Error::TypeError { message: "object attribute must be bytes".into() }),
    };
    out.extend_from_slice(rdata);
    *surrogates |= rsur;
    let q = if p < 0 { p + new_len } else { p };
    if !(0..=new_len).contains(&q) {
        return Err(Error::HandlerPosition { position: p });
    }
    if let Some(o) = new_input {
        *input = o;
    }
    let pos = q as usize;
    *stuck = if pos <= start { *stuck + 1 } else { 0 };
    if *stuck >= MAX_NO_PROGRESS {
        return Err(no_progress(errors, p, start));
    }
    Ok(pos)
}

/// A built-in codec.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Codec {
    Utf8,
    Ascii,
    Latin1,
    /// UTF-16 or UTF-32 (`wide.rs`).
    Wide(Wide),
}

impl Codec {
    /// The codec a normalized name (and its `.` → `_` form, as
    /// `encodings.search_function` tries) names, with CPython's aliases.
    pub(crate) fn of(normalized: &str) -> Option<Codec> {
        Some(match normalized {
            "utf_8" | "utf8" | "u8" | "utf" | "utf8_ucs2" | "utf8_ucs4" | "cp65001" => Codec::Utf8,
            "ascii" | "646" | "ansi_x3.4_1968" | "ansi_x3_4_1968" | "ansi_x3.4_1986" | "ansi_x3_4_1986" | "cp367"
            | "csascii" | "ibm367" | "iso646_us" | "iso_646.irv_1991" | "iso_646_irv_1991" | "iso_ir_6" | "us"
            | "us_ascii" => Codec::Ascii,
            "latin_1" | "latin1" | "latin" | "l1" | "iso8859_1" | "iso_8859_1" | "iso_8859_1_1987" | "8859"
            | "cp819" | "csisolatin1" | "ibm819" | "iso_ir_100" => Codec::Latin1,
            _ => return Wide::of(normalized).map(Codec::Wide),
        })
    }

    /// The name in error texts.
    fn name(self) -> &'static str {
        match self {
            Codec::Utf8 => "utf-8",
            Codec::Ascii => "ascii",
            Codec::Latin1 => "latin-1",
            Codec::Wide(w) => w.name(w.order),
        }
    }

    fn func_prefix(self) -> &'static str {
        match self {
            Codec::Utf8 => "utf_8",
            Codec::Ascii => "ascii",
            Codec::Latin1 => "latin_1",
            Codec::Wide(w) => w.func_prefix(),
        }
    }

    #[inline]
    fn encodable(self, cp: u32) -> bool {
        match self {
            Codec::Utf8 | Codec::Wide(_) => !(0xD800..=0xDFFF).contains(&cp),
            Codec::Ascii => cp < 0x80,
            Codec::Latin1 => cp < 0x100,
        }
    }

    #[inline]
    fn push_encoded(self, out: &mut Vec<u8>, cp: u32) {
        match self {
            Codec::Utf8 => push_cp(out, cp),
            _ => out.push(cp as u8),
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Codec::Utf8 | Codec::Wide(_) => "surrogates not allowed",
            Codec::Ascii => "ordinal not in range(128)",
            Codec::Latin1 => "ordinal not in range(256)",
        }
    }

    /// Encodes str data (`s` is its object, given to handlers).
    pub(crate) fn encode<'i>(
        self,
        g: Gil<'i>,
        s: &Obj<'i>,
        data: &[u8],
        surrogates: bool,
        errors: &str,
    ) -> Result<Vec<u8>> {
        if let Codec::Wide(w) = self {
            return w.encode(g, s, data, errors);
        }
        if !surrogates && (self == Codec::Utf8 || (self == Codec::Ascii && data.is_ascii())) {
            return Ok(data.to_vec());
        }
        let mut out = Vec::with_capacity(data.len());
        let (mut i, mut ci) = (0usize, 0usize);
        let mut char_len = None;
        let mut stuck = 0;
        while i < data.len() {
            let (cp, n) = next_cp(data, i);
            if self.encodable(cp) {
                self.push_encoded(&mut out, cp);
                i += n;
                ci += 1;
                continue;
            }
            // The run of characters this codec cannot encode.
            let (start, start_ci) = (i, ci);
            let mut run = Vec::new();
            while i < data.len() {
                let (c, m) = next_cp(data, i);
                if self.encodable(c) {
                    break;
                }
                run.push(c);
                i += m;
                ci += 1;
            }
            let strict = || encode_error(self.name(), Some(run[0]), start_ci, ci, self.reason());
            match errors {
                "strict" => return Err(strict()),
                "ignore" => {}
                "replace" => out.extend(run.iter().map(|_| b'?')),
                "xmlcharrefreplace" => run.iter().for_each(|&c| push_xmlcharref(&mut out, c)),
                "backslashreplace" => run.iter().for_each(|&c| push_backslash(&mut out, c)),
                "surrogateescape" => {
                    if !run.iter().all(|c| (0xDC80..=0xDCFF).contains(c)) {
                        return Err(strict());
                    }
                    out.extend(run.iter().map(|&c| (c - 0xDC00) as u8));
                }
                "surrogatepass" if self == Codec::Utf8 => run.iter().for_each(|&c| push_cp(&mut out, c)),
                _ => {
                    // Any other name (namereplace included, as CPython's
                    // encoders): the registered handler.
                    let handler = g.codec_lookup_error(Some(errors))?;
                    let exc = g.unicode_encode_error(self.name(), s, start_ci, ci, self.reason())?;
                    let res = call_user("codec error handler", &handler, &[exc])?;
                    let bad = || Error::TypeError {
                        message: "encoding error handler must return (str/bytes, int) tuple".into(),
                    };
                    if res.kind() != Kind::Tuple || res.len()? != 2 {
                        return Err(bad());
                    }
                    let (rep, pos) = (res.get_item(0)?, res.get_item(1)?);
                    let Some(pos) = pos.as_int().filter(|_| pos.kind() == Kind::Int) else { return Err(bad()) };
                    if let Some(b) = rep.as_bytes() {
                        out.extend_from_slice(b);
                    } else if let Some(cps) = rep.str_code_points() {
                        // A str replacement must be encodable by this codec
                        // (ASCII only for utf-8), else the original error.
                        let limit = if self == Codec::Latin1 { 0x100 } else { 0x80 };
                        if cps.iter().any(|&c| c >= limit) {
                            return Err(strict());
                        }
                        out.extend(cps.iter().map(|&c| c as u8));
                    } else {
                        return Err(bad());
                    }
                    let len = *char_len.get_or_insert_with(|| s.len().unwrap_or(0)) as i64;
                    let p = if pos < 0 { pos + len } else { pos };
                    if !(0..=len).contains(&p) {
                        return Err(Error::HandlerPosition { position: pos });
                    }
                    // Continue at code point `p`.
                    let p = p as usize;
                    stuck = if p <= start_ci { stuck + 1 } else { 0 };
                    if stuck >= MAX_NO_PROGRESS {
                        return Err(no_progress(errors, pos, start_ci));
                    }
                    let (mut j, mut cj) = if p >= start_ci { (start, start_ci) } else { (0, 0) };
                    while cj < p {
                        j += next_cp(data, j).1;
                        cj += 1;
                    }
                    i = j;
                    ci = cj;
                }
            }
        }
        Ok(out)
    }

    /// Decodes from the start of `data` into `out` until an error: returns
    /// where it stopped and, if at an error, its end and reason.
    #[inline]
    fn decode_run(self, data: &[u8], out: &mut Vec<u8>) -> (usize, Option<(usize, &'static str)>) {
        match self {
            Codec::Utf8 => match std::str::from_utf8(data) {
                Ok(_) => {
                    out.extend_from_slice(data);
                    (data.len(), None)
                }
                Err(e) => {
                    let v = e.valid_up_to();
                    out.extend_from_slice(&data[..v]);
                    let b0 = data[v];
                    let err = if (0x80..=0xC1).contains(&b0) || b0 >= 0xF5 {
                        (v + 1, "invalid start byte")
                    } else {
                        match e.error_len() {
                            None => (data.len(), "unexpected end of data"),
                            Some(k) => (v + k, "invalid continuation byte"),
                        }
                    };
                    (v, Some(err))
                }
            },
            Codec::Ascii => {
                let v = data.iter().position(|&b| b >= 0x80).unwrap_or(data.len());
                out.extend_from_slice(&data[..v]);
                (v, (v < data.len()).then_some((v + 1, "ordinal not in range(128)")))
            }
            Codec::Latin1 | Codec::Wide(_) => {
                for &b in data {
                    push_cp(out, b as u32);
                }
                (data.len(), None)
            }
        }
    }

    /// Decodes a bytes object.
    pub(crate) fn decode<'i>(self, g: Gil<'i>, b: &Obj<'i>, errors: &str) -> Result<Obj<'i>> {
        if let Codec::Wide(w) = self {
            return w.decode(g, b, errors);
        }
        // Valid input: one copy, straight into the str object.
        let whole = b.as_bytes().unwrap_or_default();
        let valid = match self {
            Codec::Utf8 => std::str::from_utf8(whole).is_ok(),
            Codec::Ascii => whole.is_ascii(),
            Codec::Latin1 => whole.is_ascii(),
            Codec::Wide(_) => false,
        };
        if valid {
            return new_str_data(g, whole, false);
        }
        let mut input = b.clone();
        let mut out = Vec::with_capacity(b.as_bytes().map_or(0, |d| d.len()));
        let mut surrogates = false;
        let mut pos = 0usize;
        let mut stuck = 0;
        loop {
            let data = input.as_bytes().unwrap_or_default();
            if pos >= data.len() {
                break;
            }
            let (n, err) = self.decode_run(&data[pos..], &mut out);
            let Some((end, reason)) = err else { break };
            let (start, end) = (pos + n, pos + end);
            let strict = || decode_error(self.name(), Some(data[start]), start, end, reason);
            match errors {
                "strict" => return Err(strict()),
                "ignore" => pos = end,
                "replace" => {
                    push_cp(&mut out, 0xFFFD);
                    pos = end;
                }
                "backslashreplace" => {
                    data[start..end].iter().for_each(|&c| push_backslash(&mut out, c as u32));
                    pos = end;
                }
                "surrogateescape" => {
                    let k = data[start..end].iter().take(4).take_while(|&&c| c >= 128).count();
                    if k == 0 {
                        return Err(strict());
                    }
                    data[start..start + k].iter().for_each(|&c| push_cp(&mut out, 0xDC00 + c as u32));
                    surrogates = true;
                    pos = start + k;
                }
                "surrogatepass" if self == Codec::Utf8 => match utf8_surrogate(&data[start..]) {
                    Some(c) => {
                        push_cp(&mut out, c);
                        surrogates = true;
                        pos = start + 3;
                    }
                    None => return Err(strict()),
                },
                _ => {
                    pos = decode_handler_step(
                        g,
                        errors,
                        self.name(),
                        &mut input,
                        (start, end, reason),
                        &mut out,
                        &mut surrogates,
                        &mut stuck,
                    )?;
                }
            }
        }
        new_str_data(g, &out, surrogates)
    }
}

/// `encodings.search_function` for the built-in codecs: a 4-tuple
/// `(encode, decode, None, None)` for a known name, else `None`.
pub(crate) fn search_function<'i>(g: Gil<'i>, _: &[Obj<'i>], args: &[Obj<'i>]) -> Result<Obj<'i>> {
    let name = args.first().and_then(|a| a.as_str()).unwrap_or("");
    let codec = Codec::of(name).or_else(|| Codec::of(&name.replace('.', "_")));
    let Some(codec) = codec else { return g.none() };
    let enc = g.function(&format!("{}_encode", codec.func_prefix()), &[], move |g, _, args| {
        let (s, errors) = codec_args(g, args, Kind::Str, "encode")?;
        let Some((data, sur)) = str_data(&s) else { unreachable_type()? };
        let out = codec.encode(g, &s, data, sur, &errors)?;
        g.tuple(&[g.bytes(&out)?, g.int(s.len()? as i64)?])
    })?;
    let dec = g.function(&format!("{}_decode", codec.func_prefix()), &[], move |g, _, args| {
        let (b, errors) = codec_args(g, args, Kind::Bytes, "decode")?;
        let out = codec.decode(g, &b, &errors)?;
        g.tuple(&[out, g.int(b.len()? as i64)?])
    })?;
    let none = g.none()?;
    g.tuple(&[enc, dec, none.clone(), none])
}

fn unreachable_type<T>() -> Result<T> {
    Err(Error::TypeError { message: "argument 1 must be str".into() })
}

/// `(object, errors=None)` of a codec function.
fn codec_args<'i>(_g: Gil<'i>, args: &[Obj<'i>], want: Kind, what: &str) -> Result<(Obj<'i>, String)> {
    let Some(obj) = args.first() else {
        return Err(Error::TypeError { message: format!("{what}() missing required argument 'obj' (pos 1)") });
    };
    if obj.kind() != want {
        return Err(obj.type_error(&format!("{what}() argument 1 must be {}", want.name())));
    }
    let errors = match args.get(1) {
        None => "strict".to_string(),
        Some(e) if e.is_none() => "strict".to_string(),
        Some(e) => match e.as_str() {
            Some(s) => s.to_string(),
            None => return Err(e.type_error(&format!("{what}() argument 2 must be str or None"))),
        },
    };
    Ok((obj.clone(), errors))
}
