//! Safe wrapper over the `gemm` crate's f32 matrix product, and per-thread scratch buffers.

use std::sync::Mutex;

/// A read-only strided matrix view: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major `rows x cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view of the same data.
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matrix view exceeds its buffer");
        }
    }
}

/// Computes `dst = a * b` (or `dst += a * b` with `accumulate`), single-threaded.
///
/// `dst` is row-major `a.rows x b.cols` with row stride `dst_row_stride`.
///
/// # Panics
/// When the inner dimensions differ or a view exceeds its buffer. Both are engine bugs, not
/// a consequence of user input, because callers validate shapes first.
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_row_stride: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
) {
    matmul_strided(dst, dst_row_stride, 1, a, b, accumulate);
}

/// As [`matmul`], but `dst` is column-major: element `(i, j)` at `j * a.rows + i`.
pub(crate) fn matmul_column_major(dst: &mut [f32], a: MatRef<'_>, b: MatRef<'_>, accumulate: bool) {
    matmul_strided(dst, 1, a.rows, a, b, accumulate);
}

fn matmul_strided(
    dst: &mut [f32],
    dst_row_stride: usize,
    dst_col_stride: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
) {
    assert_eq!(a.cols, b.rows, "matmul inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    a.check();
    b.check();
    let last = (m - 1) * dst_row_stride + (n - 1) * dst_col_stride;
    assert!(last < dst.len(), "matmul output exceeds its buffer");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[i * dst_row_stride + j * dst_col_stride] = 0.0;
                }
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every index the kernel touches inside the three slices
    // (strides and extents describe exactly the views that were bounds-checked), `dst` is a
    // unique borrow that aliases neither input, and all strides fit in isize because they
    // index existing allocations.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_col_stride as isize,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// One growable scratch buffer per pool thread, reused across calls.
#[derive(Default)]
pub(crate) struct Scratch {
    slots: Vec<Mutex<Vec<f32>>>,
}

impl Scratch {
    /// Makes sure there is one slot per pool thread.
    pub fn ensure_threads(&mut self, threads: usize) {
        while self.slots.len() < threads {
            self.slots.push(Mutex::new(Vec::new()));
        }
    }

    /// Runs `f` with the calling pool thread's buffer grown to at least `len` elements.
    ///
    /// Each rayon worker only locks its own slot, so the lock is never contended.
    pub fn with<R>(&self, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
        let index = rayon::current_thread_index().unwrap_or(0) % self.slots.len().max(1);
        let mut buffer = self.slots[index].lock().unwrap_or_else(|e| e.into_inner());
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        f(&mut buffer[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matmul_matches_naive_product() {
        let (m, n, k) = (7, 5, 9);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut c = vec![0.0; m * n];
        matmul(
            &mut c,
            n,
            MatRef::rows(&a, m, k),
            MatRef::rows(&b, k, n),
            false,
        );
        let expected = naive(&a, &b, m, n, k);
        for (x, y) in c.iter().zip(&expected) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    #[test]
    fn matmul_transposed_views_accumulate() {
        let (m, n, k) = (4, 6, 3);
        let at: Vec<f32> = (0..k * m).map(|i| i as f32 * 0.5 - 2.0).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| 1.0 - i as f32 * 0.25).collect();
        let a: Vec<f32> = (0..m * k).map(|i| at[(i % k) * m + i / k]).collect();
        let b: Vec<f32> = (0..k * n).map(|i| bt[(i % n) * k + i / n]).collect();
        let mut c = vec![1.0; m * n];
        let a_view = MatRef::rows(&at, k, m).t();
        let b_view = MatRef::rows(&bt, n, k).t();
        matmul(&mut c, n, a_view, b_view, true);
        let expected = naive(&a, &b, m, n, k);
        for (x, y) in c.iter().zip(&expected) {
            assert!((x - (y + 1.0)).abs() < 1e-5, "{x} vs {}", y + 1.0);
        }
    }
}
