//! `Module`: one interpreter's instance of a module.

use std::any::Any;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::def::ModuleDef;
use super::ModuleValue;
use crate::error::{Error, Result};
use crate::sync::{lock, Mutex};
use crate::InterpreterId;

/// Attributes; `None` once the owning interpreter tore the module down.
type Attrs = Option<BTreeMap<Box<str>, ModuleValue>>;

/// One interpreter's instance of a module: its name, definition, native state
/// and attributes. A cheap `Send + Sync` handle (an `Arc`); clones name the
/// same instance, and `==` compares identity.
///
/// The native state is immutable after init and lives as long as any handle
/// to the module (interior mutability, if needed, is the state type's own:
/// atomics, locks). Native attributes are a name → value map of shareable
/// Rust values, readable from any thread; the module's heap object (its
/// globals, which hold objects) is [`Gil::module_object`](crate::Gil::module_object)
/// or [`Gil::import`](crate::Gil::import). When the owning
/// interpreter closes, the module is dropped from its tables and its
/// attributes are cleared (breaking reference cycles through them); handles
/// kept elsewhere still reach the state.
#[derive(Clone)]
pub struct Module {
    inner: Arc<Inner>,
}

struct Inner {
    name: Cow<'static, str>,
    def: Option<&'static ModuleDef>,
    interp: InterpreterId,
    state: Option<ModuleValue>,
    attrs: Mutex<Attrs>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name())
            .field("interpreter", &self.inner.interp)
            .field("index", &self.def().and_then(ModuleDef::index))
            .field("has_state", &self.inner.state.is_some())
            .finish()
    }
}

impl PartialEq for Module {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for Module {}

impl Module {
    pub(crate) fn new(
        name: Cow<'static, str>,
        def: Option<&'static ModuleDef>,
        interp: InterpreterId,
        state: Option<ModuleValue>,
        attrs: BTreeMap<Box<str>, ModuleValue>,
    ) -> Self {
        Self { inner: Arc::new(Inner { name, def, interp, state, attrs: Mutex::new(Some(attrs)) }) }
    }

    /// `builtins` or `sys`: no definition, no state.
    pub(crate) fn core(name: &'static str, interp: InterpreterId) -> Self {
        Self::new(Cow::Borrowed(name), None, interp, None, BTreeMap::new())
    }

    /// The name it was imported under.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its definition; `None` for the two core modules, `builtins` and `sys`.
    pub fn def(&self) -> Option<&'static ModuleDef> {
        self.inner.def
    }

    /// The definition's doc string, if any.
    pub fn doc(&self) -> Option<&'static str> {
        self.inner.def.and_then(ModuleDef::doc)
    }

    /// The interpreter it belongs to.
    pub fn interpreter_id(&self) -> InterpreterId {
        self.inner.interp
    }

    /// The native state, if init set one of type `T`.
    #[inline]
    pub fn state<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.inner.state.as_deref()?.downcast_ref::<T>()
    }

    /// The native state as a shared handle, if init set one of type `T`.
    pub fn state_arc<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.inner.state.clone()?.downcast::<T>().ok()
    }

    /// The native state, untyped.
    pub fn state_any(&self) -> Option<&ModuleValue> {
        self.inner.state.as_ref()
    }

    /// The attribute `name`, if set.
    pub fn get_attr(&self, name: &str) -> Option<ModuleValue> {
        lock(&self.inner.attrs).as_ref()?.get(name).cloned()
    }

    /// Sets the attribute `name`; returns the value it replaced.
    ///
    /// Errors: [`Error::InterpreterClosed`] once the owning interpreter has
    /// closed (its modules' attributes are cleared then and stay empty).
    pub fn set_attr(&self, name: &str, value: ModuleValue) -> Result<Option<ModuleValue>> {
        let mut attrs = lock(&self.inner.attrs);
        match attrs.as_mut() {
            Some(map) => Ok(map.insert(name.into(), value)),
            None => Err(Error::InterpreterClosed { id: self.inner.interp }),
        }
    }

    /// Removes the attribute `name`; returns its value.
    pub fn del_attr(&self, name: &str) -> Option<ModuleValue> {
        lock(&self.inner.attrs).as_mut()?.remove(name)
    }

    /// The attribute names, sorted.
    pub fn attr_names(&self) -> Vec<String> {
        lock(&self.inner.attrs).as_ref().map(|m| m.keys().map(|k| k.to_string()).collect()).unwrap_or_default()
    }

    /// Teardown: clears the attributes for good. Returns them so that the
    /// caller drops them (user code) outside the lock.
    pub(crate) fn release_attrs(&self) -> Attrs {
        lock(&self.inner.attrs).take()
    }
}

/// A weak handle to a module: names it without keeping its state alive
/// (the heap object table of `gc::modules` holds these). While it lives the
/// module's allocation does, so its identity cannot be taken by another.
pub(crate) struct WeakModule {
    inner: std::sync::Weak<Inner>,
}

impl Module {
    pub(crate) fn downgrade(&self) -> WeakModule {
        WeakModule { inner: Arc::downgrade(&self.inner) }
    }
}

impl WeakModule {
    /// Whether this names `module`.
    pub(crate) fn is(&self, module: &Module) -> bool {
        std::ptr::eq(self.inner.as_ptr(), Arc::as_ptr(&module.inner))
    }

    /// The module, unless every handle to it is gone.
    pub(crate) fn upgrade(&self) -> Option<Module> {
        self.inner.upgrade().map(|inner| Module { inner })
    }
}
