//! The element type a call's arrays hold, picked once per call (as candle's CPU backend picks
//! its dtype): f32 and f64 arrays hold themselves; a Uint16Array holds bfloat16 or float16
//! bits, as the call's `dtype` option says, with f32 parameters and statistics.

use batchnorm_core::{Bf16, Element, F16};
use napi::{Error, Result, Status};

/// Marks that T can be read from memory that holds S: the same size and alignment, and every
/// bit pattern of S a valid T.
///
/// # Safety
/// Implement only for such pairs (a type and itself, or a `repr(transparent)` u16 wrapper).
pub unsafe trait StoredAs<S> {}

// SAFETY: each type is itself; Bf16 and F16 are repr(transparent) over u16.
unsafe impl StoredAs<f32> for f32 {}
unsafe impl StoredAs<f64> for f64 {}
unsafe impl StoredAs<u16> for Bf16 {}
unsafe impl StoredAs<u16> for F16 {}

/// A job that runs once its element type is known.
pub trait RunAs<S: Storage> {
    fn run_as<T>(&self) -> Result<()>
    where
        T: Element + StoredAs<S>,
        T::Param: StoredAs<S::Param>;
}

/// What a typed array's elements may be.
pub trait Storage: Copy + Sized {
    /// The storage of the parameters and statistics that go with it.
    type Param: Copy;
    /// An element type over this storage whose fingerprint word is its bits (any will do:
    /// the checksum reads bits, not values).
    type Bits: Element + StoredAs<Self>;
    /// Runs `job` with the element type `dtype` names (None: the storage's own).
    fn dispatch<J: RunAs<Self>>(job: &J, dtype: Option<&str>) -> Result<()>;
}

fn wrong_dtype(dtype: &str, expected: &str) -> Error {
    Error::new(Status::InvalidArg, format!("dtype must be {expected} for these arrays, got {dtype:?}"))
}

macro_rules! own_storage {
    ($t:ty, $name:literal) => {
        impl Storage for $t {
            type Param = $t;
            type Bits = $t;
            fn dispatch<J: RunAs<Self>>(job: &J, dtype: Option<&str>) -> Result<()> {
                match dtype {
                    None | Some($name) => job.run_as::<$t>(),
                    Some(other) => Err(wrong_dtype(other, $name)),
                }
            }
        }
    };
}
own_storage!(f32, "float32");
own_storage!(f64, "float64");

impl Storage for u16 {
    type Param = f32;
    type Bits = Bf16;
    fn dispatch<J: RunAs<Self>>(job: &J, dtype: Option<&str>) -> Result<()> {
        match dtype {
            Some("bfloat16") => job.run_as::<Bf16>(),
            Some("float16") => job.run_as::<F16>(),
            other => Err(wrong_dtype(other.unwrap_or("none"), "'bfloat16' or 'float16'")),
        }
    }
}
