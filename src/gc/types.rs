//! Type objects, bound methods and module objects: the object model a
//! Python-like VM stands on (`docs/objects.md`).
//!
//! * A **type** is a heap object (`Body::Type`): a name, its bases, its
//!   method resolution order (C3, CPython's `Objects/typeobject.c`
//!   `mro_implementation`, without the type itself, so a type does not refer
//!   to itself) and an attribute dict. Every reference is traced: a class
//!   and its instances and methods form ordinary cycles the collector finds.
//! * An **instance** refers to its type (traced). Its attributes are inline
//!   values named by its class's shared keys, or a dict (`instance.rs`).
//!   Attribute lookup: the instance's own attributes, then each type of the
//!   MRO; a function found on the type comes back bound to the instance
//!   (`Body::Method`).
//! * Built-in objects report a type object too, one per interpreter and
//!   built-in kind, created on first use and kept by the interpreter until
//!   it closes (CPython's static types are process-wide; here nothing is
//!   shared between interpreters).
//! * A **module** is a heap object with a heap dict of globals
//!   (`Body::Module`); see `crate::module` for how the module table keeps
//!   them and how `close()` clears them in CPython's `finalize_modules`
//!   order.

use super::hbox::HBox;
use super::instance;
use super::object::{
    body, body_mut, decref, has_flag, incref, kind_of, set_flag, Body, Dict, Items, Obj, Raw, SeqKind, FLAG_SPECIAL,
};
use super::{st, Kind};
use crate::error::{Error, Result};
use crate::Gil;

/// The body of a type object.
pub(crate) struct TypeObj {
    pub(crate) name: Box<str>,
    /// Strong references, in a heap buffer (a tuple's `Items`).
    pub(crate) bases: Items,
    /// The MRO after the type itself (strong references, a heap buffer).
    pub(crate) mro: Items,
    pub(crate) dict: Dict,
    /// For the type object of a built-in kind.
    pub(crate) builtin: Option<Kind>,
    /// The attribute names its instances share (interned strs, strong
    /// references, a heap buffer; at most `instance::SHARED_KEYS_MAX`): an
    /// instance's inline value `i` is its attribute named `keys[i]`
    /// (`instance.rs`).
    pub(crate) keys: Items,
}

/// A function bound to an object (`instance.method`).
pub(crate) struct Method {
    pub(crate) func: Raw,
    pub(crate) receiver: Raw,
}

/// The body of a module object.
pub(crate) struct ModuleObj {
    pub(crate) name: Box<str>,
    /// A dict object (strong reference).
    pub(crate) dict: Raw,
}

/// What the interpreter's type cache is keyed by.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum TypeKey {
    /// The type object of a built-in kind.
    Builtin(Kind),
    /// The type of an embedder's [`Trace`](crate::Trace) type, by Rust type name.
    Custom(&'static str),
    /// A built-in exception class (`crate::exceptions`), by name.
    Exception(&'static str),
}

pub(crate) fn type_body<'a>(r: Raw) -> Option<&'a TypeObj> {
    match body(r) {
        Body::Type(t) => Some(t),
        _ => None,
    }
}

/// Looks `name` up in a dict that holds `str` keys.
pub(crate) fn dict_get_str(d: &Dict, name: &str) -> Option<Raw> {
    d.get_str(name)
}

/// `name` along the MRO of type `t` (the type first).
fn mro_lookup(t: Raw, name: &str) -> Option<Raw> {
    let tb = type_body(t)?;
    if let Some(v) = dict_get_str(&tb.dict, name) {
        return Some(v);
    }
    tb.mro.iter().find_map(|&c| type_body(c).and_then(|cb| dict_get_str(&cb.dict, name)))
}

/// Whether type `t` is `c` or has it in its MRO.
pub(crate) fn is_subtype(t: Raw, c: Raw) -> bool {
    t == c || type_body(t).is_some_and(|tb| tb.mro.as_slice().contains(&c))
}

/// C3 linearization of `bases` (each a type): the MRO after the new type.
fn c3(bases: &[Raw]) -> Result<Vec<Raw>> {
    let mut seqs: Vec<Vec<Raw>> = bases
        .iter()
        .map(|&b| {
            let mut s = vec![b];
            s.extend(type_body(b).map(|tb| tb.mro.as_slice().to_vec()).unwrap_or_default());
            s
        })
        .collect();
    seqs.push(bases.to_vec());
    let mut out = Vec::new();
    loop {
        seqs.retain(|s| !s.is_empty());
        if seqs.is_empty() {
            return Ok(out);
        }
        let head = seqs.iter().map(|s| s[0]).find(|&h| !seqs.iter().any(|s| s[1..].contains(&h))).ok_or_else(|| {
            let names: Vec<&str> = bases.iter().filter_map(|&b| type_body(b).map(|t| &*t.name)).collect();
            Error::TypeError {
                message: format!(
                    "Cannot create a consistent method resolution order (MRO) for bases {}",
                    names.join(", ")
                ),
            }
        })?;
        out.push(head);
        for s in &mut seqs {
            if s[0] == head {
                s.remove(0);
            }
        }
    }
}

impl<'i> Gil<'i> {
    /// The interpreter's cached type for `key`, made by `make` on first use.
    pub(crate) fn cached_type(&self, key: TypeKey, make: impl FnOnce() -> Result<Obj<'i>>) -> Result<Obj<'i>> {
        let g = *self;
        if let Some(r) = st(g, |s| if s.closing { None } else { s.types.get(&key).copied() }) {
            return Ok(Obj::from_raw_borrowed(r, g));
        }
        if st(g, |s| s.closing) {
            return Err(Error::InterpreterClosed { id: g.id() });
        }
        let t = make()?;
        // The cache keeps one reference until the interpreter closes. (`make`
        // may have made the same entry meanwhile, for a base: keep the first.)
        let r = st(g, |s| *s.types.entry(key).or_insert_with(|| t.clone().into_raw()));
        // Held by the interpreter until it closes: live with all it reaches
        // (`FLAG_ROOTED`: increments' closures stop here).
        set_flag(r, super::object::FLAG_ROOTED, true);
        Ok(Obj::from_raw_borrowed(r, g))
    }

    /// The type object `object`, the root of every MRO.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let object = g.object_type()?;
    /// let c = g.new_class("C", &[])?;
    /// assert!(c.issubclass(&object)?); // every class derives from object
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn object_type(&self) -> Result<Obj<'i>> {
        self.builtin_type(Kind::Custom)
    }

    /// The type object of a built-in kind (`int`, `list`, …, and `object`
    /// for [`Kind::Custom`]). `bool`'s base is `int`; every other built-in
    /// type's is `object`. One per interpreter, made on first use.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// use subinterp::Kind;
    /// let int = g.builtin_type(Kind::Int)?;
    /// assert!(g.int(3)?.isinstance(&int)?);
    /// assert!(g.builtin_type(Kind::Bool)?.issubclass(&int)?); // bool derives from int
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn builtin_type(&self, kind: Kind) -> Result<Obj<'i>> {
        self.cached_type(TypeKey::Builtin(kind), || {
            let name = if kind == Kind::Custom { "object" } else { kind.name() };
            let bases = match kind {
                Kind::Custom => Vec::new(),
                Kind::Bool => vec![self.builtin_type(Kind::Int)?],
                _ => vec![self.builtin_type(Kind::Custom)?],
            };
            self.make_type(name, &bases, Some(kind))
        })
    }

    /// A new class: `type(name, bases, {})`. With no bases its base is
    /// `object`. Its MRO is CPython's C3 linearization; bases that admit
    /// none are a [`Error::TypeError`] with CPython's text ("Cannot create a
    /// consistent method resolution order (MRO) for bases …").
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let animal = g.new_class("Animal", &[])?;
    ///     animal.setattr("legs", &g.int(4)?)?;
    ///     let dog = g.new_class("Dog", &[animal.clone()])?;
    ///     let rex = dog.call(&[])?; // calling a class makes an instance
    ///     assert!(rex.isinstance(&animal)?);
    ///     assert_eq!(rex.getattr("legs")?.unwrap().as_int(), Some(4)); // along the MRO
    ///     assert_eq!(rex.get_type()?.type_name(), "type");
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn new_class(&self, name: &str, bases: &[Obj<'i>]) -> Result<Obj<'i>> {
        for b in bases {
            if type_body(b.raw()).is_none() {
                return Err(Error::TypeError { message: format!("bases must be types, not '{}'", b.type_name()) });
            }
        }
        let bases = if bases.is_empty() { vec![self.object_type()?] } else { bases.to_vec() };
        self.make_type(name, &bases, None)
    }

    fn make_type(&self, name: &str, bases: &[Obj<'i>], builtin: Option<Kind>) -> Result<Obj<'i>> {
        let raws: Vec<Raw> = bases.iter().map(|b| b.raw()).collect();
        let mro = c3(&raws)?;
        let heap = self.heap();
        // The heap blocks first, before any reference is taken: a refusal
        // gives back what was taken and leaves nothing to undo.
        let mut mro_items = Items::with_capacity(SeqKind::Tuple, heap, mro.len())?;
        let mut base_items = match Items::with_capacity(SeqKind::Tuple, heap, raws.len()) {
            Ok(items) => items,
            Err(e) => {
                // SAFETY: an empty buffer of this heap (or none); GIL held.
                unsafe { mro_items.free_in(heap) };
                return Err(e);
            }
        };
        let slot = match HBox::slot_in(heap) {
            Ok(slot) => slot,
            Err(e) => {
                // SAFETY: as above.
                unsafe {
                    mro_items.free_in(heap);
                    base_items.free_in(heap);
                }
                return Err(e);
            }
        };
        for &r in &mro {
            incref(r);
            mro_items.push_within(r);
        }
        bases.iter().for_each(|b| base_items.push_within(b.clone().into_raw()));
        let t = TypeObj {
            name: name.into(),
            bases: base_items,
            mro: mro_items,
            dict: Dict::default(),
            builtin,
            keys: Items::new(SeqKind::Tuple),
        };
        self.new_obj_pub(Body::Type(slot.write(t)))
    }

    /// A new instance of `class` (a type made by [`new_class`](Self::new_class))
    /// with an empty attribute dict, without calling `__init__` (for that,
    /// call the class). A class whose MRO has a `__del__` function gives its
    /// instances that finalizer (looked up when the instance dies).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let c = g.new_class("C", &[])?;
    /// let init_ran = g.function("__init__", &[], |_, _, _| panic!("not called"))?;
    /// c.setattr("__init__", &init_ran)?;
    /// let o = g.instance_of(&c)?; // no __init__
    /// assert!(o.get_type()?.is(&c));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn instance_of(&self, class: &Obj<'i>) -> Result<Obj<'i>> {
        match type_body(class.raw()) {
            Some(t) if t.builtin.is_none() => {}
            _ => {
                return Err(Error::TypeError {
                    message: format!("instance_of needs a class, not '{}'", class.type_name()),
                })
            }
        }
        let special = mro_lookup(class.raw(), "__del__").is_some();
        let cap = instance::cap_for(type_body(class.raw()).map_or(0, |t| t.keys.len()));
        let raw =
            super::alloc_obj(*self, Body::Instance(class.clone().into_raw()), true, instance::inline_bytes(cap), &[])?;
        instance::init(raw, cap);
        let o = Obj::from_raw_owned(raw, *self);
        if special {
            set_flag(o.raw(), FLAG_SPECIAL, true);
        }
        Ok(o)
    }

    /// A new instance of the class named `class`: one class per name and
    /// interpreter, made on first use (base `object`) and kept until the
    /// interpreter closes. A shorthand for [`new_class`](Self::new_class) +
    /// [`instance_of`](Self::instance_of) where the class itself does not
    /// matter.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let a = g.instance("Point")?;
    /// let b = g.instance("Point")?;
    /// assert!(a.get_type()?.is(&b.get_type()?)); // one class per name
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn instance(&self, class: &str) -> Result<Obj<'i>> {
        let g = *self;
        if let Some(r) = st(g, |s| if s.closing { None } else { s.named_classes.get(class).copied() }) {
            return self.instance_of(&Obj::from_raw_borrowed(r, g));
        }
        if st(g, |s| s.closing) {
            return Err(Error::InterpreterClosed { id: g.id() });
        }
        let made = self.new_class(class, &[])?;
        // The map keeps one reference until the interpreter closes; held by
        // the interpreter, the class is rooted (`FLAG_ROOTED`).
        let r = st(g, |s| *s.named_classes.entry(class.into()).or_insert_with(|| made.clone().into_raw()));
        set_flag(r, super::object::FLAG_ROOTED, true);
        self.instance_of(&Obj::from_raw_borrowed(r, g))
    }

    /// The type object of an embedder type `T` (base `object`).
    pub(crate) fn custom_type(&self, name: &'static str) -> Result<Obj<'i>> {
        self.cached_type(TypeKey::Custom(name), || {
            let short = name.rsplit("::").next().unwrap_or(name);
            self.make_type(short, &[self.object_type()?], Some(Kind::Custom))
        })
    }

    /// The interpreter's one `str` object for `name` (CPython's
    /// `sys.intern`): attribute names go through it, so instances of a class
    /// share their attribute names' strings. The table holds its strings
    /// until a full collection finds one nobody else holds (interned strings
    /// are mortal, as CPython's since 3.12): a program that makes many
    /// names keeps only the live ones.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let a = g.intern("size")?;
    /// assert!(a.is(&g.intern("size")?));
    /// assert!(!a.is(&g.str("size")?)); // `str` makes a new one
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn intern(&self, name: &str) -> Result<Obj<'i>> {
        let g = *self;
        let table = match st(g, |s| s.interned) {
            Some(t) => t,
            None => {
                let t = g.dict()?;
                let r = t.clone().into_raw();
                match st(g, |s| if s.closing { None } else { Some(*s.interned.get_or_insert(r)) }) {
                    Some(first) => {
                        if first != r {
                            decref(g, r);
                        }
                        first
                    }
                    None => {
                        decref(g, r);
                        return g.str(name); // closing: no table any more
                    }
                }
            }
        };
        if let Body::Dict(d) = body(table) {
            if let Some(found) = dict_get_str(d, name) {
                return Ok(Obj::from_raw_borrowed(found, g));
            }
        }
        let s = g.str(name)?;
        Obj::from_raw_borrowed(table, g).dict_set(&s, &s)?;
        Ok(s)
    }

    /// A new module object named `name` with an empty dict of globals
    /// (`__name__` set). Usually made by an import (see
    /// [`Interpreter::import`](crate::Interpreter::import) and
    /// [`Gil::import`]).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let m = g.new_module("scratch")?;
    /// m.setattr("x", &g.int(1)?)?;
    /// assert_eq!(m.module_dict()?.len()?, 2); // __name__ and x
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn new_module(&self, name: &str) -> Result<Obj<'i>> {
        let dict = self.dict()?;
        dict.dict_set(&self.str("__name__")?, &self.str(name)?)?;
        let slot = HBox::slot_in(self.heap())?;
        let m = ModuleObj { name: name.into(), dict: dict.into_raw() };
        self.new_obj_pub(Body::Module(slot.write(m)))
    }
}

/// The attribute dict an object has of its own: a type's (inline), a
/// module's (its globals' dict object's). An instance's attributes are
/// `instance.rs`'s.
///
/// # Safety
/// As `body_mut`: no other reference into the body, no user code meanwhile.
unsafe fn own_dict_mut<'a>(r: Raw) -> Option<&'a mut Dict> {
    // SAFETY: forwarded from the caller.
    match unsafe { body_mut(r) } {
        Body::Type(t) => Some(&mut t.dict),
        Body::Module(m) => {
            let d = m.dict;
            // SAFETY: the module's dict is another object, not aliased here.
            match unsafe { body_mut(d) } {
                Body::Dict(d) => Some(d),
                _ => None,
            }
        }
        _ => None,
    }
}

pub(crate) fn own_dict<'a>(r: Raw) -> Option<&'a Dict> {
    match body(r) {
        Body::Type(t) => Some(&t.dict),
        Body::Module(m) => match body(m.dict) {
            Body::Dict(d) => Some(d),
            _ => None,
        },
        _ => None,
    }
}

impl<'i> Obj<'i> {
    /// The object's type object (`type(o)`): an instance's class, `type` for a
    /// class, a built-in type for a built-in object.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert!(g.int(1)?.get_type()?.is(&g.builtin_type(subinterp::Kind::Int)?));
    /// let c = g.new_class("C", &[])?;
    /// assert!(c.call(&[])?.get_type()?.is(&c));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn get_type(&self) -> Result<Obj<'i>> {
        let g = self.gil();
        match body(self.raw()) {
            Body::Instance(c) => Ok(Obj::from_raw_borrowed(*c, g)),
            Body::Type(_) => g.builtin_type(Kind::Type),
            Body::Custom(c) => g.custom_type(c.get().type_name()),
            _ => g.builtin_type(self.kind()),
        }
    }

    /// `isinstance(self, class)`: whether the object's type is `class` or a
    /// subclass of it. `class` must be a type (CPython's text otherwise).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let base = g.new_class("Base", &[])?;
    /// let sub = g.new_class("Sub", std::slice::from_ref(&base))?;
    /// let o = sub.call(&[])?;
    /// assert!(o.isinstance(&base)? && o.isinstance(&sub)?);
    /// assert!(o.isinstance(&g.int(1)?).is_err()); // TypeError: not a type
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn isinstance(&self, class: &Obj<'i>) -> Result<bool> {
        if type_body(class.raw()).is_none() {
            return Err(Error::TypeError {
                message: "isinstance() arg 2 must be a type, a tuple of types, or a union".into(),
            });
        }
        Ok(is_subtype(self.get_type()?.raw(), class.raw()))
    }

    /// `issubclass(self, class)`: both must be types.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let base = g.new_class("Base", &[])?;
    /// let sub = g.new_class("Sub", std::slice::from_ref(&base))?;
    /// assert!(sub.issubclass(&base)?);
    /// assert!(!base.issubclass(&sub)?);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn issubclass(&self, class: &Obj<'i>) -> Result<bool> {
        if type_body(self.raw()).is_none() {
            return Err(Error::TypeError { message: "issubclass() arg 1 must be a class".into() });
        }
        if type_body(class.raw()).is_none() {
            return Err(Error::TypeError {
                message: "issubclass() arg 2 must be a class, a tuple of classes, or a union".into(),
            });
        }
        Ok(is_subtype(self.raw(), class.raw()))
    }

    /// The MRO of a type (`cls.__mro__`): the type itself first.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let a = g.new_class("A", &[])?;
    /// let b = g.new_class("B", std::slice::from_ref(&a))?;
    /// let mro = b.mro()?;
    /// assert!(mro[0].is(&b) && mro[1].is(&a) && mro[2].is(&g.object_type()?));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn mro(&self) -> Result<Vec<Obj<'i>>> {
        let g = self.gil();
        let tb = type_body(self.raw())
            .ok_or_else(|| Error::TypeError { message: format!("'{}' object has no __mro__", self.type_name()) })?;
        Ok(std::iter::once(self.raw()).chain(tb.mro.iter().copied()).map(|r| Obj::from_raw_borrowed(r, g)).collect())
    }

    /// The name of a type (`cls.__name__`). Errors: a [`Error::TypeError`]
    /// for an object that is not a type.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.new_class("Point", &[])?.class_name()?, "Point");
    /// assert_eq!(g.object_type()?.class_name()?, "object");
    /// assert!(g.int(1)?.class_name().is_err());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn class_name(&self) -> Result<String> {
        type_body(self.raw())
            .map(|t| t.name.to_string())
            .ok_or_else(|| Error::TypeError { message: format!("'{}' object has no __name__", self.type_name()) })
    }

    /// The bases of a type (`cls.__bases__`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let a = g.new_class("A", &[])?;
    /// let b = g.new_class("B", std::slice::from_ref(&a))?;
    /// assert!(b.bases()?[0].is(&a));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn bases(&self) -> Result<Vec<Obj<'i>>> {
        let g = self.gil();
        let tb = type_body(self.raw())
            .ok_or_else(|| Error::TypeError { message: format!("'{}' object has no __bases__", self.type_name()) })?;
        Ok(tb.bases.iter().map(|&r| Obj::from_raw_borrowed(r, g)).collect())
    }

    /// The globals of a module object: its dict (`module.__dict__`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let sys = g.import("sys")?;
    /// sys.setattr("flag", &g.bool(true)?)?;
    /// assert!(sys.module_dict()?.dict_get(&g.str("flag")?)?.is_some());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn module_dict(&self) -> Result<Obj<'i>> {
        match body(self.raw()) {
            Body::Module(m) => Ok(Obj::from_raw_borrowed(m.dict, self.gil())),
            _ => Err(Error::TypeError { message: format!("module_dict needs a module, not '{}'", self.type_name()) }),
        }
    }

    /// `getattr(self, name)`, or `None` when there is no such attribute.
    ///
    /// Looked up in the object's own dict (instance, class, module), then
    /// along its type's MRO (a class: its own MRO); a function found on the
    /// type of an instance or built-in object comes back bound to it (a
    /// method: calling it passes the object first).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let c = g.new_class("C", &[])?;
    /// c.setattr("shared", &g.int(1)?)?;
    /// let o = c.call(&[])?;
    /// assert_eq!(o.getattr("shared")?.unwrap().as_int(), Some(1)); // from the class
    /// o.setattr("shared", &g.int(2)?)?;
    /// assert_eq!(o.getattr("shared")?.unwrap().as_int(), Some(2)); // its own first
    /// assert!(o.getattr("missing")?.is_none());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn getattr(&self, name: &str) -> Result<Option<Obj<'i>>> {
        if let Some(target) = proxy_target(self)? {
            return target.getattr(name);
        }
        let g = self.gil();
        let own = match body(self.raw()) {
            Body::Instance(_) => instance::get_own(self.raw(), name),
            _ => own_dict(self.raw()).and_then(|d| dict_get_str(d, name)),
        };
        if let Some(v) = own {
            return Ok(Some(Obj::from_raw_borrowed(v, g)));
        }
        match body(self.raw()) {
            Body::Type(_) => {
                return Ok(mro_lookup(self.raw(), name).map(|v| Obj::from_raw_borrowed(v, g)));
            }
            Body::Module(_) => return Ok(None),
            _ => {}
        }
        let t = self.get_type()?;
        match mro_lookup(t.raw(), name) {
            Some(v) if kind_of(v) == Kind::Function => {
                let slot = HBox::slot_in(g.heap())?;
                let m = Method { func: v, receiver: self.raw() };
                incref(v);
                incref(self.raw());
                g.new_obj_pub(Body::Method(slot.write(m))).map(Some)
            }
            Some(v) => Ok(Some(Obj::from_raw_borrowed(v, g))),
            None => Ok(None),
        }
    }

    /// `setattr(self, name, value)` on an instance, class or module.
    /// Errors: [`Error::AttributeError`] for other objects (their attributes
    /// are their type's, read-only).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let o = g.instance("Thing")?;
    /// o.setattr("size", &g.int(3)?)?;
    /// assert_eq!(o.getattr("size")?.unwrap().as_int(), Some(3));
    /// assert!(g.int(1)?.setattr("x", &g.none()?).is_err()); // AttributeError
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn setattr(&self, name: &str, value: &Obj<'i>) -> Result<()> {
        if let Some(target) = proxy_target(self)? {
            return target.setattr(name, value);
        }
        if let Body::Instance(_) = body(self.raw()) {
            return instance::set_own(self.gil(), self.raw(), name, value);
        }
        if own_dict(self.raw()).is_none() {
            return Err(self.no_attr_error(name, true));
        }
        let g = self.gil();
        let key = g.intern(name)?;
        let hash = super::object::key_hash(key.raw())?;
        let (k, v) = (key.into_raw(), value.clone().into_raw());
        // SAFETY: `set` runs no user code (the heap's limiter hook gets no
        // `Gil`); what it displaces is released after.
        let res = match unsafe { own_dict_mut(self.raw()) } {
            Some(d) => d.set(g.heap(), hash, k, v),
            None => Ok(Some((k, v))),
        };
        super::object::settle_dict_set(g, res, k, v)
    }

    /// `delattr(self, name)` on an instance, class or module. Errors:
    /// [`Error::AttributeError`] when the object has no such attribute of
    /// its own (CPython's text: `'C' object has no attribute 'x'`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let o = g.instance("Thing")?;
    /// o.setattr("size", &g.int(3)?)?;
    /// o.delattr("size")?;
    /// assert!(o.getattr("size")?.is_none());
    /// assert!(o.delattr("size").is_err()); // AttributeError, CPython's text
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn delattr(&self, name: &str) -> Result<()> {
        if let Some(target) = proxy_target(self)? {
            return target.delattr(name);
        }
        if let Body::Instance(_) = body(self.raw()) {
            return match instance::del_own(self.gil(), self.raw(), name) {
                true => Ok(()),
                false => Err(self.no_attr_error(name, false)),
            };
        }
        if own_dict(self.raw()).is_none() {
            return Err(self.no_attr_error(name, true));
        }
        // SAFETY: `remove` runs no user code; the pair is released after.
        let removed = unsafe { own_dict_mut(self.raw()) }.and_then(|d| d.remove_str(name));
        match removed {
            Some((k, v)) => {
                decref(self.gil(), k);
                decref(self.gil(), v);
                Ok(())
            }
            None => Err(self.no_attr_error(name, false)),
        }
    }

    fn no_attr_error(&self, name: &str, readonly: bool) -> Error {
        let type_name = match body(self.raw()) {
            Body::Instance(c) => type_body(*c).map(|t| t.name.to_string()).unwrap_or_default(),
            _ => self.kind().name().to_string(),
        };
        let message = match body(self.raw()) {
            Body::Type(t) => format!("type object '{}' has no attribute '{name}'", t.name),
            Body::Module(m) => format!("module '{}' has no attribute '{name}'", m.name),
            _ if readonly => format!("'{type_name}' object attribute '{name}' is read-only"),
            _ => format!("'{type_name}' object has no attribute '{name}'"),
        };
        Error::AttributeError { message }
    }
}

/// The finalizer of an instance: its own (`set_finalizer`, or the legacy
/// one), else a `__del__` function along its class's MRO.
pub(crate) fn instance_finalizer(r: Raw, legacy_too: bool) -> Option<Raw> {
    match body(r) {
        Body::Instance(c) => instance::own_finalizer(r, legacy_too)
            .or_else(|| mro_lookup(*c, "__del__").filter(|&f| kind_of(f) == Kind::Function)),
        _ => None,
    }
}

/// Calls a class (makes an instance, then `__init__(instance, *args)` if the
/// class has one) or a bound method (`func(receiver, *args)`).
pub(crate) fn call_special<'i>(o: &Obj<'i>, args: &[Obj<'i>]) -> Option<Result<Obj<'i>>> {
    let g = o.gil();
    match body(o.raw()) {
        Body::Type(t) if t.builtin.is_none() => Some((|| {
            let inst = g.instance_of(o)?;
            if let Some(init) = inst.getattr("__init__")? {
                init.call(args)?;
            }
            Ok(inst)
        })()),
        Body::Method(m) => {
            let func = Obj::from_raw_borrowed(m.func, g);
            let mut all = Vec::with_capacity(args.len() + 1);
            all.push(Obj::from_raw_borrowed(m.receiver, g));
            all.extend(args.iter().cloned());
            Some(func.call(&all))
        }
        _ => None,
    }
}

/// The referent of a weak proxy (`Ok(None)` for any other object); a dead
/// referent is [`Error::ReferenceError`].
pub(crate) fn proxy_target<'i>(o: &Obj<'i>) -> Result<Option<Obj<'i>>> {
    match body(o.raw()) {
        Body::Weakref(w) if w.proxy => match w.target {
            Some(t) => Ok(Some(Obj::from_raw_borrowed(t, o.gil()))),
            None => Err(Error::ReferenceError { message: "weakly-referenced object no longer exists".into() }),
        },
        _ => Ok(None),
    }
}

/// Whether the object hashes by identity (instances, classes, functions,
/// methods, modules, code, weakrefs, embedder objects: CPython's
/// `object.__hash__`).
pub(crate) fn hashes_by_identity(r: Raw) -> bool {
    let by_kind = matches!(
        body(r),
        Body::Instance(_)
            | Body::Type(_)
            | Body::Function(_)
            | Body::Method(_)
            | Body::Module(_)
            | Body::Code(_)
            | Body::Custom(_)
    ) || matches!(body(r), Body::Weakref(w) if !w.proxy);
    by_kind && has_flag(r, super::object::FLAG_GC)
}
