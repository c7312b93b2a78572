//! The 16-bit storage formats, bfloat16 and float16 (IEEE binary16), each a u16 of bits. They
//! widen to f32 exactly and narrow from f32 with round-to-nearest-even, subnormals kept, NaN as
//! PyTorch's scalar conversions give it (bfloat16 0x7FC0; float16 0x7E00 with the sign). Every
//! conversion is branch-free integer and f32 code, so the kernels' loops vectorize over it.

/// A bfloat16 value: the high half of an f32's bits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct Bf16(pub u16);

/// A float16 (IEEE 754 binary16) value.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct F16(pub u16);

impl Bf16 {
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        f32::from_bits(u32::from(self.0) << 16)
    }

    #[inline(always)]
    pub fn from_f32(v: f32) -> Self {
        let bits = v.to_bits();
        // Adding 0x7FFF plus the kept half's lowest bit rounds half to even.
        let rounded = (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16;
        Bf16(if v.is_nan() { 0x7FC0 } else { rounded })
    }
}

/// f32 bits of 2^-24, the value of float16's lowest subnormal bit.
const F16_SUBNORMAL_UNIT: u32 = 0x3380_0000;
/// f32 bits of 2^-14, float16's smallest normal value.
const F16_MIN_NORMAL: u32 = 0x3880_0000;
/// f32 bits of 65536: from here on float16 overflows to infinity, whatever the rounding.
const F16_OVERFLOW: u32 = 0x4780_0000;
/// The exponent bias difference, f32's 127 less float16's 15, in f32's exponent field.
const REBIAS: u32 = 112 << 23;

impl F16 {
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        let h = u32::from(self.0);
        let sign = (h & 0x8000) << 16;
        let magnitude = h & 0x7FFF;
        let normal = (magnitude << 13) + REBIAS;
        // A subnormal (or zero) is its mantissa times 2^-24: exact in f32.
        let subnormal = (magnitude as f32 * f32::from_bits(F16_SUBNORMAL_UNIT)).to_bits();
        // Infinity and NaN keep their mantissa (so a quiet NaN stays quiet).
        let special = (magnitude << 13) | 0x7F80_0000;
        let bits = if magnitude >= 0x7C00 {
            special
        } else if magnitude < 0x0400 {
            subnormal
        } else {
            normal
        };
        f32::from_bits(bits | sign)
    }

    #[inline(always)]
    pub fn from_f32(v: f32) -> Self {
        let bits = v.to_bits();
        let sign = ((bits >> 16) & 0x8000) as u16;
        let magnitude = bits & 0x7FFF_FFFF;
        // Normal results: rebias, then round the 13 dropped bits half to even (a carry out of
        // the mantissa raises the exponent, up to infinity, as it should).
        let rebiased = magnitude.wrapping_sub(REBIAS);
        let normal = rebiased.wrapping_add(0xFFF + ((rebiased >> 13) & 1)) >> 13;
        // Subnormal results: adding 0.5 (whose f32 unit is 2^-24) makes the FPU round to the
        // subnormal grid; what is left above 0.5 is the mantissa.
        let subnormal = (f32::from_bits(magnitude) + 0.5).to_bits().wrapping_sub(0x3F00_0000);
        let overflow = if magnitude > 0x7F80_0000 { 0x7E00 } else { 0x7C00 };
        let result = if magnitude >= F16_OVERFLOW {
            overflow
        } else if magnitude < F16_MIN_NORMAL {
            subnormal
        } else {
            normal
        };
        F16(result as u16 | sign)
    }
}

/// bfloat16's rounding of 16 values in AVX2 registers, as `Bf16::from_f32` does it. Called
/// from `#[inline(always)]` code, it is inlined only into loops compiled with AVX2 enabled;
/// elsewhere the branch that calls it is compiled out (see `Element::narrow_block`).
#[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// Rounds the 8 values at `p` as `Bf16::from_f32`, each in the high half of its 32-bit lane.
    ///
    /// # Safety
    /// The CPU has AVX2; `p` points to 8 readable f32.
    #[inline(always)]
    unsafe fn rounded(p: *const f32) -> __m256i {
        // SAFETY: the caller's promise (unaligned load).
        unsafe {
            let v = _mm256_loadu_ps(p);
            let bits = _mm256_castps_si256(v);
            // Adding 0x7FFF plus the kept half's lowest bit rounds half to even.
            let odd = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
            let r = _mm256_srli_epi32::<16>(_mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))));
            let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
            _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan)
        }
    }

    /// # Safety
    /// The CPU has AVX2.
    #[inline(always)]
    pub(crate) unsafe fn narrow16(values: [f32; 16]) -> [super::Bf16; 16] {
        // SAFETY: the caller's promise; values holds 16 f32.
        unsafe {
            let (low, high) = (rounded(values.as_ptr()), rounded(values.as_ptr().add(8)));
            // Every lane is below 2^16, so the saturating pack is exact; it interleaves the two
            // by 128-bit lane, which the permute puts back in order.
            let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(low, high));
            // Bf16 is a repr(transparent) u16: 16 of them are the vector's 32 bytes.
            std::mem::transmute::<__m256i, [super::Bf16; 16]>(packed)
        }
    }
}

/// F16C's conversions. Called from `#[inline(always)]` code, they are inlined only into loops
/// compiled with F16C enabled; elsewhere the branch that calls them is compiled out.
#[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
pub(crate) mod f16c {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has F16C.
    #[inline(always)]
    pub(crate) unsafe fn widen(h: u16) -> f32 {
        // SAFETY: the caller's promise; the rest is SSE2, part of the x86-64 baseline.
        unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h)))) }
    }

    /// 0x7E00 with each lane's sign: `F16::from_f32`'s NaN, for the lanes that are one.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[inline(always)]
    pub(crate) unsafe fn quiet_nan(h: __m256i) -> __m256i {
        // SAFETY: the caller's promise.
        unsafe { _mm256_or_si256(_mm256_and_si256(h, _mm256_set1_epi16(i16::MIN)), _mm256_set1_epi16(0x7E00)) }
    }

    /// Round to nearest even (the instruction's immediate 0), subnormals kept; a NaN becomes
    /// 0x7E00 with its sign, as `F16::from_f32` gives it (the instruction keeps the payload).
    ///
    /// # Safety
    /// The CPU has F16C and AVX2.
    #[inline(always)]
    pub(crate) unsafe fn narrow16(values: [f32; 16]) -> [super::F16; 16] {
        // SAFETY: the caller's promise; values holds 16 f32 (unaligned loads).
        unsafe {
            let low = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(values.as_ptr()));
            let high = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(values.as_ptr().add(8)));
            let h = _mm256_set_m128i(high, low);
            let nan = _mm256_cmpgt_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7FFF)), _mm256_set1_epi16(0x7C00));
            let r = _mm256_blendv_epi8(h, quiet_nan(h), nan);
            // F16 is a repr(transparent) u16: 16 of them are the vector's 32 bytes.
            std::mem::transmute::<__m256i, [super::F16; 16]>(r)
        }
    }
}

/// AVX-512's roundings of 16 values, one vector each: no packing across 128-bit lanes, and the
/// NaN fix-up through a compare mask. Inlined only into the kernels' AVX-512 clones, as above.
#[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// `Bf16::from_f32` of each value.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VL.
    #[inline(always)]
    pub(crate) unsafe fn narrow16_bf16(values: [f32; 16]) -> [super::Bf16; 16] {
        // SAFETY: the caller's promise; values holds 16 f32 (unaligned load).
        unsafe {
            let v = _mm512_loadu_ps(values.as_ptr());
            let bits = _mm512_castps_si512(v);
            // Adding 0x7FFF plus the kept half's lowest bit rounds half to even.
            let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
            let sum = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            let r = _mm512_mask_mov_epi32(_mm512_srli_epi32::<16>(sum), nan, _mm512_set1_epi32(0x7FC0));
            // Every lane is below 2^16: the truncating narrow is exact.
            std::mem::transmute::<__m256i, [super::Bf16; 16]>(_mm512_cvtepi32_epi16(r))
        }
    }

    /// `F16::from_f32` of each value: F16C's instruction at 16 lanes, NaN as `f16c::narrow16`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VL.
    #[inline(always)]
    pub(crate) unsafe fn narrow16_f16(values: [f32; 16]) -> [super::F16; 16] {
        // SAFETY: the caller's promise; values holds 16 f32 (unaligned load).
        unsafe {
            let v = _mm512_loadu_ps(values.as_ptr());
            let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            let r = _mm256_mask_blend_epi16(nan, h, super::f16c::quiet_nan(h));
            std::mem::transmute::<__m256i, [super::F16; 16]>(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Element;

    /// float16's value by its definition, for checking the bit tricks.
    fn f16_by_definition(h: u16) -> f32 {
        let sign = if h & 0x8000 != 0 { -1.0f64 } else { 1.0 };
        let (e, m) = (i32::from((h >> 10) & 0x1F), f64::from(h & 0x3FF));
        let v = match e {
            0 => m * 2f64.powi(-24),
            31 if m == 0.0 => f64::INFINITY,
            31 => f64::NAN,
            _ => (1.0 + m / 1024.0) * 2f64.powi(e - 15),
        };
        (sign * v) as f32
    }

    #[test]
    fn every_float16_widens_to_its_value() {
        for h in 0..=u16::MAX {
            let (got, want) = (F16(h).to_f32(), f16_by_definition(h));
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{h:#06x}: {got} != {want}");
        }
    }

    /// Narrowing each 16-bit value's f32 gives it back; each midpoint between neighbours rounds
    /// to the even one, and the f32 just either side of it to the nearer one.
    fn check_round_trip_and_midpoints(widen: impl Fn(u16) -> f32, narrow: impl Fn(f32) -> u16) {
        for h in 0..=u16::MAX {
            let v = widen(h);
            if v.is_nan() {
                assert!(widen(narrow(v)).is_nan(), "{h:#06x}: NaN must stay NaN");
                continue;
            }
            assert_eq!(narrow(v), h, "{h:#06x} round trip");
            let next = h.wrapping_add(1);
            let w = widen(next);
            if next & 0x7FFF == 0 || w.is_nan() || v.is_infinite() || w.is_infinite() {
                continue;
            }
            let mid = ((f64::from(v) + f64::from(w)) / 2.0) as f32;
            assert_eq!(f64::from(mid), (f64::from(v) + f64::from(w)) / 2.0, "midpoint exact in f32");
            let even = if h & 1 == 0 { h } else { next };
            assert_eq!(narrow(mid), even, "{h:#06x} midpoint to even");
            let toward_h = f32::from_bits(if mid.abs() > v.abs() { mid.to_bits() - 1 } else { mid.to_bits() + 1 });
            let toward_next = f32::from_bits(if mid.abs() > v.abs() { mid.to_bits() + 1 } else { mid.to_bits() - 1 });
            assert_eq!(narrow(toward_h), h, "{h:#06x} below midpoint");
            assert_eq!(narrow(toward_next), next, "{h:#06x} above midpoint");
        }
    }

    #[test]
    fn float16_rounds_to_nearest_even() {
        check_round_trip_and_midpoints(|h| F16(h).to_f32(), |v| F16::from_f32(v).0);
        assert_eq!(F16::from_f32(65520.0).0, 0x7C00, "the midpoint above 65504 rounds to infinity");
        assert_eq!(F16::from_f32(65519.99).0, 0x7BFF);
        assert_eq!(F16::from_f32(1e10).0, 0x7C00);
        assert_eq!(F16::from_f32(-f32::INFINITY).0, 0xFC00);
        assert_eq!(F16::from_f32(f32::NAN).0, 0x7E00);
        assert_eq!(F16::from_f32(-f32::NAN).0, 0xFE00);
        assert_eq!(F16::from_f32(f32::from_bits(1)).0, 0, "f32 subnormals underflow to zero");
        assert_eq!(F16::from_f32(2.9802322e-8).0, 0, "half the lowest subnormal rounds to even, 0");
        assert_eq!(F16::from_f32(2.9802326e-8).0, 1);
    }

    /// The vector conversions this CPU runs, as the kernels' clones would pass them.
    #[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
    fn vector_conversions() -> Vec<crate::element::Simd> {
        use crate::element::Simd;
        use std::arch::is_x86_feature_detected as has;
        let mut levels = Vec::new();
        if has!("avx2") && has!("fma") && has!("f16c") {
            levels.push(Simd::Avx2);
            if has!("avx512f") && has!("avx512bw") && has!("avx512vl") {
                levels.push(Simd::Avx512);
            }
        }
        levels
    }

    #[cfg(not(all(target_arch = "x86_64", not(miri), not(feature = "portable"))))]
    fn vector_conversions() -> Vec<crate::element::Simd> {
        Vec::new()
    }

    /// The vector float16 conversions (F16C, AVX-512) against the portable ones: every float16, and the midpoints and
    /// their neighbours, NaNs (any payload) and the subnormal and overflow edges.
    #[test]
    fn vector_float16_conversions_match_the_portable_ones() {
        for simd in vector_conversions() {
            for h in 0..=u16::MAX {
                let (got, want) = (Element::widen(F16(h), simd), F16(h).to_f32());
                assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{h:#06x}");
            }
            let mut values: Vec<f32> = (0..=u16::MAX).map(|h| F16(h).to_f32()).collect();
            for h in 0..u16::MAX {
                let (v, w) = (F16(h).to_f32(), F16(h + 1).to_f32());
                if v.is_finite() && w.is_finite() {
                    let mid = ((f64::from(v) + f64::from(w)) / 2.0) as f32;
                    values.extend([
                        mid,
                        f32::from_bits(mid.to_bits() + 1),
                        f32::from_bits(mid.to_bits().wrapping_sub(1)),
                    ]);
                }
            }
            values.extend([65504.0, 65519.99, 65520.0, 1e10, f32::MAX, f32::from_bits(1), 2.9802322e-8, 2.9802326e-8]);
            values.extend([f32::NAN, -f32::NAN, f32::from_bits(0x7F80_0001), f32::from_bits(0xFFC0_1234)]);
            for block in values.chunks(16) {
                let mut v = [0.0f32; 16];
                v[..block.len()].copy_from_slice(block);
                let (got, want) = (<F16 as Element>::narrow_block(v, simd), v.map(F16::from_f32));
                assert_eq!(got, want, "{simd:?} {v:?}");
            }
        }
    }

    /// The AVX2 and AVX-512 roundings of bfloat16 against the portable one: every bfloat16's value, the
    /// midpoints and their neighbours, NaNs, infinities, subnormals and random patterns.
    #[test]
    fn vector_bfloat16_rounding_matches_the_portable_one() {
        for simd in vector_conversions() {
            let mut values: Vec<f32> = Vec::new();
            for h in 0..=u16::MAX {
                let v = u32::from(h) << 16;
                values.extend([v, v | 0x7FFF, v | 0x8000, v | 0x8001, v | 0xFFFF].map(f32::from_bits));
            }
            let mut s = 0x9E37_79B9u32;
            for _ in 0..100_000 {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                values.push(f32::from_bits(s));
            }
            for block in values.chunks(16) {
                let mut v = [0.0f32; 16];
                v[..block.len()].copy_from_slice(block);
                let want = v.map(Bf16::from_f32);
                assert_eq!(<Bf16 as Element>::narrow_block(v, simd), want, "{simd:?} {:?}", v.map(f32::to_bits));
            }
        }
    }

    #[test]
    fn bfloat16_rounds_to_nearest_even() {
        check_round_trip_and_midpoints(|h| Bf16(h).to_f32(), |v| Bf16::from_f32(v).0);
        assert_eq!(Bf16::from_f32(f32::NAN).0, 0x7FC0);
        assert_eq!(Bf16::from_f32(f32::MAX).0, 0x7F80, "rounds up to infinity");
        assert_eq!(Bf16::from_f32(f32::from_bits(1)).0, 0, "subnormals kept: the lowest rounds to 0");
        assert_eq!(Bf16::from_f32(f32::from_bits(0x0001_8000)).0, 0x0002, "a subnormal midpoint to even");
    }
}
