//! The element types the kernels accept: f32 and f64, always accumulated in f64.

/// A floating-point element of a tensor. Arithmetic in the kernels is done in f64
/// so that f32 tensors get double-precision sums (as PyTorch's `opmath` does).
pub trait Element: Copy + Send + Sync + Default + PartialEq + std::fmt::Debug + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(value: f64) -> Self;
    /// One 32-bit word of the element's bits, for the input fingerprint: the f32 bits, or the
    /// f64 bits' halves mixed (low xor high rotated left by 13).
    fn word(self) -> u32;
}

impl Element for f32 {
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
