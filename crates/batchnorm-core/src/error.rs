//! Errors the core reports instead of panicking, so a binding can turn them into JS errors.

use std::fmt;

/// A caller error: the argument it names and what was wrong with it. Every core error is
/// a wrong value or size (the binding reports each as a RangeError-like invalid argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
}

impl Error {
    pub fn range(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
