//! Running one kernel call on any backend with guarded, poisoned output memory.
//!
//! Inputs are uploaded into buffers laid out as the case says (offsets, strides, padding); the
//! memory a view does not reach holds NaN, so a kernel that reads outside its view shows it.
//! Outputs live between guard regions and are poisoned before the run with a NaN bit pattern no
//! kernel produces; afterwards every address outside the view must still hold the poison (guards
//! and gaps untouched) and every address inside must have been written (as ggml's
//! `test-backend-ops` does with its sentinels).

use seqcore::{Allocate, Element, Layout, Scalar, View, ViewMut};

use crate::Failure;

/// Elements of guard memory before and after every output.
pub const GUARD: usize = 16;

/// A host-side test tensor: logical values (row-major over `layout`'s shape, as f64) and the
/// layout they are stored with inside a buffer of `buffer_len` elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Where the values sit in their buffer.
    pub layout: Layout,
    /// Elements of the buffer.
    pub buffer_len: usize,
    /// The logical values in row-major order of `layout.shape()`.
    pub values: Vec<f64>,
}

impl Tensor {
    /// A densely packed tensor.
    ///
    /// # Errors
    /// When `values` does not hold `shape`'s element count, or the shape is invalid.
    pub fn contiguous(shape: &[usize], values: Vec<f64>) -> Result<Tensor, Failure> {
        let layout = Layout::contiguous(shape).map_err(Failure::setup)?;
        Tensor::with_layout(layout, layout.end(), values)
    }

    /// A tensor stored through `layout` in a buffer of `buffer_len` elements.
    ///
    /// # Errors
    /// When the value count or the buffer length does not fit the layout.
    pub fn with_layout(
        layout: Layout,
        buffer_len: usize,
        values: Vec<f64>,
    ) -> Result<Tensor, Failure> {
        if values.len() != layout.numel() {
            return Err(Failure::Setup(format!(
                "{} values for shape {:?}",
                values.len(),
                layout.shape()
            )));
        }
        if layout.end() > buffer_len {
            return Err(Failure::Setup(format!(
                "layout reaches {} in a buffer of {buffer_len}",
                layout.end()
            )));
        }
        Ok(Tensor {
            layout,
            buffer_len,
            values,
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }

    /// The values rounded to `T` and widened back: what a backend running in `T` sees.
    pub fn rounded<T: Element>(&self) -> Vec<f64> {
        self.values.iter().map(|&v| round::<T>(v)).collect()
    }
}

/// `x` rounded to `T` (once, to nearest even) and widened back to f64.
pub fn round<T: Element>(x: f64) -> f64 {
    T::from_f64(x).to_f64()
}

/// The poison bit pattern for `T`: a NaN with a payload no arithmetic produces (for 2-, 4- and
/// 8-byte floats: `0x7FA5`, `0x7FA5A5A5`, `0x7FFA5A5A5A5A5A5A`), or a recognisable integer.
pub fn poison<T: Scalar>() -> T {
    let pattern: &[u8] = match size_of::<T>() {
        1 => &[0xA5],
        2 => &const { 0x7FA5u16.to_ne_bytes() },
        4 => &const { 0x7FA5_A5A5u32.to_ne_bytes() },
        _ => &const { 0x7FFA_5A5A_5A5A_5A5Au64.to_ne_bytes() },
    };
    let mut v = T::default();
    for (d, s) in bytemuck::bytes_of_mut(&mut v).iter_mut().zip(pattern) {
        *d = *s;
    }
    v
}

fn same_bits<T: Scalar>(a: &T, b: &T) -> bool {
    bytemuck::bytes_of(a) == bytemuck::bytes_of(b)
}

/// An input uploaded to a backend.
pub struct Input<B: Allocate, T: Scalar> {
    buf: B::Buffer<T>,
    layout: Layout,
}

impl<B: Allocate, T: Element> Input<B, T> {
    /// Uploads `t`, rounded to `T`; memory outside its layout holds NaN.
    ///
    /// # Errors
    /// Backend errors while allocating or writing.
    pub fn new(b: &B, t: &Tensor) -> Result<Self, Failure> {
        let mut host = vec![T::from_f64(f64::NAN); t.buffer_len];
        for (o, &v) in t.layout.offsets().zip(&t.values) {
            if let Some(slot) = host.get_mut(o) {
                *slot = T::from_f64(v);
            }
        }
        upload(b, &host, t.layout)
    }
}

impl<B: Allocate, T: Scalar> Input<B, T> {
    /// The view a kernel reads.
    ///
    /// # Errors
    /// When the backend rejects the layout (a harness bug).
    pub fn view(&self) -> Result<View<'_, B, T>, Failure> {
        View::new(core::borrow::Borrow::borrow(&self.buf), self.layout).map_err(Failure::setup)
    }
}

fn upload<B: Allocate, T: Scalar>(
    b: &B,
    host: &[T],
    layout: Layout,
) -> Result<Input<B, T>, Failure> {
    let mut buf = b.alloc::<T>(host.len()).map_err(Failure::setup)?;
    b.write(host, core::borrow::BorrowMut::borrow_mut(&mut buf))
        .map_err(Failure::setup)?;
    Ok(Input { buf, layout })
}

impl<B: Allocate, T: Scalar> core::fmt::Debug for Input<B, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Input")
            .field("dtype", &T::NAME)
            .field("layout", &self.layout)
            .finish()
    }
}

impl<B: Allocate, T: Scalar> core::fmt::Debug for Output<B, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Output")
            .field("dtype", &T::NAME)
            .field("layout", &self.layout)
            .finish()
    }
}

/// A poisoned output with guard memory on both sides.
pub struct Output<B: Allocate, T: Scalar> {
    buf: B::Buffer<T>,
    layout: Layout,
    len: usize,
}

impl<B: Allocate, T: Scalar> Output<B, T> {
    /// An output of `layout` (its offset counted after the leading guard), poisoned. With
    /// `initial`, the elements the layout reaches start with those values instead (for kernels
    /// that read their output, as `gemm` with `beta != 0`).
    ///
    /// # Errors
    /// Backend errors while allocating or writing.
    pub fn new(b: &B, layout: &Layout, initial: Option<&[T]>) -> Result<Self, Failure> {
        let shifted = Layout::new(layout.offset() + GUARD, layout.shape(), layout.strides())
            .map_err(Failure::setup)?;
        let len = shifted.end().max(GUARD) + GUARD;
        let mut host = vec![poison::<T>(); len];
        if let Some(init) = initial {
            for (o, v) in shifted.offsets().zip(init) {
                if let Some(slot) = host.get_mut(o) {
                    *slot = *v;
                }
            }
        }
        let Input { buf, .. } = upload(b, &host, shifted)?;
        Ok(Output {
            buf,
            layout: shifted,
            len,
        })
    }

    /// The view a kernel writes.
    ///
    /// # Errors
    /// When the backend rejects the layout (a harness bug).
    pub fn view(&mut self) -> Result<ViewMut<'_, B, T>, Failure> {
        ViewMut::new(
            core::borrow::BorrowMut::borrow_mut(&mut self.buf),
            self.layout,
        )
        .map_err(Failure::setup)
    }

    /// Downloads the output, checks that every address inside the view was written and that no
    /// address outside it changed, and returns the values in row-major order.
    ///
    /// # Errors
    /// [`Failure::Guard`] or [`Failure::Unwritten`] naming the first bad address.
    pub fn finish(&self, b: &B, arg: &'static str) -> Result<Vec<T>, Failure> {
        let mut host = vec![T::default(); self.len];
        b.read(core::borrow::Borrow::borrow(&self.buf), &mut host)
            .map_err(Failure::setup)?;
        let p = poison::<T>();
        let mut inside = vec![false; self.len];
        for o in self.layout.offsets() {
            if let Some(f) = inside.get_mut(o) {
                *f = true;
            }
        }
        let mut out = Vec::with_capacity(self.layout.numel());
        for (i, o) in self.layout.offsets().enumerate() {
            let v = host.get(o).copied().unwrap_or(p);
            if same_bits(&v, &p) {
                return Err(Failure::Unwritten { arg, index: i });
            }
            out.push(v);
        }
        for (addr, (v, &ins)) in host.iter().zip(&inside).enumerate() {
            if !ins && !same_bits(v, &p) {
                return Err(Failure::Guard {
                    arg,
                    addr: addr as isize - GUARD as isize,
                });
            }
        }
        Ok(out)
    }
}

/// Widens downloaded elements to f64.
pub fn widen<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}
