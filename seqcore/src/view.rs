//! Views: a backend's memory plus a [`Layout`].

use core::fmt;

use crate::backend::Backend;
use crate::element::Scalar;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// A read-only view: memory of backend `B` seen through a layout. Cheap to copy and to cut.
pub struct View<'a, B: Backend + ?Sized, T: Scalar> {
    mem: &'a B::Mem<T>,
    layout: Layout,
}

/// A writable view. Its layout never addresses an element twice.
pub struct ViewMut<'a, B: Backend + ?Sized, T: Scalar> {
    mem: &'a mut B::Mem<T>,
    layout: Layout,
}

fn check_bounds<B: Backend + ?Sized, T: Scalar>(mem: &B::Mem<T>, layout: &Layout) -> Result<()> {
    let len = B::mem_len(mem);
    if layout.end() > len {
        return Err(Error::OutOfBounds {
            arg: "view",
            end: layout.end(),
            len,
        });
    }
    Ok(())
}

impl<'a, B: Backend + ?Sized, T: Scalar> View<'a, B, T> {
    /// A view of `mem` through `layout`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when the layout reaches past the memory.
    pub fn new(mem: &'a B::Mem<T>, layout: Layout) -> Result<Self> {
        check_bounds::<B, T>(mem, &layout)?;
        Ok(View { mem, layout })
    }

    /// A row-major view of `shape` from the start of `mem`.
    ///
    /// # Errors
    /// As [`Layout::contiguous`] and [`View::new`].
    pub fn contiguous(mem: &'a B::Mem<T>, shape: &[usize]) -> Result<Self> {
        View::new(mem, Layout::contiguous(shape)?)
    }

    /// The memory behind the view (all of it, not only the part the layout reaches).
    pub fn mem(&self) -> &'a B::Mem<T> {
        self.mem
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The extents.
    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }

    /// The same memory through another layout (`f` gets the current one).
    ///
    /// # Errors
    /// Whatever `f` returns, and [`Error::OutOfBounds`] for a layout reaching past the memory.
    pub fn map_layout(self, f: impl FnOnce(&Layout) -> Result<Layout>) -> Result<Self> {
        View::new(self.mem, f(&self.layout)?)
    }

    /// One index of an axis, dropping the axis ([`Layout::select`]).
    ///
    /// # Errors
    /// As [`Layout::select`].
    pub fn select(self, axis: usize, index: usize) -> Result<Self> {
        self.map_layout(|l| l.select(axis, index))
    }

    /// A range of an axis ([`Layout::narrow`]).
    ///
    /// # Errors
    /// As [`Layout::narrow`].
    pub fn narrow(self, axis: usize, start: usize, len: usize) -> Result<Self> {
        self.map_layout(|l| l.narrow(axis, start, len))
    }

    /// Two axes swapped ([`Layout::transpose`]).
    ///
    /// # Errors
    /// As [`Layout::transpose`].
    pub fn transpose(self, a: usize, b: usize) -> Result<Self> {
        self.map_layout(|l| l.transpose(a, b))
    }

    /// Broadcast to `shape` with zero strides ([`Layout::expand`]).
    ///
    /// # Errors
    /// As [`Layout::expand`].
    pub fn expand(self, shape: &[usize]) -> Result<Self> {
        self.map_layout(|l| l.expand(shape))
    }
}

impl<'a, B: Backend + ?Sized, T: Scalar> ViewMut<'a, B, T> {
    /// A writable view of `mem` through `layout`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when the layout reaches past the memory, [`Error::Overlap`] when it
    /// addresses an element twice.
    pub fn new(mem: &'a mut B::Mem<T>, layout: Layout) -> Result<Self> {
        check_bounds::<B, T>(mem, &layout)?;
        if !layout.is_non_overlapping() {
            return Err(Error::Overlap {
                arg: "view",
                shape: layout.dims(),
            });
        }
        Ok(ViewMut { mem, layout })
    }

    /// A row-major writable view of `shape` from the start of `mem`.
    ///
    /// # Errors
    /// As [`Layout::contiguous`] and [`ViewMut::new`].
    pub fn contiguous(mem: &'a mut B::Mem<T>, shape: &[usize]) -> Result<Self> {
        ViewMut::new(mem, Layout::contiguous(shape)?)
    }

    /// The memory behind the view, for a backend's kernels.
    pub fn mem_mut(&mut self) -> &mut B::Mem<T> {
        self.mem
    }

    /// The memory and the layout, for a backend's kernels.
    pub fn parts(&mut self) -> (&mut B::Mem<T>, &Layout) {
        (self.mem, &self.layout)
    }

    /// The memory and the layout, keeping the view's lifetime: how a host backend hands a call to
    /// another one with the same memory type (its portable fallback, often [`crate::Reference`]).
    pub fn into_parts(self) -> (&'a mut B::Mem<T>, Layout) {
        (self.mem, self.layout)
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The extents.
    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }

    /// A shorter-lived writable view of the same elements.
    pub fn reborrow(&mut self) -> ViewMut<'_, B, T> {
        ViewMut {
            mem: self.mem,
            layout: self.layout,
        }
    }

    /// A read-only view of the same elements.
    pub fn as_view(&self) -> View<'_, B, T> {
        View {
            mem: self.mem,
            layout: self.layout,
        }
    }

    /// The same memory through another layout (`f` gets the current one).
    ///
    /// # Errors
    /// Whatever `f` returns, and the checks of [`ViewMut::new`].
    pub fn map_layout(self, f: impl FnOnce(&Layout) -> Result<Layout>) -> Result<Self> {
        let l = f(&self.layout)?;
        ViewMut::new(self.mem, l)
    }

    /// One index of an axis, dropping the axis ([`Layout::select`]).
    ///
    /// # Errors
    /// As [`Layout::select`].
    pub fn select(self, axis: usize, index: usize) -> Result<Self> {
        self.map_layout(|l| l.select(axis, index))
    }

    /// A range of an axis ([`Layout::narrow`]).
    ///
    /// # Errors
    /// As [`Layout::narrow`].
    pub fn narrow(self, axis: usize, start: usize, len: usize) -> Result<Self> {
        self.map_layout(|l| l.narrow(axis, start, len))
    }

    /// Two axes swapped ([`Layout::transpose`]).
    ///
    /// # Errors
    /// As [`Layout::transpose`].
    pub fn transpose(self, a: usize, b: usize) -> Result<Self> {
        self.map_layout(|l| l.transpose(a, b))
    }
}

impl<B: Backend + ?Sized, T: Scalar> Clone for View<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Scalar> Copy for View<'_, B, T> {}

impl<B: Backend + ?Sized, T: Scalar> fmt::Debug for View<'_, B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("dtype", &T::NAME)
            .field("layout", &self.layout)
            .finish()
    }
}

impl<B: Backend + ?Sized, T: Scalar> fmt::Debug for ViewMut<'_, B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewMut")
            .field("dtype", &T::NAME)
            .field("layout", &self.layout)
            .finish()
    }
}
