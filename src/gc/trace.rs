//! Embedder-defined object types: the [`Trace`] trait, the [`Member`] field
//! that holds a strong reference inside such a type, and the
//! [`trace_fields!`](crate::trace_fields) macro that implements `Trace`.
//!
//! # Why safe code cannot reach a freed object through a `Member`
//!
//! A `Member` is an ordinary Rust value: an embedder type with interior
//! mutability can move one out of its object (`RefCell::replace`), keep it on
//! a stack or in a thread-local, or move it into an object of another
//! interpreter. So a `Member` records the interpreter that owns the reference
//! it holds (a process-unique number, never reused), and every access checks
//! it:
//!
//! * [`Member::get`] / [`Member::set`] with a token of another interpreter
//!   are [`Error::WrongInterpreter`]; once the owner is closed no token of it
//!   exists, so a reference that outlived its interpreter is never read.
//! * The collector's [`Visitor`] and [`Cleared`] skip members owned by another
//!   interpreter, so one interpreter's collection never touches another's
//!   objects.
//! * A reference the collector does not see (a member moved out of its
//!   object, or a field left out of `trace_fields!`) only keeps its object
//!   alive longer: under-reporting leaks, it never frees a live object.
//!   Over-reporting is what would be unsound, so `trace_fields!` refuses a
//!   field named twice, and [`TraceField`] is sealed.
//! * Dropping a `Member` that still holds a reference leaks that reference
//!   (releasing it needs the owner's GIL); objects empty their members before
//!   they are freed.

use std::cell::{Cell, RefCell};

use super::object::{Obj, Raw};
use crate::error::{Error, Result};
use crate::{Gil, InterpreterId};

/// Visits the strong references of one object (handed to [`Trace::trace`]).
pub struct Visitor<'a> {
    pub(crate) f: &'a mut dyn FnMut(Raw),
    /// The collecting interpreter's unique number.
    pub(crate) uid: u64,
}

impl Visitor<'_> {
    /// Reports one strong reference (nothing for an empty member or one that
    /// belongs to another interpreter).
    ///
    /// ```
    /// use subinterp::{Cleared, Member, Runtime, RuntimeConfig, Trace, Visitor};
    ///
    /// /// What `trace_fields!` writes for you.
    /// struct Pair { a: Member, b: Member }
    /// // SAFETY: `trace` reports every member and runs no user code.
    /// unsafe impl Trace for Pair {
    ///     fn trace(&self, v: &mut Visitor<'_>) {
    ///         v.visit(&self.a);
    ///         v.visit(&self.b);
    ///     }
    ///     fn clear(&self, c: &mut Cleared<'_>) {
    ///         c.take(&self.a);
    ///         c.take(&self.b);
    ///     }
    /// }
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let p = g.new_object(Pair { a: Member::default(), b: Member::default() })?;
    ///     p.downcast_ref::<Pair>().unwrap().a.set(g, Some(&p))?; // a cycle through `a`
    ///     drop(p);
    ///     assert_eq!(g.gc_collect(2)?.collected, 1); // found by `trace`, broken by `clear`
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    #[inline]
    pub fn visit(&mut self, member: &Member) {
        if let Some(r) = member.raw.get() {
            if member.owner.get().uid == self.uid {
                (self.f)(r);
            }
        }
    }
}

/// Collects the references an object gives up in [`Trace::clear`]; the
/// collector releases them after the call returns.
pub struct Cleared<'a> {
    pub(crate) out: &'a mut Vec<Raw>,
    /// The clearing interpreter's unique number.
    pub(crate) uid: u64,
}

impl Cleared<'_> {
    /// Takes the reference out of `member` (leaving it empty) and releases it
    /// once the clear returns. A member owned by another interpreter is left
    /// as it is. (Example: [`Visitor::visit`].)
    #[inline]
    pub fn take(&mut self, member: &Member) {
        if member.owner.get().uid != self.uid {
            return;
        }
        if let Some(r) = member.raw.take() {
            self.out.push(r);
        }
    }
}

/// An object type defined by the embedder, stored with
/// [`Gil::new_object`](crate::Gil::new_object).
///
/// # Safety
/// `trace` must report every strong reference the value holds (every
/// non-empty [`Member`] reachable from it) at most once, and nothing else;
/// reporting a reference twice, or one the value does not hold, makes the
/// collector free objects that are still referenced. Leaving one out only
/// keeps its object alive (it is then freed when the interpreter closes).
/// `clear` must take every strong reference out (after it, `trace` reports
/// nothing). Neither may create, drop or release objects (no `Owned` drops,
/// no handles). A panic in `trace` is caught and the collection abandoned
/// (nothing freed); a panic in `clear` is caught and reported.
///
/// Most types use [`trace_fields!`](crate::trace_fields) instead of writing
/// this by hand.
pub unsafe trait Trace: 'static {
    /// Reports each strong reference to `visit`.
    fn trace(&self, visit: &mut Visitor<'_>);
    /// Gives up every strong reference (to break a cycle).
    fn clear(&self, cleared: &mut Cleared<'_>);
}

/// Which interpreter a member's reference belongs to.
#[derive(Clone, Copy, Default)]
struct Owner {
    /// Process-unique number of the interpreter (0: none yet).
    uid: u64,
    /// Its id, for error messages.
    id: InterpreterId,
}

/// A strong reference stored inside an embedder type (an empty slot or one
/// object of one interpreter).
///
/// ```
/// use subinterp::{trace_fields, InterpreterConfig, Member, Runtime, RuntimeConfig};
/// struct Node { next: Member }
/// trace_fields!(Node { next });
///
/// let rt = Runtime::new(RuntimeConfig::default())?;
/// let interp = rt.create(InterpreterConfig::isolated())?;
/// interp.with_gil(|g| -> subinterp::Result<()> {
///     let a = g.new_object(Node { next: Member::empty() })?;
///     let b = g.str("payload")?;
///     a.downcast_ref::<Node>().unwrap().next.set(g, Some(&b))?;
///     assert!(a.downcast_ref::<Node>().unwrap().next.get(g)?.unwrap().is(&b));
///     Ok(())
/// })??;
/// interp.close()?;
/// # Ok::<(), subinterp::Error>(())
/// ```
#[derive(Default)]
pub struct Member {
    raw: Cell<Option<Raw>>,
    owner: Cell<Owner>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("object", &self.raw.get().map(|r| r.as_ptr()))
            .field("interpreter", &self.owner.get().id)
            .finish()
    }
}

fn owner_of(g: Gil<'_>) -> Owner {
    let rec = &g.interpreter().rec;
    Owner { uid: rec.gc.uid(), id: rec.id }
}

impl Member {
    /// An empty slot.
    pub const fn empty() -> Self {
        Member { raw: Cell::new(None), owner: Cell::new(Owner { uid: 0, id: 0 }) }
    }

    fn check(&self, g: Gil<'_>) -> Result<Owner> {
        let rec = &g.interpreter().rec;
        let me = owner_of(g);
        if rec.gc.is_closing() {
            // The objects are being freed: no access, whichever token.
            return Err(Error::InterpreterClosed { id: me.id });
        }
        let owner = self.owner.get();
        if self.raw.get().is_some() && owner.uid != me.uid {
            return Err(Error::WrongInterpreter { owner: owner.id, used_with: me.id });
        }
        Ok(me)
    }

    /// Stores `value` (or empties the slot), releasing the previous reference
    /// under `g`. Errors: [`Error::WrongInterpreter`] (nothing changed) if the
    /// slot holds an object of another interpreter;
    /// [`Error::InterpreterClosed`] once `g`'s interpreter is tearing its
    /// objects down.
    ///
    /// ```
    /// # use subinterp::{trace_fields, Member, MemberVec, Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let m = Member::default();
    /// m.set(g, Some(&g.int(1)?))?;
    /// assert_eq!(m.get(g)?.unwrap().as_int(), Some(1));
    /// m.set(g, None)?; // empties it
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn set<'i>(&self, g: Gil<'i>, value: Option<&Obj<'i>>) -> Result<()> {
        let me = self.check(g)?;
        let new = value.map(|v| v.clone().into_raw());
        self.owner.set(me);
        if let Some(old) = self.raw.replace(new) {
            drop(Obj::from_raw_owned(old, g));
        }
        Ok(())
    }

    /// A new handle to the stored object, if any. Errors:
    /// [`Error::WrongInterpreter`] if it belongs to another interpreter (or
    /// one that has closed); [`Error::InterpreterClosed`] once `g`'s
    /// interpreter is tearing its objects down.
    ///
    /// ```
    /// # use subinterp::{trace_fields, Member, MemberVec, Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let m = Member::default();
    /// assert!(m.get(g)?.is_none());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn get<'i>(&self, g: Gil<'i>) -> Result<Option<Obj<'i>>> {
        self.check(g)?;
        Ok(self.raw.get().map(|r| Obj::from_raw_borrowed(r, g)))
    }

    /// Whether the slot is empty.
    ///
    /// ```
    /// # use subinterp::{trace_fields, Member, MemberVec, Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let m = Member::default();
    /// assert!(m.is_empty());
    /// m.set(g, Some(&g.none()?))?;
    /// assert!(!m.is_empty());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.raw.get().is_none()
    }
}

/// A growable list of strong references inside an embedder type.
#[derive(Default, Debug)]
pub struct MemberVec(RefCell<Vec<Member>>);

impl MemberVec {
    /// An empty list.
    ///
    /// ```
    /// # use subinterp::{trace_fields, Member, MemberVec, Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let v = MemberVec::new();
    /// assert!(v.is_empty());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a strong reference to `value`.
    ///
    /// ```
    /// # use subinterp::{trace_fields, Member, MemberVec, Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let v = MemberVec::new();
    /// v.push(&g.int(1)?);
    /// assert_eq!(v.len(), 1);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn push(&self, value: &Obj<'_>) {
        let m = Member::empty();
        m.owner.set(owner_of(value.gil()));
        m.raw.set(Some(value.clone().into_raw()));
        self.0.borrow_mut().push(m);
    }

    /// The `i`-th object (`Ok(None)` past the end). Errors:
    /// [`Error::WrongInterpreter`] if it belongs to another interpreter.
    ///
    /// ```
    /// # use subinterp::{trace_fields, Member, MemberVec, Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let v = MemberVec::new();
    /// v.push(&g.str("a")?);
    /// assert_eq!(v.get(g, 0)?.unwrap().as_str(), Some("a"));
    /// assert!(v.get(g, 1)?.is_none());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn get<'i>(&self, g: Gil<'i>, i: usize) -> Result<Option<Obj<'i>>> {
        match self.0.borrow().get(i) {
            Some(m) => m.get(g),
            None => Ok(None),
        }
    }

    /// The number of slots.
    ///
    /// ```
    /// # use subinterp::{trace_fields, Member, MemberVec, Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let v = MemberVec::new();
    /// v.push(&g.none()?);
    /// v.push(&g.none()?);
    /// assert_eq!(v.len(), 2);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Whether there are no slots.
    ///
    /// ```
    /// # use subinterp::{trace_fields, Member, MemberVec, Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert!(MemberVec::new().is_empty());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Member {}
    impl Sealed for super::MemberVec {}
}

/// A field kind that [`trace_fields!`](crate::trace_fields) knows how to trace
/// and clear: [`Member`] and [`MemberVec`] (sealed: a wrong implementation
/// would make the safe macro unsound).
pub trait TraceField: sealed::Sealed {
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
        // A `Trace::trace` cannot run user code, so the borrow cannot clash;
        // if it somehow does (a hand-written trace inside a borrow), the
        // references are under-reported, which only keeps objects alive.
        if let Ok(v) = self.0.try_borrow() {
            for m in v.iter() {
                visit.visit(m);
            }
        }
    }
    fn clear_field(&self, cleared: &mut Cleared<'_>) {
        if let Ok(mut v) = self.0.try_borrow_mut() {
            for m in v.iter() {
                cleared.take(m);
            }
            // Members of another interpreter stay (they cannot be released here).
            v.retain(|m| !m.is_empty());
        }
    }
}

/// Implements [`Trace`] for a struct from the list of its reference-holding
/// fields (each a [`Member`] or a [`MemberVec`]); other fields must hold no
/// object references (a reference the list leaves out is never freed before
/// the interpreter closes). Naming a field twice is a compile error.
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
        // SAFETY: each listed field is a `Member`/`MemberVec` (the sealed
        // `TraceField`), visited once: the pattern below refuses a field named
        // twice. Unlisted references are under-reported, which only leaks.
        unsafe impl $crate::Trace for $ty {
            #[allow(unused_variables)]
            fn trace(&self, visit: &mut $crate::Visitor<'_>) {
                #[allow(clippy::unneeded_field_pattern)]
                let Self { $($field: _,)* .. } = self;
                $( $crate::TraceField::trace_field(&self.$field, visit); )*
            }
            #[allow(unused_variables)]
            fn clear(&self, cleared: &mut $crate::Cleared<'_>) {
                $( $crate::TraceField::clear_field(&self.$field, cleared); )*
            }
        }
    };
}
