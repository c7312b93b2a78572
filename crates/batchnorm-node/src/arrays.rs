//! Borrowing JS typed arrays without copying. Every array is reduced to a memory region;
//! regions that are written must not overlap anything else (except `out` exactly on its
//! source, the documented in-place case), so the slices built from them never alias.

use napi::bindgen_prelude::{
    Env, Float32Array, Float32ArraySlice, Float64Array, Float64ArraySlice, FromNapiValue, Uint16Array, Uint16ArraySlice,
};
use napi::{Error, JsValue, Result, Status};

use crate::dtype::StoredAs;

/// A typed array the binding can borrow: its element type and raw memory.
pub trait RawArray {
    type Elem: Copy;
    /// Start pointer and element count. A detached or empty array gives length 0.
    fn region(&self) -> (*mut Self::Elem, usize);
}

macro_rules! raw_array {
    ($owned:ty, $slice:ident, $elem:ty) => {
        impl RawArray for $owned {
            type Elem = $elem;
            fn region(&self) -> (*mut $elem, usize) {
                let s: &[$elem] = self.as_ref();
                (s.as_ptr().cast_mut(), s.len())
            }
        }
        impl RawArray for $slice<'_> {
            type Elem = $elem;
            fn region(&self) -> (*mut $elem, usize) {
                let s: &[$elem] = self.as_ref();
                (s.as_ptr().cast_mut(), s.len())
            }
        }
    };
}
raw_array!(Float32Array, Float32ArraySlice, f32);
raw_array!(Float64Array, Float64ArraySlice, f64);
// The bits of bfloat16 or float16 values (see dtype.rs).
raw_array!(Uint16Array, Uint16ArraySlice, u16);

/// An argument as it stands once every argument of the call has been converted.
///
/// Converting an argument can run JS: `shape` is read element by element, so a getter in it
/// runs after the arrays before it were converted, and it may detach, transfer or shrink
/// them (and a GC may then free their memory). The pointer and length taken at conversion
/// would then be stale, so the binding reads every array again from its JS object after
/// conversion (no JS runs from there on): `reread` for the sync forms, `retain` (which also
/// takes the reference an Async task holds) for the Async ones. Other arguments pass as they are.
pub trait Settled: Sized {
    type Retained;
    fn reread(self) -> Result<Self>;
    fn retain(self, env: &Env) -> Result<Self::Retained>;
}

macro_rules! settled_array {
    ($slice:ident, $owned:ty) => {
        impl Settled for $slice<'_> {
            type Retained = $owned;
            fn reread(self) -> Result<Self> {
                let v = self.value();
                // SAFETY: v is this call's own argument, alive in the call's handle scope;
                // from_napi_value reads its current data pointer and length.
                unsafe { $slice::from_napi_value(v.env, v.value) }
            }
            fn retain(self, env: &Env) -> Result<$owned> {
                self.into_typed_array(env)
            }
        }
    };
}
settled_array!(Float32ArraySlice, Float32Array);
settled_array!(Float64ArraySlice, Float64Array);
settled_array!(Uint16ArraySlice, Uint16Array);

impl<T: Settled> Settled for Option<T> {
    type Retained = Option<T::Retained>;
    fn reread(self) -> Result<Self> {
        self.map(T::reread).transpose()
    }
    fn retain(self, env: &Env) -> Result<Self::Retained> {
        self.map(|a| a.retain(env)).transpose()
    }
}

macro_rules! settled_as_is {
    ($($t:ty),*) => {$(
        impl $crate::arrays::Settled for $t {
            type Retained = $t;
            fn reread(self) -> napi::Result<Self> {
                Ok(self)
            }
            fn retain(self, _env: &napi::Env) -> napi::Result<Self> {
                Ok(self)
            }
        }
    )*};
}
pub(crate) use settled_as_is;
settled_as_is!(f64, bool, Vec<f64>);

/// The bytes one argument of a call covers, and whether the call writes them.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: &'static str,
    pub bytes: std::ops::Range<usize>,
    pub written: bool,
}

impl Span {
    fn overlaps(&self, other: &Span) -> bool {
        let (a, b) = (&self.bytes, &other.bytes);
        !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end
    }
}

/// A named, typed region of memory one call touches.
#[derive(Clone, Copy)]
pub struct Region<T> {
    pub name: &'static str,
    pub ptr: *mut T,
    pub len: usize,
    pub written: bool,
}

impl<T> Region<T> {
    pub fn read(name: &'static str, array: &impl RawArray<Elem = T>) -> Self {
        let (ptr, len) = array.region();
        Self { name, ptr, len, written: false }
    }

    pub fn write(name: &'static str, array: &impl RawArray<Elem = T>) -> Self {
        Self { written: true, ..Self::read(name, array) }
    }

    pub fn span(&self) -> Span {
        let start = self.ptr as usize;
        Span { name: self.name, bytes: start..start + self.len * std::mem::size_of::<T>(), written: self.written }
    }

    /// The region as one of the element types its memory may hold (see `dtype::StoredAs`).
    pub fn cast<U: StoredAs<T>>(self) -> Region<U> {
        Region { name: self.name, ptr: self.ptr.cast(), len: self.len, written: self.written }
    }

    /// Same memory exactly: the one overlap allowed (`out` over its source).
    pub fn is_same(&self, other: &Region<T>) -> bool {
        self.ptr == other.ptr && self.len == other.len
    }

    /// # Safety
    /// The region must come from a live typed array and, per `check_disjoint`, not be
    /// written through any other slice while this one is alive.
    pub unsafe fn slice<'a>(&self) -> &'a [T] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr/len describe the typed array's live backing store (caller's contract).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// # Safety
    /// As for `slice`, and no other slice of this memory may be alive at the same time.
    pub unsafe fn slice_mut<'a>(&self) -> &'a mut [T] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as above; check_disjoint proved no other region overlaps a written one.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Fails when a written span overlaps any other span, except an `allowed` pair that
/// covers exactly the same bytes.
pub fn check_disjoint(spans: &[Span], allowed: (&str, &str)) -> Result<()> {
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if !(a.written || b.written) || !a.overlaps(b) {
                continue;
            }
            let names = (a.name, b.name);
            let pair_allowed = names == allowed || names == (allowed.1, allowed.0);
            if !(pair_allowed && a.bytes == b.bytes) {
                return Err(Error::new(
                    Status::InvalidArg,
                    format!("{} must not share memory with {}", b.name, a.name),
                ));
            }
        }
    }
    Ok(())
}
