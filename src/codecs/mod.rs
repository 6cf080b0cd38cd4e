//! The codec registry, the error-handler registry and the built-in codecs
//! (issue 12 item 1; CPython's `Python/codecs.c`). See `docs/codecs.md`.
//!
//! The state is per interpreter and lives in the collector's GIL-protected
//! state (`GcState::codecs`): the search functions, the cached codec infos
//! and the handlers are heap objects of that interpreter, so only the holder
//! of its GIL can use them, and the GIL is the only exclusion needed (no
//! lock; two interpreters never share a registry).

mod builtin;
mod handlers;
mod wide;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};
use crate::gc::object::{
    body, decref, has_flag, set_flag, str_data_of, Body, Raw, FLAG_GC, FLAG_SURROGATES, STR_HASH_PREFIX,
};
use crate::gc::st;
use crate::interp::run_callback;
use crate::{Gil, Kind, Obj};

pub(crate) use handlers::BUILTIN_HANDLERS;

/// A small, fast hasher for the short ASCII keys of the registry (an FxHash
/// round per 8 bytes).
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(tail) ^ rest.len() as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        self.0 = h;
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap = HashMap<Box<str>, Raw, BuildHasherDefault<KeyHasher>>;

const MEMO_SIZE: usize = 4;
const MEMO_NAME: usize = 30;

#[derive(Clone, Copy, Default)]
struct MemoEntry {
    len: u8,
    name: [u8; MEMO_NAME],
    info: Option<Raw>,
}

impl MemoEntry {
    #[inline]
    fn get(&self, name: &[u8]) -> Option<Raw> {
        if self.len as usize == name.len() && self.name[..name.len()] == *name {
            self.info
        } else {
            None
        }
    }
}

/// The per-interpreter codec state (CPython's `interp->codecs`). Every `Raw`
/// here is one strong reference.
#[derive(Default)]
pub(crate) struct CodecState {
    initialized: bool,
    /// The search functions, in registration order (the built-in one first,
    /// as CPython's `encodings.search_function`).
    search_path: Vec<Raw>,
    /// Normalized name → codec info (a 4-tuple).
    cache: KeyMap,
    /// A memo of the last hits: names exactly as given (up to
    /// `MEMO_NAME` bytes) and their infos (references the cache owns).
    /// Cleared by every change of the cache.
    memo: [MemoEntry; MEMO_SIZE],
    memo_next: usize,
    /// Handler name → callable.
    errors: KeyMap,
}

impl CodecState {
    fn clear_memo(&mut self) {
        self.memo = Default::default();
    }

    #[inline]
    fn memo_get(&self, name: &[u8]) -> Option<Raw> {
        self.memo.iter().find_map(|m| m.get(name))
    }

    fn memo_put(&mut self, name: &[u8], info: Raw) {
        if name.len() <= MEMO_NAME {
            let m = &mut self.memo[self.memo_next % MEMO_SIZE];
            m.len = name.len() as u8;
            m.name[..name.len()].copy_from_slice(name);
            m.info = Some(info);
            self.memo_next = self.memo_next.wrapping_add(1);
        }
    }

    /// Takes every reference out (at the interpreter's teardown), leaving
    /// the state empty and marked initialized so that nothing is made again.
    pub(crate) fn take_all(&mut self) -> Vec<Raw> {
        let mut out = std::mem::take(&mut self.search_path);
        self.clear_memo();
        out.extend(std::mem::take(&mut self.cache).into_values());
        out.extend(std::mem::take(&mut self.errors).into_values());
        self.initialized = true;
        out
    }
}

/// At teardown: takes the registry's references and returns those to
/// untracked objects (the tracked ones are freed with every tracked object,
/// as the type cache's; untracked ones hold no references and are released
/// after, as the atoms).
pub(crate) fn take_for_teardown(s: &mut crate::gc::GcState) -> Vec<Raw> {
    let mut all = s.codecs.take_all();
    all.retain(|&r| !(has_flag(r, FLAG_GC) && crate::gc::object::gc_head(r).slot.get() != 0));
    all
}

/// CPython's `_Py_normalize_encoding` (used by `normalizestring` in
/// `Python/codecs.c`): ASCII letters and digits (lowercased) and `.` are
/// kept; every run of other bytes (punctuation, spaces, every byte of a
/// non-ASCII character) becomes one `_`, and runs at the start or the end
/// are dropped.
///
/// ```
/// use subinterp::normalize_encoding;
///
/// assert_eq!(normalize_encoding("  --My  Codec..X--"), "my_codec..x");
/// assert_eq!(normalize_encoding("x-y z"), "x_y_z");
/// assert_eq!(normalize_encoding("a.b-c"), "a.b_c");
/// assert_eq!(normalize_encoding("Ünï"), "n");
/// ```
pub fn normalize_encoding(name: &str) -> String {
    let mut buf = vec![0u8; name.len()];
    let n = normalize_into(name.as_bytes(), &mut buf);
    buf.truncate(n);
    // Only ASCII bytes are written.
    String::from_utf8(buf).unwrap_or_default()
}

/// Writes the normalized form of `name` into `out` (at least `name.len()`
/// bytes: the result is never longer) and returns its length.
#[inline]
fn normalize_into(name: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    let mut punct = false;
    for &c in name {
        if c.is_ascii_alphanumeric() || c == b'.' {
            if punct && n > 0 {
                out[n] = b'_';
                n += 1;
            }
            punct = false;
            out[n] = c.to_ascii_lowercase();
            n += 1;
        } else {
            punct = true;
        }
    }
    n
}

/// Runs `f` on the normalized form of `name` (on the stack for short names).
#[inline]
fn with_normalized<R>(name: &str, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 64];
    if name.len() <= buf.len() {
        let n = normalize_into(name.as_bytes(), &mut buf);
        f(std::str::from_utf8(&buf[..n]).unwrap_or(""))
    } else {
        f(&normalize_encoding(name))
    }
}

/// Whether `o` can be called through [`Obj::call`] (CPython's
/// `PyCallable_Check` for the kinds that exist here).
pub(crate) fn is_callable(o: &Obj<'_>) -> bool {
    match o.kind() {
        Kind::Function | Kind::Method => true,
        Kind::Type => o.type_name() == "type" && !is_builtin_type(o),
        Kind::WeakProxy => matches!(o.weakref_get(), Ok(Some(t)) if is_callable(&t)),
        _ => false,
    }
}

fn is_builtin_type(o: &Obj<'_>) -> bool {
    match body(o.raw()) {
        Body::Type(t) => t.builtin.is_some(),
        _ => false,
    }
}

/// Calls user code (a search function, a handler, a registered codec)
/// behind the catch-unwind boundary: a panic is
/// [`Error::CallbackPanicked`].
pub(crate) fn call_user<'i>(context: &'static str, f: &Obj<'i>, args: &[Obj<'i>]) -> Result<Obj<'i>> {
    run_callback(context, || f.call(args))?
}

// ----- generalized UTF-8 (str data with lone surrogates) ----------------------------

/// The code point at byte `i` of str data (valid UTF-8, or generalized UTF-8
/// with lone surrogates) and its length in bytes.
#[inline]
pub(crate) fn next_cp(d: &[u8], i: usize) -> (u32, usize) {
    let b0 = d[i] as u32;
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xE0 {
        (((b0 & 0x1F) << 6) | (d[i + 1] as u32 & 0x3F), 2)
    } else if b0 < 0xF0 {
        (((b0 & 0x0F) << 12) | ((d[i + 1] as u32 & 0x3F) << 6) | (d[i + 2] as u32 & 0x3F), 3)
    } else {
        (
            ((b0 & 0x07) << 18)
                | ((d[i + 1] as u32 & 0x3F) << 12)
                | ((d[i + 2] as u32 & 0x3F) << 6)
                | (d[i + 3] as u32 & 0x3F),
            4,
        )
    }
}

/// Appends code point `cp` (≤ 0x10FFFF, surrogates allowed) to str data.
#[inline]
pub(crate) fn push_cp(out: &mut Vec<u8>, cp: u32) {
    if cp < 0x80 {
        out.push(cp as u8);
    } else if cp < 0x800 {
        out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]);
    } else if cp < 0x10000 {
        out.extend_from_slice(&[0xE0 | (cp >> 12) as u8, 0x80 | ((cp >> 6) & 0x3F) as u8, 0x80 | (cp & 0x3F) as u8]);
    } else {
        out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]);
    }
}

/// The code points of str data.
pub(crate) fn code_points(d: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(d.len());
    let mut i = 0;
    while i < d.len() {
        let (cp, n) = next_cp(d, i);
        out.push(cp);
        i += n;
    }
    out
}

/// A new str object from str data; `surrogates` says whether it holds lone
/// surrogates (then it is flagged and never read as a `&str`).
pub(crate) fn new_str_data<'i>(g: Gil<'i>, data: &[u8], surrogates: bool) -> Result<Obj<'i>> {
    if !surrogates {
        debug_assert!(std::str::from_utf8(data).is_ok());
    }
    let raw = crate::gc::alloc_obj(g, Body::Str(data.len()), false, STR_HASH_PREFIX, data)?;
    if surrogates {
        set_flag(raw, FLAG_SURROGATES, true);
    }
    Ok(Obj::from_raw_owned(raw, g))
}

/// The data of a str object and whether it holds surrogates.
pub(crate) fn str_data<'a>(o: &'a Obj<'_>) -> Option<(&'a [u8], bool)> {
    match body(o.raw()) {
        Body::Str(_) => Some((str_data_of(o.raw()), has_flag(o.raw(), FLAG_SURROGATES))),
        _ => None,
    }
}

// ----- the registry ---------------------------------------------------------------------

/// Makes the built-in search function and the eight handlers on first use
/// (CPython's `_PyCodec_InitRegistry`, which runs at interpreter init).
fn ensure_init(g: Gil<'_>) -> Result<()> {
    if st(g, |s| s.codecs.initialized) {
        return Ok(());
    }
    let search = g.function("search_function", &[], builtin::search_function)?;
    let mut hs = Vec::with_capacity(BUILTIN_HANDLERS.len());
    for &name in BUILTIN_HANDLERS {
        hs.push((name, handlers::make_builtin(g, name)?));
    }
    // Nothing above ran user code: no one initialized meanwhile.
    let refused = st(g, |s| {
        if s.codecs.initialized || s.closing {
            return true;
        }
        s.codecs.initialized = true;
        s.codecs.search_path.insert(0, search.clone().into_raw());
        for (name, h) in &hs {
            s.codecs.errors.insert((*name).into(), h.clone().into_raw());
        }
        false
    });
    if refused && !st(g, |s| s.codecs.initialized) {
        return Err(closing_error(g));
    }
    Ok(())
}

fn closing_error(g: Gil<'_>) -> Error {
    Error::InterpreterClosed { id: g.id() }
}

impl<'i> Gil<'i> {
    /// Registers a codec search function (CPython's `codecs.register`): a
    /// callable taking the normalized encoding name (a str) and returning
    /// `None` or a 4-tuple `(encode, decode, stream_reader, stream_writer)`.
    /// Search functions are asked in registration order, after the built-in
    /// one (`utf-8`, `ascii`, `latin-1`, the `utf-16` and `utf-32` family and
    /// their aliases).
    ///
    /// Errors: [`Error::TypeError`] "argument must be callable".
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let search = g.function("search", &[], |g, _, args| {
    ///         if args[0].as_str() == Some("rot_13") {
    ///             let n = g.none()?;
    ///             g.tuple(&[n.clone(), n.clone(), n.clone(), n])
    ///         } else {
    ///             g.none()
    ///         }
    ///     })?;
    ///     g.codec_register(&search)?;
    ///     let info = g.codec_lookup("ROT-13")?;
    ///     assert_eq!(info.len()?, 4);
    ///     assert!(g.codec_lookup("rot-14").is_err());
    ///     assert!(g.codec_unregister(&search)?);
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn codec_register(&self, search_fn: &Obj<'i>) -> Result<()> {
        if !is_callable(search_fn) {
            return Err(Error::TypeError { message: "argument must be callable".into() });
        }
        ensure_init(*self)?;
        let f = search_fn.clone().into_raw();
        let refused = st(*self, |s| {
            if s.closing {
                return true;
            }
            s.codecs.search_path.push(f);
            false
        });
        if refused {
            decref(*self, f);
            return Err(closing_error(*self));
        }
        Ok(())
    }

    /// Unregisters a search function (CPython's `codecs.unregister`, by
    /// identity): when it was registered, the whole lookup cache is cleared.
    /// Returns whether it was found (CPython returns `None` either way).
    pub fn codec_unregister(&self, search_fn: &Obj<'i>) -> Result<bool> {
        ensure_init(*self)?;
        let r = search_fn.raw();
        let released = st(*self, |s| {
            let i = s.codecs.search_path.iter().position(|&x| x == r)?;
            let mut out = vec![s.codecs.search_path.remove(i)];
            s.codecs.clear_memo();
            out.extend(std::mem::take(&mut s.codecs.cache).into_values());
            Some(out)
        });
        // Released after the state is consistent: a release can run user
        // code (an embedder's drop) that re-enters the registry.
        Ok(match released {
            Some(v) => {
                v.into_iter().for_each(|x| decref(*self, x));
                true
            }
            None => false,
        })
    }

    /// Looks up a codec (CPython's `codecs.lookup` / `_PyCodec_Lookup`):
    /// the name is normalized ([`normalize_encoding`]); a cached info is
    /// returned at once; else the search functions are called in
    /// registration order with the normalized name and the first result
    /// that is not `None` wins, is checked to be a 4-tuple and cached.
    /// Misses are not cached.
    ///
    /// Errors: [`Error::LookupError`] "unknown encoding: NAME" (the name as
    /// given); [`Error::TypeError`] "codec search functions must return
    /// 4-tuples"; a search function's own error, or its panic as
    /// [`Error::CallbackPanicked`] (the registry is left as it was).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let a = g.codec_lookup("UTF-8")?;
    ///     assert!(a.is(&g.codec_lookup(" utf--8 ")?)); // the same key `utf_8`: the cached info
    ///     assert!(!a.is(&g.codec_lookup("utf8")?)); // an alias is another key, another info (as CPython's)
    ///     let e = g.codec_lookup("__spam__").unwrap_err();
    ///     assert_eq!(e.to_string(), "LookupError: unknown encoding: __spam__");
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn codec_lookup(&self, name: &str) -> Result<Obj<'i>> {
        let g = *self;
        let hit = st(g, |s| {
            let c = &mut s.codecs;
            if let Some(r) = c.memo_get(name.as_bytes()) {
                return Some(r);
            }
            let r = with_normalized(name, |key| c.cache.get(key).copied())?;
            c.memo_put(name.as_bytes(), r);
            Some(r)
        });
        if let Some(r) = hit {
            return Ok(Obj::from_raw_borrowed(r, g));
        }
        self.codec_lookup_slow(name)
    }

    #[inline(never)]
    fn codec_lookup_slow(&self, name: &str) -> Result<Obj<'i>> {
        let g = *self;
        ensure_init(g)?;
        let key = normalize_encoding(name);
        if let Some(r) = st(g, |s| s.codecs.cache.get(key.as_str()).copied()) {
            return Ok(Obj::from_raw_borrowed(r, g));
        }
        // A snapshot: search functions may register or unregister while
        // they run; each is held for the duration of its call.
        let path: Vec<Obj<'i>> =
            st(g, |s| s.codecs.search_path.clone()).into_iter().map(|r| Obj::from_raw_borrowed(r, g)).collect();
        if path.is_empty() {
            return Err(Error::LookupError {
                message: "no codec search functions registered: can't find encoding".into(),
            });
        }
        let arg = g.str(&key)?;
        for f in &path {
            let res = call_user("codec search function", f, std::slice::from_ref(&arg))?;
            if res.is_none() {
                continue;
            }
            if res.kind() != Kind::Tuple || res.len()? != 4 {
                return Err(Error::TypeError { message: "codec search functions must return 4-tuples".into() });
            }
            let raw = res.clone().into_raw();
            let old = st(g, |s| {
                if s.closing {
                    return Some(raw);
                }
                s.codecs.clear_memo();
                s.codecs.cache.insert(key.clone().into_boxed_str(), raw)
            });
            if let Some(old) = old {
                decref(g, old);
            }
            return Ok(res);
        }
        Err(Error::LookupError { message: format!("unknown encoding: {name}") })
    }

    /// Forgets one cached codec info (CPython's `_PyCodec_Forget`); returns
    /// whether it was cached.
    pub fn codec_forget(&self, name: &str) -> Result<bool> {
        let key = normalize_encoding(name);
        let old = st(*self, |s| {
            s.codecs.clear_memo();
            s.codecs.cache.remove(key.as_str())
        });
        Ok(match old {
            Some(r) => {
                decref(*self, r);
                true
            }
            None => false,
        })
    }

    /// Registers an error handler under `name` (CPython's
    /// `codecs.register_error`): a callable taking an exception object
    /// ([`Gil::unicode_encode_error`], …) and returning `(replacement,
    /// position)`. It may replace a built-in one (the built-in codecs still
    /// use their own logic for the built-in names, as CPython's do).
    ///
    /// Errors: [`Error::TypeError`] "handler must be callable".
    pub fn codec_register_error(&self, name: &str, handler: &Obj<'i>) -> Result<()> {
        if !is_callable(handler) {
            return Err(Error::TypeError { message: "handler must be callable".into() });
        }
        ensure_init(*self)?;
        let h = handler.clone().into_raw();
        let old = st(*self, |s| {
            if s.closing {
                return Some(h);
            }
            s.codecs.errors.insert(name.into(), h)
        });
        if let Some(old) = old {
            decref(*self, old);
        }
        Ok(())
    }

    /// The error handler registered under `name` (CPython's
    /// `codecs.lookup_error`); `None` means `"strict"`.
    ///
    /// Errors: [`Error::LookupError`] "unknown error handler name 'x'".
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let replace = g.codec_lookup_error(Some("replace"))?;
    ///     let exc = g.unicode_encode_error("ascii", &g.str("a\u{3042}b")?, 1, 2, "ouch")?;
    ///     let res = replace.call(&[exc])?;
    ///     assert_eq!(res.get_item(0)?.as_str(), Some("?"));
    ///     assert_eq!(res.get_item(1)?.as_int(), Some(2));
    ///     let e = g.codec_lookup_error(Some("x")).unwrap_err();
    ///     assert_eq!(e.to_string(), "LookupError: unknown error handler name 'x'");
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn codec_lookup_error(&self, name: Option<&str>) -> Result<Obj<'i>> {
        ensure_init(*self)?;
        let name = name.unwrap_or("strict");
        match st(*self, |s| s.codecs.errors.get(name).copied()) {
            Some(r) => Ok(Obj::from_raw_borrowed(r, *self)),
            None => Err(Error::LookupError { message: format!("unknown error handler name '{name}'") }),
        }
    }

    /// Unregisters an error handler (CPython's `_PyCodec_UnregisterError`,
    /// `_codecs._unregister_error` after 3.13.0); returns whether it was
    /// registered.
    ///
    /// Errors: [`Error::Raised`] `ValueError` "cannot un-register built-in error
    /// handler 'strict'" for the eight built-in names.
    pub fn codec_unregister_error(&self, name: &str) -> Result<bool> {
        if BUILTIN_HANDLERS.contains(&name) {
            return Err(Error::raised("ValueError", format!("cannot un-register built-in error handler '{name}'")));
        }
        ensure_init(*self)?;
        Ok(match st(*self, |s| s.codecs.errors.remove(name)) {
            Some(r) => {
                decref(*self, r);
                true
            }
            None => false,
        })
    }

    /// Encodes a str (CPython's `str.encode(encoding, errors)`): `utf-8`,
    /// `ascii`, `latin-1`, `utf-16` and `utf-32` (their byte orders and
    /// aliases) directly, any other name
    /// through [`codec_lookup`](Self::codec_lookup) and the codec's encode
    /// function (whose errors get the note "encoding with 'X' codec
    /// failed"). `errors` is a handler name (`None`: `"strict"`), looked up
    /// only when an error needs it.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let s = g.str("aé€")?;
    ///     assert_eq!(g.encode(&s, "utf-8", None)?.as_bytes(), Some("aé€".as_bytes()));
    ///     assert_eq!(g.encode(&s, "latin-1", Some("replace"))?.as_bytes(), Some(&b"a\xe9?"[..]));
    ///     assert_eq!(g.encode(&s, "ascii", Some("xmlcharrefreplace"))?.as_bytes(), Some(&b"a&#233;&#8364;"[..]));
    ///     let e = g.encode(&s, "ascii", None).unwrap_err();
    ///     assert_eq!(
    ///         e.to_string(),
    ///         "UnicodeEncodeError: 'ascii' codec can't encode characters in position 1-2: ordinal not in range(128)"
    ///     );
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn encode(&self, s: &Obj<'i>, encoding: &str, errors: Option<&str>) -> Result<Obj<'i>> {
        let Some((data, surrogates)) = str_data(s) else {
            return Err(s.type_error("encode() argument must be str"));
        };
        let errors = errors.unwrap_or("strict");
        if let Some(codec) = with_normalized(encoding, builtin::Codec::of) {
            let out = codec.encode(*self, s, data, surrogates, errors)?;
            return self.bytes(&out);
        }
        let info = self.codec_lookup(encoding)?;
        let res = self.call_codec(&info, 0, s, errors).map_err(|e| Error::WithNote {
            error: Box::new(e),
            note: format!("encoding with '{encoding}' codec failed"),
        })?;
        let out = codec_result(&res, "encoder must return a tuple (object, integer)")?;
        if out.kind() != Kind::Bytes {
            return Err(Error::TypeError {
                message: format!(
                    "'{encoding}' encoder returned '{}' instead of 'bytes'; use codecs.encode() to encode to arbitrary types",
                    out.type_name()
                ),
            });
        }
        Ok(out)
    }

    /// Decodes bytes (CPython's `bytes.decode(encoding, errors)`), as
    /// [`encode`](Self::encode) does the other way. A result holding lone
    /// surrogates (`surrogateescape`, `surrogatepass`) is a str whose
    /// [`Obj::as_str`] is `None` (see [`Obj::str_code_points`]).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let b = g.bytes(b"a\xffb")?;
    ///     assert_eq!(g.decode(&b, "utf-8", Some("replace"))?.as_str(), Some("a\u{fffd}b"));
    ///     let s = g.decode(&b, "utf-8", Some("surrogateescape"))?;
    ///     assert_eq!(s.str_code_points(), Some(vec![0x61, 0xdcff, 0x62]));
    ///     assert_eq!(g.encode(&s, "utf-8", Some("surrogateescape"))?.as_bytes(), Some(&b"a\xffb"[..]));
    ///     let e = g.decode(&g.bytes(b"\xff")?, "utf-8", None).unwrap_err();
    ///     assert_eq!(
    ///         e.to_string(),
    ///         "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
    ///     );
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn decode(&self, b: &Obj<'i>, encoding: &str, errors: Option<&str>) -> Result<Obj<'i>> {
        if b.kind() != Kind::Bytes {
            return Err(b.type_error("decode() argument must be bytes"));
        }
        let errors = errors.unwrap_or("strict");
        if let Some(codec) = with_normalized(encoding, builtin::Codec::of) {
            return codec.decode(*self, b, errors);
        }
        let info = self.codec_lookup(encoding)?;
        let res = self.call_codec(&info, 1, b, errors).map_err(|e| Error::WithNote {
            error: Box::new(e),
            note: format!("decoding with '{encoding}' codec failed"),
        })?;
        let out = codec_result(&res, "decoder must return a tuple (object,integer)")?;
        if out.kind() != Kind::Str {
            return Err(Error::TypeError {
                message: format!(
                    "'{encoding}' decoder returned '{}' instead of 'str'; use codecs.decode() to decode to arbitrary types",
                    out.type_name()
                ),
            });
        }
        Ok(out)
    }

    fn call_codec(&self, info: &Obj<'i>, which: usize, arg: &Obj<'i>, errors: &str) -> Result<Obj<'i>> {
        let f = info.get_item(which)?;
        call_user("codec function", &f, &[arg.clone(), self.str(errors)?])
    }

    /// A new str from code points, which may include lone surrogates
    /// (U+D800..U+DFFF; such a str's [`Obj::as_str`] is `None`).
    ///
    /// Errors: [`Error::Raised`] `ValueError` "chr() arg not in range(0x110000)".
    pub fn str_from_code_points(&self, cps: &[u32]) -> Result<Obj<'i>> {
        let mut out = Vec::with_capacity(cps.len());
        let mut surrogates = false;
        for &cp in cps {
            if cp > 0x10FFFF {
                return Err(Error::raised("ValueError", "chr() arg not in range(0x110000)"));
            }
            surrogates |= (0xD800..=0xDFFF).contains(&cp);
            push_cp(&mut out, cp);
        }
        new_str_data(*self, &out, surrogates)
    }
}

/// The object of an `(object, integer)` codec result.
fn codec_result<'i>(res: &Obj<'i>, message: &str) -> Result<Obj<'i>> {
    if res.kind() != Kind::Tuple || res.len()? != 2 {
        return Err(Error::TypeError { message: message.into() });
    }
    res.get_item(0)
}

impl<'i> Obj<'i> {
    /// The code points of a str (also of one holding lone surrogates);
    /// `None` for any other object.
    pub fn str_code_points(&self) -> Option<Vec<u32>> {
        str_data(self).map(|(d, _)| code_points(d))
    }

    /// The text of a str with each lone surrogate shown as U+FFFD; `None`
    /// for any other object.
    pub fn str_lossy(&self) -> Option<std::borrow::Cow<'_, str>> {
        str_data(self).map(|(d, sur)| {
            if !sur {
                return String::from_utf8_lossy(d);
            }
            let text: String = code_points(d).into_iter().map(|c| char::from_u32(c).unwrap_or('\u{fffd}')).collect();
            std::borrow::Cow::Owned(text)
        })
    }

    /// Whether this is a str holding lone surrogates (whose
    /// [`as_str`](Obj::as_str) is `None`).
    pub fn str_has_surrogates(&self) -> bool {
        matches!(str_data(self), Some((_, true)))
    }
}
