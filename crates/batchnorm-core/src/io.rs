//! Elementwise passes read one array and write another, or rewrite one array in place
//! (`out === x`). These types keep both cases safe without aliasing a `&` and a `&mut`.

use std::ops::Range;

use crate::element::Element;
use crate::pool::Exec;

/// The source and destination of an elementwise pass.
pub enum Io<'a, T> {
    Separate { src: &'a [T], dst: &'a mut [T] },
    InPlace(&'a mut [T]),
}

impl<'a, T: Element> Io<'a, T> {
    pub fn src_len(&self) -> usize {
        match self {
            Io::Separate { src, .. } => src.len(),
            Io::InPlace(dst) => dst.len(),
        }
    }

    pub fn dst_len(&self) -> usize {
        match self {
            Io::Separate { dst, .. } => dst.len(),
            Io::InPlace(dst) => dst.len(),
        }
    }

    /// The source, for the read-only passes that come before the write.
    pub fn src(&self) -> &[T] {
        match self {
            Io::Separate { src, .. } => src,
            Io::InPlace(dst) => dst,
        }
    }

    /// The elements `range` of both arrays: one group of a ghost batch.
    pub(crate) fn part(&mut self, range: Range<usize>) -> Io<'_, T> {
        match self {
            Io::Separate { src, dst } => Io::Separate { src: &src[range.clone()], dst: &mut dst[range] },
            Io::InPlace(dst) => Io::InPlace(&mut dst[range]),
        }
    }

    /// Calls `f(start, chunk)` over chunks of `chunk_len` elements, in parallel when allowed.
    pub(crate) fn for_each_chunk(self, exec: Exec, chunk_len: usize, f: impl Fn(usize, Chunk<'_, T>) + Sync + Send) {
        match self {
            Io::Separate { src, dst } => exec.for_each_chunk_mut(dst, chunk_len, |start, d| {
                f(start, Chunk::Separate(&src[start..start + d.len()], d))
            }),
            Io::InPlace(dst) => exec.for_each_chunk_mut(dst, chunk_len, |start, d| f(start, Chunk::InPlace(d))),
        }
    }
}

/// One chunk of an elementwise pass.
pub(crate) enum Chunk<'a, T> {
    Separate(&'a [T], &'a mut [T]),
    InPlace(&'a mut [T]),
}

impl<'a, T: Element> Chunk<'a, T> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Chunk::Separate(_, d) | Chunk::InPlace(d) => d.len(),
        }
    }

    /// The source (None: in place) and the destination.
    pub(crate) fn into_parts(self) -> (Option<&'a [T]>, &'a mut [T]) {
        match self {
            Chunk::Separate(s, d) => (Some(s), d),
            Chunk::InPlace(d) => (None, d),
        }
    }

    pub(crate) fn from_parts(src: Option<&'a [T]>, dst: &'a mut [T]) -> Self {
        match src {
            Some(s) => Chunk::Separate(s, dst),
            None => Chunk::InPlace(dst),
        }
    }
}
