//! The dict: an insertion-ordered table of key/value references, and the
//! key values ([`HKey`]) that give Python equality (`1 == 1.0 == True`).

use std::collections::HashMap;

use super::object::{body, bytes_of, kind_of, str_of, Body, Items, Raw};
use crate::error::{Error, Result};

/// A hashable key's value (Python equality: `1 == 1.0 == True`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HKey {
    None,
    Int(i64),
    Float(u64),
    Str(Box<str>),
    Bytes(Box<[u8]>),
    Tuple(Vec<HKey>),
    /// An object that hashes and compares by identity: its address.
    Id(usize),
}

/// How deeply tuples may nest inside a dict key (CPython's default recursion
/// limit): deeper keys are a `RecursionError`, never a stack overflow in
/// hashing, comparing or dropping the key.
pub(crate) const MAX_KEY_DEPTH: usize = 1000;

pub(crate) fn hkey(r: Raw) -> Result<HKey> {
    let Some(items) = key_tuple(r) else { return hkey_atom(r) };
    // Nested tuples are walked with an explicit stack (no recursion on the
    // caller's structure): one frame per open tuple, its items and the keys
    // built so far.
    let mut stack = vec![(items.iter(), Vec::with_capacity(items.len()))];
    loop {
        let (iter, out) = stack.last_mut().expect("the outermost tuple is on the stack");
        match iter.next() {
            Some(&c) => match key_tuple(c) {
                Some(inner) => {
                    if stack.len() >= MAX_KEY_DEPTH {
                        return Err(Error::RecursionError { limit: MAX_KEY_DEPTH, context: "hashing a dict key" });
                    }
                    stack.push((inner.iter(), Vec::with_capacity(inner.len())));
                }
                None => out.push(hkey_atom(c)?),
            },
            None => {
                let (_, done) = stack.pop().expect("checked above");
                let key = HKey::Tuple(done);
                match stack.last_mut() {
                    Some((_, parent)) => parent.push(key),
                    None => return Ok(key),
                }
            }
        }
    }
}

/// The items of a tuple (the only nesting a key can have).
fn key_tuple<'a>(r: Raw) -> Option<&'a Items> {
    match body(r) {
        Body::Seq(items) if !items.is_list() => Some(items),
        _ => None,
    }
}

fn hkey_atom(r: Raw) -> Result<HKey> {
    Ok(match body(r) {
        Body::None => HKey::None,
        Body::Bool(b) => HKey::Int(*b as i64),
        Body::Int(i) => HKey::Int(*i),
        Body::Float(f) => {
            if f.fract() == 0.0 && *f >= -(2f64.powi(63)) && *f < 2f64.powi(63) {
                HKey::Int(*f as i64)
            } else {
                HKey::Float(f.to_bits())
            }
        }
        Body::Str(_) => HKey::Str(str_of(r).into()),
        Body::Bytes(_) => HKey::Bytes(bytes_of(r).into()),
        // Instances, classes, functions, …: by identity (CPython's
        // `object.__hash__`); the dict holds the key, so its address is unique
        // while it is there.
        _ if super::types::hashes_by_identity(r) => HKey::Id(r.as_ptr() as usize),
        _ => return Err(Error::TypeError { message: format!("unhashable type: '{}'", kind_of(r).name()) }),
    })
}

/// An insertion-ordered dict: entries in order (holes for deleted ones) and
/// an index from key value to entry.
#[derive(Default)]
pub(crate) struct Dict {
    entries: Vec<Option<(Raw, Raw)>>,
    index: HashMap<HKey, usize>,
}

impl Dict {
    pub(crate) fn traverse(&self, f: &mut impl FnMut(Raw)) {
        for (k, v) in self.entries.iter().flatten() {
            f(*k);
            f(*v);
        }
    }

    pub(crate) fn take_all(&mut self, out: &mut Vec<Raw>) {
        self.index.clear();
        for (k, v) in self.entries.drain(..).flatten() {
            out.push(k);
            out.push(v);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn get(&self, k: &HKey) -> Option<Raw> {
        self.index.get(k).and_then(|&i| self.entries[i]).map(|(_, v)| v)
    }

    /// Inserts (both references are handed over); returns the displaced value.
    pub(crate) fn set(&mut self, hk: HKey, k: Raw, v: Raw) -> Vec<Raw> {
        match self.index.get(&hk) {
            Some(&i) => {
                let slot = self.entries[i].as_mut().expect("indexed entries are live");
                let old = std::mem::replace(&mut slot.1, v);
                vec![old, k]
            }
            None => {
                self.index.insert(hk, self.entries.len());
                self.entries.push(Some((k, v)));
                Vec::new()
            }
        }
    }

    /// Removes a key; returns the references it held.
    pub(crate) fn remove(&mut self, hk: &HKey) -> Option<(Raw, Raw)> {
        let i = self.index.remove(hk)?;
        let e = self.entries[i].take();
        if self.entries.len() > 8 && self.index.len() < self.entries.len() / 2 {
            self.entries.retain(Option::is_some);
            for (j, (k, _)) in self.entries.iter().flatten().enumerate() {
                if let Ok(h) = hkey(*k) {
                    self.index.insert(h, j);
                }
            }
        }
        e
    }

    pub(crate) fn items(&self) -> impl Iterator<Item = (Raw, Raw)> + '_ {
        self.entries.iter().flatten().copied()
    }
}
