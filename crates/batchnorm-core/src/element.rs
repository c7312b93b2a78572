//! The element types the kernels accept: f32 and f64, and the 16-bit bfloat16 and float16
//! (whose parameters and statistics are f32, as in PyTorch's mixed precision), always
//! accumulated in f64.

use crate::half::{Bf16, F16};

/// Values the 16-bit formats round at a time: one AVX-512 vector, or two AVX2 ones that
/// bfloat16 packs with one instruction.
pub(crate) const BLOCK: usize = 16;

/// The vector instructions of the kernel clone a conversion is inlined into, as far as the
/// 16-bit conversions care: the kernels pass `simd!()`, a constant in each clone, so every
/// branch on it folds away.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Simd {
    /// The portable conversions (no x86 clone, or the `portable` feature).
    Portable,
    /// AVX2, FMA and F16C: float16 by F16C, bfloat16's rounding in two 8-lane vectors.
    Avx2,
    /// AVX-512 F, BW and VL besides: either format's rounding in one 16-lane vector.
    Avx512,
}

/// A floating-point element of a tensor. Arithmetic in the kernels is done in f64
/// so that f32 tensors get double-precision sums (as PyTorch's `opmath` does).
pub trait Element: Copy + Send + Sync + Default + PartialEq + std::fmt::Debug + 'static {
    /// The type of the per-channel parameters and statistics that go with a tensor of these
    /// elements: the element itself, or f32 for the 16-bit formats.
    type Param: Element;
    /// The 16-bit formats run the elementwise pass in f32, as PyTorch does: their results
    /// keep 8 or 11 significant bits, and f32 math doubles the vector width that pass has.
    /// Its results are then rounded BLOCK at a time (`narrow_block`) rather than one by one,
    /// in the vector registers the calling clone has (`Simd`).
    const F32_PASS: bool = false;
    fn to_f32(self) -> f32;
    fn from_f32(value: f32) -> Self;
    /// `to_f32`, with F16C's conversion when `simd` says the calling loop was compiled with it
    /// (float16 only; bfloat16's is a shift).
    #[inline(always)]
    fn widen(self, simd: Simd) -> f32 {
        let _ = simd;
        self.to_f32()
    }
    /// `from_f32` of BLOCK values, in the vector registers `simd` says the calling loop has.
    #[inline(always)]
    fn narrow_block(values: [f32; BLOCK], simd: Simd) -> [Self; BLOCK] {
        let _ = simd;
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
    ($t:ty, $avx2:path, $avx512:path { $($own:tt)* }) => {
        impl Element for $t {
            type Param = f32;
            const F32_PASS: bool = true;
            $($own)*
            #[inline(always)]
            fn narrow_block(values: [f32; BLOCK], simd: Simd) -> [Self; BLOCK] {
                // SAFETY (both): simd names only what the calling loop was compiled with.
                #[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
                match simd {
                    Simd::Avx512 => return unsafe { $avx512(values) },
                    Simd::Avx2 => return unsafe { $avx2(values) },
                    Simd::Portable => {}
                }
                let _ = simd;
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
// Both round BLOCK results at a time in the kernels' AVX2 and AVX-512 clones; float16 also
// widens with F16C (see half.rs).
sixteen_bit!(Bf16, crate::half::avx2::narrow16, crate::half::avx512::narrow16_bf16 {});
sixteen_bit!(F16, crate::half::f16c::narrow16, crate::half::avx512::narrow16_f16 {
    #[inline(always)]
    fn widen(self, simd: Simd) -> f32 {
        #[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
        if simd != Simd::Portable {
            // SAFETY: every x86 clone that passes Avx2 or Avx512 has F16C.
            return unsafe { crate::half::f16c::widen(self.0) };
        }
        let _ = simd;
        self.to_f32()
    }
});
