//! The per-module `__warningregistry__` and the once registry: heap dicts
//! keyed as CPython's (`Python/_warnings.c` `already_warned`,
//! `update_registry`).

use crate::error::Result;
use crate::gc::object::Obj;

/// Whether `v` is true as `PyObject_IsTrue` sees the values the registry
/// holds (`True`, ints).
fn truthy(v: &Obj<'_>) -> bool {
    !(v.is_none() || v.as_bool() == Some(false) || v.as_int() == Some(0))
}

/// The version check of `already_warned`: a registry whose `'version'`
/// differs from the filters' version is cleared and stamped. `key` is the
/// interned `"version"` str.
pub(crate) fn check_version<'i>(reg: &Obj<'i>, key: &Obj<'i>, version: u64) -> Result<()> {
    match reg.dict_get(key)? {
        Some(v) if v.as_int() == Some(version as i64) => Ok(()),
        _ => {
            reg.clear()?;
            reg.dict_set(key, &reg.gil().int(version as i64)?)
        }
    }
}

/// `already_warned(registry, key, should_set)` after the version check:
/// whether `key` is set; when it is not and `should_set`, sets it.
pub(crate) fn already_warned<'i>(reg: &Obj<'i>, key: &Obj<'i>, should_set: bool) -> Result<bool> {
    if let Some(v) = reg.dict_get(key)? {
        if truthy(&v) {
            return Ok(true);
        }
    }
    if should_set {
        reg.dict_set(key, &reg.gil().bool(true)?)?;
    }
    Ok(false)
}
