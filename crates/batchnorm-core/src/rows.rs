//! Channel-major layouts (`inner` large, e.g. NCHW) keep each (outer, channel) row
//! contiguous, but a channel's rows are strided through the tensor. A task that owns a
//! whole channel (to normalize it while it is still in cache) needs to write rows that no
//! safe slice split can hand out, so this module shares the pass's arrays as raw parts and
//! hands out rows; its callers give every channel to exactly one task.

use std::marker::PhantomData;
use std::ops::Range;

use crate::element::Element;
use crate::io::{Chunk, Io};
use crate::layout::Layout;

/// The arrays of one pass, shared between tasks that each own whole channels.
pub(crate) struct ChannelRows<'a, T> {
    src: *const T,
    dst: *mut T,
    len: usize,
    in_place: bool,
    layout: Layout,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: the pointers come from a `&[T]` / `&mut [T]` borrowed for 'a; tasks only touch
// rows of the channels they own (see `row_io`), so sharing the parts between threads is
// as safe as sending disjoint `&mut [T]` slices.
unsafe impl<T: Send + Sync> Send for ChannelRows<'_, T> {}
unsafe impl<T: Send + Sync> Sync for ChannelRows<'_, T> {}

impl<'a, T: Element> ChannelRows<'a, T> {
    pub(crate) fn new(io: Io<'a, T>, layout: &Layout) -> Self {
        let (src, dst, in_place) = match io {
            Io::Separate { src, dst } => {
                assert_eq!(
                    src.len(),
                    dst.len(),
                    "source and destination differ in length"
                );
                (src.as_ptr(), dst.as_mut_ptr(), false)
            }
            Io::InPlace(dst) => (dst.as_ptr(), dst.as_mut_ptr(), true),
        };
        Self {
            src,
            dst,
            len: layout.len(),
            in_place,
            layout: *layout,
            _borrow: PhantomData,
        }
    }

    /// The flat range of row (o, c).
    pub(crate) fn range(&self, o: usize, c: usize) -> Range<usize> {
        let start = (o * self.layout.channels + c) * self.layout.inner;
        start..start + self.layout.inner
    }

    /// Reads row (o, c) of the source.
    ///
    /// # Safety
    /// Nothing may write row (o, c) while the slice lives: the caller owns channel c.
    pub(crate) unsafe fn src_row(&self, o: usize, c: usize) -> &[T] {
        let r = self.range(o, c);
        assert!(r.end <= self.len);
        // SAFETY: in bounds (asserted); the caller owns channel c, so no one writes it.
        unsafe { std::slice::from_raw_parts(self.src.add(r.start), r.len()) }
    }

    /// Row (o, c) as the chunk of an elementwise pass (source and destination).
    ///
    /// # Safety
    /// Row (o, c) must be touched by this caller only while the chunk lives, and no slice
    /// from `src_row(o, c)` may be alive: the caller owns channel c.
    pub(crate) unsafe fn row_io(&self, o: usize, c: usize) -> Chunk<'_, T> {
        let r = self.range(o, c);
        assert!(r.end <= self.len);
        // SAFETY: in bounds (asserted); rows of distinct channels never overlap, and the
        // caller is the only one touching channel c.
        unsafe {
            let dst = std::slice::from_raw_parts_mut(self.dst.add(r.start), r.len());
            if self.in_place {
                Chunk::InPlace(dst)
            } else {
                Chunk::Separate(
                    std::slice::from_raw_parts(self.src.add(r.start), r.len()),
                    dst,
                )
            }
        }
    }
}
