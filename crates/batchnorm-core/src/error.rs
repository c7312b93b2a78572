//! Errors the core reports instead of panicking, so a binding can turn them into JS errors.

use std::fmt;

/// A caller error: the argument it names and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

/// Mirrors the JS error classes of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Wrong type: a shape that is not a list of non-negative integers.
    Type,
    /// Wrong value or size: lengths, axis, eps, momentum, too few values per channel.
    Range,
}

impl Error {
    pub fn range(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Range, message: message.into() }
    }
    pub fn type_error(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Type, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Checks that a per-element or per-channel array has the expected length.
pub(crate) fn check_len(name: &str, actual: usize, expected: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::range(format!("{name} must have length {expected}, got {actual}")))
    }
}
