//! Borrowing JS typed arrays without copying. Every array is reduced to a memory region;
//! regions that are written must not overlap anything else (except `out` exactly on its
//! source, the documented in-place case), so the slices built from them never alias.

use batchnorm_core::Element;
use napi::bindgen_prelude::{Float32Array, Float32ArraySlice, Float64Array, Float64ArraySlice};
use napi::{Error, Result, Status};

/// A typed array the binding can borrow: its element type and raw memory.
pub trait RawArray {
    type Elem: Element;
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
