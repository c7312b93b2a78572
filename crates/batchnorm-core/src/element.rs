//! The element types the kernels accept: f32 and f64, and the 16-bit bfloat16 and float16
//! (whose parameters and statistics are f32, as in PyTorch's mixed precision), always
//! accumulated in f64.

use crate::half::{Bf16, F16};

/// Values the 16-bit formats round at a time: two 8-lane vectors, so bfloat16 packs them with
/// one instruction.
pub(crate) const BLOCK: usize = 16;

/// A floating-point element of a tensor. Arithmetic in the kernels is done in f64
/// so that f32 tensors get double-precision sums (as PyTorch's `opmath` does).
pub trait Element: Copy + Send + Sync + Default + PartialEq + std::fmt::Debug + 'static {
    /// The type of the per-channel parameters and statistics that go with a tensor of these
    /// elements: the element itself, or f32 for the 16-bit formats.
    type Param: Element;
    /// The 16-bit formats run the elementwise pass in f32, as PyTorch does: their results
    /// keep 8 or 11 significant bits, and f32 math doubles the vector width that pass has.
    /// Its results are then rounded BLOCK at a time (`narrow_block`) rather than one by one:
    /// in SIMD registers, float16's by F16C, bfloat16's by AVX2 integer code.
    const F32_PASS: bool = false;
    fn to_f32(self) -> f32;
    fn from_f32(value: f32) -> Self;
    /// `to_f32`, with F16C's conversion when `f16c` says the calling loop was compiled for a
    /// CPU with AVX2 and F16C (the kernels pass `has_f16c!()` from such clones); only float16
    /// has one.
    #[inline(always)]
    fn widen(self, f16c: bool) -> f32 {
        let _ = f16c;
        self.to_f32()
    }
    /// `from_f32` of BLOCK values, in AVX2 registers (F16C's conversion for float16) when
    /// `f16c` (as `widen`).
    #[inline(always)]
    fn narrow_block(values: [f32; BLOCK], f16c: bool) -> [Self; BLOCK] {
        let _ = f16c;
        narrow_each(values)
    }
    fn to_f64(self) -> f64;
    fn from_f64(value: f64) -> Self;
    /// One 32-bit word of the element's bits, for the input fingerprint: the f32 bits, or the
    /// f64 bits' halves mixed (low xor high rotated left by 13).
    fn word(self) -> u32;
}

impl Element for f32 {
    type Param = f32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(value: f32) -> Self {
        value
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value as f32
    }
    #[inline(always)]
    fn word(self) -> u32 {
        self.to_bits()
    }
}

impl Element for f64 {
    type Param = f64;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn from_f32(value: f32) -> Self {
        f64::from(value)
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value
    }
    #[inline(always)]
    fn word(self) -> u32 {
        let bits = self.to_bits();
        (bits as u32) ^ ((bits >> 32) as u32).rotate_left(13)
    }
}

/// `from_f32` of a block of values one by one. A loop, not `array::map`: its closure may stay out of
/// line, compiled without the calling loop's target features.
#[inline(always)]
fn narrow_each<T: Element>(values: [f32; BLOCK]) -> [T; BLOCK] {
    let mut out = [T::default(); BLOCK];
    for (o, &v) in out.iter_mut().zip(&values) {
        *o = T::from_f32(v);
    }
    out
}

/// The 16-bit formats: sums in f64 like the others, the elementwise pass in f32 (as PyTorch),
/// each result rounded once from f32 to 16 bits.
macro_rules! sixteen_bit {
    ($t:ty, $narrow16:path { $($own:tt)* }) => {
        impl Element for $t {
            type Param = f32;
            const F32_PASS: bool = true;
            $($own)*
            #[inline(always)]
            fn narrow_block(values: [f32; BLOCK], f16c: bool) -> [Self; BLOCK] {
                #[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
                if f16c {
                    // SAFETY: f16c is true only in loops compiled for AVX2 and F16C (see `widen`).
                    return unsafe { $narrow16(values) };
                }
                let _ = f16c;
                narrow_each(values)
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                <$t>::to_f32(self)
            }
            #[inline(always)]
            fn from_f32(value: f32) -> Self {
                <$t>::from_f32(value)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                f64::from(self.to_f32())
            }
            #[inline(always)]
            fn from_f64(value: f64) -> Self {
                <$t>::from_f32(value as f32)
            }
            #[inline(always)]
            fn word(self) -> u32 {
                u32::from(self.0)
            }
        }
    };
}
// Both round BLOCK results at a time in the kernels' AVX2 clones; float16 also widens with F16C
// (see half.rs).
sixteen_bit!(Bf16, crate::half::avx2::narrow16 {});
sixteen_bit!(F16, crate::half::f16c::narrow16 {
    #[inline(always)]
    fn widen(self, f16c: bool) -> f32 {
        #[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
        if f16c {
            // SAFETY: f16c is true only in loops compiled for AVX2 and F16C (see `widen`).
            return unsafe { crate::half::f16c::widen(self.0) };
        }
        let _ = f16c;
        self.to_f32()
    }
});
