//! The UTF-16 and UTF-32 codecs (CPython's `PyUnicode_EncodeUTF16` /
//! `DecodeUTF16Stateful` and the UTF-32 pair in `Objects/unicodeobject.c`).
//! Unlike the 8-bit codecs, CPython's wide codecs handle no error inline:
//! every error, one character (or one code unit) at a time, goes to the
//! registered handler with an exception object, `strict` included.

use super::{call_user, new_str_data, next_cp};
use crate::error::{Error, Result};
use crate::{Gil, Kind, Obj};

/// Byte order: with a BOM (`utf-16`: native order, BOM written, BOM read if
/// present), or fixed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Order {
    Bom,
    Le,
    Be,
}

/// A wide codec: UTF-16 (`unit` 2) or UTF-32 (`unit` 4).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Wide {
    pub(crate) unit: usize,
    pub(crate) order: Order,
}

const MAX_NO_PROGRESS: usize = 10_000;

impl Wide {
    /// The codec a normalized name names (`Lib/encodings/aliases.py`).
    pub(crate) fn of(name: &str) -> Option<Wide> {
        let (unit, order) = match name {
            "utf_16" | "utf16" | "u16" => (2, Order::Bom),
            "utf_16_le" | "utf_16le" | "unicodelittleunmarked" => (2, Order::Le),
            "utf_16_be" | "utf_16be" | "unicodebigunmarked" => (2, Order::Be),
            "utf_32" | "utf32" | "u32" => (4, Order::Bom),
            "utf_32_le" | "utf_32le" => (4, Order::Le),
            "utf_32_be" | "utf_32be" => (4, Order::Be),
            _ => return None,
        };
        Some(Wide { unit, order })
    }

    fn little(self, order: Order) -> bool {
        match order {
            Order::Le => true,
            Order::Be => false,
            Order::Bom => cfg!(target_endian = "little"),
        }
    }

    /// CPython's name for the codec in exceptions (`utf-16` for the BOM
    /// variant on encode, the byte order's name on decode).
    pub(crate) fn name(self, order: Order) -> &'static str {
        match (self.unit, order) {
            (2, Order::Bom) => "utf-16",
            (2, Order::Le) => "utf-16-le",
            (2, Order::Be) => "utf-16-be",
            (_, Order::Bom) => "utf-32",
            (_, Order::Le) => "utf-32-le",
            (_, Order::Be) => "utf-32-be",
        }
    }

    pub(crate) fn func_prefix(self) -> &'static str {
        match (self.unit, self.order) {
            (2, Order::Bom) => "utf_16",
            (2, Order::Le) => "utf_16_le",
            (2, Order::Be) => "utf_16_be",
            (_, Order::Bom) => "utf_32",
            (_, Order::Le) => "utf_32_le",
            (_, Order::Be) => "utf_32_be",
        }
    }

    fn push_unit(self, out: &mut Vec<u8>, v: u32, le: bool) {
        if self.unit == 2 {
            let b = if le { (v as u16).to_le_bytes() } else { (v as u16).to_be_bytes() };
            out.extend_from_slice(&b);
        } else {
            out.extend_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() });
        }
    }

    /// Appends code point `cp` (surrogates too: `surrogatepass`'s units).
    pub(crate) fn push_cp(self, out: &mut Vec<u8>, cp: u32, le: bool) {
        if self.unit == 2 && cp >= 0x10000 {
            let c = cp - 0x10000;
            self.push_unit(out, 0xD800 | (c >> 10), le);
            self.push_unit(out, 0xDC00 | (c & 0x3FF), le);
        } else {
            self.push_unit(out, cp, le);
        }
    }

    fn read_unit(self, d: &[u8], i: usize, le: bool) -> u32 {
        if self.unit == 2 {
            let b = [d[i], d[i + 1]];
            (if le { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) }) as u32
        } else {
            let b = [d[i], d[i + 1], d[i + 2], d[i + 3]];
            if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            }
        }
    }

    /// The surrogate code unit at byte `i` of `d`, if one is there.
    pub(crate) fn surrogate_at(self, d: &[u8], i: usize, le: bool) -> Option<u32> {
        if d.len() < i + self.unit {
            return None;
        }
        Some(self.read_unit(d, i, le)).filter(|u| (0xD800..=0xDFFF).contains(u))
    }

    /// Encodes str data.
    pub(crate) fn encode<'i>(self, g: Gil<'i>, s: &Obj<'i>, data: &[u8], errors: &str) -> Result<Vec<u8>> {
        let le = self.little(self.order);
        let name = self.name(self.order);
        let mut out = Vec::with_capacity(data.len() * self.unit + self.unit);
        if self.order == Order::Bom {
            self.push_cp(&mut out, 0xFEFF, le);
        }
        let (mut i, mut ci) = (0usize, 0usize);
        let mut stuck = 0;
        let mut char_len = None;
        while i < data.len() {
            let (cp, n) = next_cp(data, i);
            if !(0xD800..=0xDFFF).contains(&cp) {
                self.push_cp(&mut out, cp, le);
                i += n;
                ci += 1;
                continue;
            }
            let reason = "surrogates not allowed";
            let strict = || super::handlers::encode_error(name, Some(cp), ci, ci + 1, reason);
            let handler = g.codec_lookup_error(Some(errors))?;
            let exc = g.unicode_encode_error(name, s, ci, ci + 1, reason)?;
            let res = call_user("codec error handler", &handler, &[exc])?;
            let bad =
                || Error::TypeError { message: "encoding error handler must return (str/bytes, int) tuple".into() };
            if res.kind() != Kind::Tuple || res.len()? != 2 {
                return Err(bad());
            }
            let (rep, pos) = (res.get_item(0)?, res.get_item(1)?);
            let Some(pos) = pos.as_int().filter(|_| pos.kind() == Kind::Int) else { return Err(bad()) };
            if let Some(b) = rep.as_bytes() {
                // Bytes must be whole code units.
                if b.len() % self.unit != 0 {
                    return Err(strict());
                }
                out.extend_from_slice(b);
            } else if let Some(cps) = rep.str_code_points() {
                if cps.iter().any(|&c| c >= 0x80) {
                    return Err(strict());
                }
                cps.iter().for_each(|&c| self.push_cp(&mut out, c, le));
            } else {
                return Err(bad());
            }
            let len = *char_len.get_or_insert_with(|| s.len().unwrap_or(0)) as i64;
            let p = if pos < 0 { pos + len } else { pos };
            if !(0..=len).contains(&p) {
                return Err(Error::HandlerPosition { position: pos });
            }
            let p = p as usize;
            stuck = if p <= ci { stuck + 1 } else { 0 };
            if stuck >= MAX_NO_PROGRESS {
                return Err(super::builtin::no_progress(errors, pos, ci));
            }
            let (mut j, mut cj) = if p >= ci { (i, ci) } else { (0, 0) };
            while cj < p {
                j += next_cp(data, j).1;
                cj += 1;
            }
            i = j;
            ci = cj;
        }
        Ok(out)
    }

    /// The error at byte `pos` of `d` (in byte order `le`), or the code
    /// point there and its length.
    fn step(self, d: &[u8], pos: usize, le: bool) -> std::result::Result<(u32, usize), (usize, &'static str)> {
        let left = d.len() - pos;
        if left < self.unit {
            return Err((d.len(), "truncated data"));
        }
        let u = self.read_unit(d, pos, le);
        if self.unit == 4 {
            return if u > 0x10FFFF {
                Err((pos + 4, "code point not in range(0x110000)"))
            } else if (0xD800..=0xDFFF).contains(&u) {
                Err((pos + 4, "code point in surrogate code point range(0xd800, 0xe000)"))
            } else {
                Ok((u, 4))
            };
        }
        if !(0xD800..=0xDFFF).contains(&u) {
            return Ok((u, 2));
        }
        if u >= 0xDC00 {
            return Err((pos + 2, "illegal encoding"));
        }
        if left < 4 {
            return Err((d.len(), "unexpected end of data"));
        }
        let u2 = self.read_unit(d, pos + 2, le);
        if !(0xDC00..=0xDFFF).contains(&u2) {
            return Err((pos + 2, "illegal UTF-16 surrogate"));
        }
        Ok((0x10000 + (((u - 0xD800) << 10) | (u2 - 0xDC00)), 4))
    }

    /// Decodes a bytes object.
    pub(crate) fn decode<'i>(self, g: Gil<'i>, b: &Obj<'i>, errors: &str) -> Result<Obj<'i>> {
        let mut input = b.clone();
        let whole = b.as_bytes().unwrap_or_default();
        let mut order = self.order;
        let mut pos = 0;
        if order == Order::Bom {
            let (le_bom, be_bom): (&[u8], &[u8]) =
                if self.unit == 2 { (b"\xff\xfe", b"\xfe\xff") } else { (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff") };
            if whole.starts_with(le_bom) {
                order = Order::Le;
                pos = self.unit;
            } else if whole.starts_with(be_bom) {
                order = Order::Be;
                pos = self.unit;
            } else {
                order = if cfg!(target_endian = "little") { Order::Le } else { Order::Be };
            }
        }
        let le = self.little(order);
        let name = self.name(order);
        let mut out = Vec::with_capacity(whole.len());
        let mut surrogates = false;
        let mut stuck = 0;
        loop {
            let data = input.as_bytes().unwrap_or_default();
            if pos >= data.len() {
                break;
            }
            let (start, (end, reason)) = match self.step(data, pos, le) {
                Ok((cp, n)) => {
                    super::push_cp(&mut out, cp);
                    pos += n;
                    continue;
                }
                Err(e) => (pos, e),
            };
            pos = super::builtin::decode_handler_step(
                g,
                errors,
                name,
                &mut input,
                (start, end, reason),
                &mut out,
                &mut surrogates,
                &mut stuck,
            )?;
        }
        new_str_data(g, &out, surrogates)
    }
}

/// `surrogatepass` for the wide codecs: the codec and byte order an
/// exception's encoding names, if it is one of them.
pub(crate) fn surrogatepass_codec(encoding: &str) -> Option<(Wide, bool)> {
    let w = Wide::of(&super::normalize_encoding(encoding))?;
    Some((w, w.little(w.order)))
}
