//! Embedder-defined object types: the [`Trace`] trait, the [`Member`] field
//! that holds a strong reference inside such a type, and the
//! [`trace_fields!`](crate::trace_fields) macro that implements `Trace`.

use std::cell::{Cell, RefCell};

use super::object::{Obj, Raw};
use crate::Gil;

/// Visits the strong references of one object (handed to [`Trace::trace`]).
pub struct Visitor<'a> {
    pub(crate) f: &'a mut dyn FnMut(Raw),
}

impl Visitor<'_> {
    /// Reports one strong reference.
    #[inline]
    pub fn visit(&mut self, member: &Member) {
        if let Some(r) = member.0.get() {
            (self.f)(r);
        }
    }
}

/// Collects the references an object gives up in [`Trace::clear`]; the
/// collector releases them after the call returns.
pub struct Cleared<'a> {
    pub(crate) out: &'a mut Vec<Raw>,
}

impl Cleared<'_> {
    /// Takes the reference out of `member` (leaving it empty) and releases it
    /// once the clear returns.
    #[inline]
    pub fn take(&mut self, member: &Member) {
        if let Some(r) = member.0.take() {
            self.out.push(r);
        }
    }
}

/// An object type defined by the embedder, stored with
/// [`Gil::new_object`](crate::Gil::new_object).
///
/// # Safety
/// `trace` must report every strong reference the value holds (every
/// non-empty [`Member`] reachable from it) exactly once, and nothing else; it
/// must not panic (a panic is caught and the collection is abandoned, leaving
/// the heap unchanged, but the object's cycles are then never collected).
/// `clear` must take every strong reference out (after it, `trace` reports
/// nothing). Neither may create or drop objects. A wrong `trace` makes the
/// collector free objects that are still referenced.
///
/// Most types use [`trace_fields!`](crate::trace_fields) instead of writing
/// this by hand.
pub unsafe trait Trace: 'static {
    /// Reports each strong reference to `visit`.
    fn trace(&self, visit: &mut Visitor<'_>);
    /// Gives up every strong reference (to break a cycle).
    fn clear(&self, cleared: &mut Cleared<'_>);
}

/// A strong reference stored inside an embedder type (an empty slot or one
/// object). Dropping a `Member` that still holds a reference leaks that
/// reference (it cannot release it without the GIL); the collector's clear and
/// the object's deallocation empty it first.
#[derive(Default)]
pub struct Member(Cell<Option<Raw>>);

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Member").field(&self.0.get().map(|r| r.as_ptr())).finish()
    }
}

impl Member {
    /// An empty slot.
    pub const fn empty() -> Self {
        Member(Cell::new(None))
    }

    /// Stores `value` (or empties the slot), releasing the previous reference
    /// under `g`.
    pub fn set<'i>(&self, g: Gil<'i>, value: Option<&Obj<'i>>) {
        let new = value.map(|v| v.clone().into_raw());
        if let Some(old) = self.0.replace(new) {
            drop(Obj::from_raw_owned(old, g));
        }
    }

    /// A new handle to the stored object, if any.
    pub fn get<'i>(&self, g: Gil<'i>) -> Option<Obj<'i>> {
        self.0.get().map(|r| Obj::from_raw_borrowed(r, g))
    }

    /// Whether the slot is empty.
    pub fn is_empty(&self) -> bool {
        self.0.get().is_none()
    }
}

/// A growable list of strong references inside an embedder type.
#[derive(Default, Debug)]
pub struct MemberVec(RefCell<Vec<Member>>);

impl MemberVec {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a strong reference to `value`.
    pub fn push(&self, value: &Obj<'_>) {
        let m = Member::empty();
        m.0.set(Some(value.clone().into_raw()));
        self.0.borrow_mut().push(m);
    }
    /// The `i`-th object.
    pub fn get<'i>(&self, g: Gil<'i>, i: usize) -> Option<Obj<'i>> {
        self.0.borrow().get(i).and_then(|m| m.get(g))
    }
    /// The number of slots.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }
    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A field kind that [`trace_fields!`](crate::trace_fields) knows how to trace
/// and clear.
pub trait TraceField {
    /// Reports the field's references.
    fn trace_field(&self, visit: &mut Visitor<'_>);
    /// Takes the field's references out.
    fn clear_field(&self, cleared: &mut Cleared<'_>);
}

impl TraceField for Member {
    fn trace_field(&self, visit: &mut Visitor<'_>) {
        visit.visit(self);
    }
    fn clear_field(&self, cleared: &mut Cleared<'_>) {
        cleared.take(self);
    }
}

impl TraceField for MemberVec {
    fn trace_field(&self, visit: &mut Visitor<'_>) {
        for m in self.0.borrow().iter() {
            visit.visit(m);
        }
    }
    fn clear_field(&self, cleared: &mut Cleared<'_>) {
        for m in self.0.borrow_mut().drain(..) {
            cleared.take(&m);
        }
    }
}

/// Implements [`Trace`] for a struct from the list of its reference-holding
/// fields (each a [`Member`] or a [`MemberVec`]); other fields are plain data
/// and must hold no object references.
///
/// ```
/// use subinterp::{trace_fields, Member};
/// struct Node { label: u32, next: Member }
/// trace_fields!(Node { next });
/// struct Leaf { value: f64 }
/// trace_fields!(Leaf {});
/// ```
#[macro_export]
macro_rules! trace_fields {
    ($ty:ty { $($field:ident),* $(,)? }) => {
        // SAFETY: every reference-holding field is listed (the macro's
        // contract), and `TraceField` visits / takes each exactly once.
        unsafe impl $crate::Trace for $ty {
            #[allow(unused_variables)]
            fn trace(&self, visit: &mut $crate::Visitor<'_>) {
                $( $crate::TraceField::trace_field(&self.$field, visit); )*
            }
            #[allow(unused_variables)]
            fn clear(&self, cleared: &mut $crate::Cleared<'_>) {
                $( $crate::TraceField::clear_field(&self.$field, cleared); )*
            }
        }
    };
}
