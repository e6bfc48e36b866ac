//! Winograd F(2x2, 3x3) convolution for 3x3 kernels with stride 1 and padding 1.
//!
//! Each 2x2 output tile is computed from a 4x4 input tile with 16 multiplications per
//! input-output channel pair instead of 36. Per group of images the input tiles are transformed into
//! `V = Bt d B`, the weights into `U = G g Gt`, then 16 GEMMs `M[xi] = U[xi] * V[xi]` reduce over
//! input channels and `Y = At M A` gives the output tiles.
//!
//! The transform matrices hold only 0, +-1 and +-1/2, so the rounding error stays of the same
//! order as a reordered sum of the direct convolution. Tile order, group size and summation
//! order depend only on shapes, never on the thread count.
//!
//! Memory layout per group of `images` images, with `T = images * tiles` tile columns:
//! `V` is `[16, C, T]`, `M` is `[16, K, T]`, both row-major; tile `t = i * tiles + ty * tw + tx`.

use rayon::prelude::*;

use super::{Geometry, MAX_PARTIALS};
use crate::ThreadPool;
use crate::matmul::{MatRef, Scratch, matmul};

/// Minimum number of tiles one group of images gives each GEMM.
const GROUP_TILES: usize = 128;

/// Returns whether this module computes `g`: a 3x3 kernel with stride 1 and padding 1.
pub(super) fn applies(g: &Geometry) -> bool {
    g.kernel == 3 && g.stride == 1 && g.padding == 1
}

/// Returns the tile rows and columns of one output plane.
fn tiles(g: &Geometry) -> (usize, usize) {
    (g.out_height.div_ceil(2), g.out_width.div_ceil(2))
}

/// Transforms a `[K, C, 3, 3]` weight into `U = G g Gt`, stored `[16, K, C]` in `u`.
pub(super) fn transform_weight(
    weight: &[f32],
    out_channels: usize,
    in_channels: usize,
    u: &mut Vec<f32>,
) {
    let pairs = out_channels * in_channels;
    u.resize(16 * pairs, 0.0);
    for (pair, g) in weight.chunks_exact(9).enumerate().take(pairs) {
        // Rows of G g: G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
        let mut gg = [[0.0f32; 3]; 4];
        for j in 0..3 {
            let (a, b, c) = (g[j], g[3 + j], g[6 + j]);
            gg[0][j] = a;
            gg[1][j] = 0.5 * (a + b + c);
            gg[2][j] = 0.5 * (a - b + c);
            gg[3][j] = c;
        }
        for (r, row) in gg.iter().enumerate() {
            let (a, b, c) = (row[0], row[1], row[2]);
            let transformed = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
            for (s, value) in transformed.into_iter().enumerate() {
                u[(r * 4 + s) * pairs + pair] = value;
            }
        }
    }
}

/// Returns the images per group: enough for [`GROUP_TILES`] tiles, at most the batch.
fn group_size(g: &Geometry) -> usize {
    let (th, tw) = tiles(g);
    GROUP_TILES
        .div_ceil((th * tw).max(1))
        .clamp(1, g.batch.max(1))
}

/// Computes `y = conv(x)` (or `y += conv(x)`) from the transformed weight `u` of
/// [`transform_weight`], in parallel over groups of images. `g` must satisfy [`applies`].
pub(super) fn convolve(
    pool: &ThreadPool,
    scratch: &Scratch,
    u: &[f32],
    g: &Geometry,
    x: &[f32],
    y: &mut [f32],
    accumulate: bool,
) {
    debug_assert!(applies(g));
    let (th, tw) = tiles(g);
    let tiles_per_image = th * tw;
    let group = group_size(g);
    let (c, k) = (g.in_channels, g.out_channels);
    let in_image = g.in_plane();
    let out_image = k * g.out_pixels();
    let temp_len = temp_len(th, tw);
    pool.install(|| {
        y.par_chunks_mut(group * out_image)
            .zip(x.par_chunks(group * in_image))
            .for_each(|(y, x)| {
                let images = y.len() / out_image;
                let t = images * tiles_per_image;
                scratch.with(16 * c * t + 16 * k * t + temp_len, |buf| {
                    let (v, rest) = buf.split_at_mut(16 * c * t);
                    let (m, temp) = rest.split_at_mut(16 * k * t);
                    for i in 0..images {
                        let image = &x[i * in_image..(i + 1) * in_image];
                        transform_input(image, g, v, t, i * tiles_per_image, temp);
                    }
                    for xi in 0..16 {
                        let a = MatRef::rows(&u[xi * k * c..(xi + 1) * k * c], k, c);
                        let b = MatRef::rows(&v[xi * c * t..(xi + 1) * c * t], c, t);
                        matmul(&mut m[xi * k * t..(xi + 1) * k * t], t, a, b, false);
                    }
                    for i in 0..images {
                        let image = &mut y[i * out_image..(i + 1) * out_image];
                        transform_output(m, g, t, i * tiles_per_image, image, accumulate, temp);
                    }
                });
            });
    });
}

/// Computes the weight gradient `[K, C, 3, 3]` into `grad` from the forward input `x` and the
/// output gradient `dy`. `g` must satisfy [`applies`].
///
/// Forward is `Y = At (U * V) A` per tile with `U = G g Gt`, so per tile `dM = A dY At` and the
/// transformed gradient `dU[xi] = sum over tiles of dM[xi] * V[xi]^T`, one GEMM per `xi`; then
/// `dg = Gt dU G`. Groups of images add into at most [`MAX_PARTIALS`] partial sums whose split
/// depends only on the batch, and the partials are summed in index order.
pub(super) fn backward_weight(
    pool: &ThreadPool,
    scratch: &Scratch,
    g: &Geometry,
    x: &[f32],
    dy: &[f32],
    partials: &mut Vec<f32>,
    grad: &mut [f32],
) {
    debug_assert!(applies(g));
    let (th, tw) = tiles(g);
    let tiles_per_image = th * tw;
    let group = group_size(g);
    let groups = g.batch.div_ceil(group);
    let partial_count = groups.clamp(1, MAX_PARTIALS);
    let (c, k) = (g.in_channels, g.out_channels);
    let len = 16 * k * c;
    partials.resize(partial_count * len, 0.0);
    let in_image = g.in_plane();
    let out_image = k * g.out_pixels();
    let temp_len = temp_len(th, tw);

    pool.install(|| {
        partials
            .par_chunks_mut(len)
            .enumerate()
            .for_each(|(j, partial)| {
                partial.fill(0.0);
                for gi in j * groups / partial_count..(j + 1) * groups / partial_count {
                    let start = gi * group;
                    let images = group.min(g.batch - start);
                    let t = images * tiles_per_image;
                    scratch.with(16 * c * t + 16 * k * t + temp_len, |buf| {
                        let (v, rest) = buf.split_at_mut(16 * c * t);
                        let (dm, temp) = rest.split_at_mut(16 * k * t);
                        for i in 0..images {
                            let image = &x[(start + i) * in_image..][..in_image];
                            transform_input(image, g, v, t, i * tiles_per_image, temp);
                            let d_image = &dy[(start + i) * out_image..][..out_image];
                            transform_output_grad(d_image, g, dm, t, i * tiles_per_image, temp);
                        }
                        for xi in 0..16 {
                            let a = MatRef::rows(&dm[xi * k * t..(xi + 1) * k * t], k, t);
                            let b = MatRef::rows(&v[xi * c * t..(xi + 1) * c * t], c, t).t();
                            matmul(&mut partial[xi * k * c..(xi + 1) * k * c], c, a, b, true);
                        }
                    });
                }
            });

        // Sum the partials in index order and map each 4x4 gradient back to 3x3.
        let partials = &partials[..];
        grad.par_chunks_mut(9 * c)
            .enumerate()
            .for_each(|(ko, row)| {
                for (ci, g3) in row.chunks_exact_mut(9).enumerate() {
                    let mut du = [0.0f32; 16];
                    for (xi, value) in du.iter_mut().enumerate() {
                        let at = (xi * k + ko) * c + ci;
                        *value = (0..partial_count).map(|j| partials[j * len + at]).sum();
                    }
                    untransform_weight_grad(&du, g3);
                }
            });
    });
}

/// `dg = Gt dU G` for one channel pair: `du` is the 4x4 transformed gradient, `dg` the 3x3
/// kernel gradient. Gt = [[1, 1/2, 1/2, 0], [0, 1/2, -1/2, 0], [0, 1/2, 1/2, 1]].
fn untransform_weight_grad(du: &[f32; 16], dg: &mut [f32]) {
    let gt = |a: f32, b: f32, c: f32, d: f32| [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d];
    let mut rows = [[0.0f32; 4]; 3];
    for s in 0..4 {
        let column = gt(du[s], du[4 + s], du[8 + s], du[12 + s]);
        for (row, value) in rows.iter_mut().zip(column) {
            row[s] = value;
        }
    }
    for (i, row) in rows.iter().enumerate() {
        let values = gt(row[0], row[1], row[2], row[3]);
        dg[3 * i..3 * i + 3].copy_from_slice(&values);
    }
}

/// Returns the scratch floats the transforms of one image need beside `V` and `M`: eight
/// planes of `(th + 1) x tw` plus two rows of `tw + 1` for the input, twelve planes of
/// `th x tw` for the output and its gradient.
fn temp_len(th: usize, tw: usize) -> usize {
    (8 * (th + 1) * tw + 2 * (tw + 1)).max(12 * th * tw)
}

/// Writes `dM = A dY At` of every tile of one image's `[K, H, W]` output gradient into
/// columns `first..first + tiles` of `dm` (`[16, K, t]`); pixels past the output count as zero.
///
/// A = [[1, 0], [1, 1], [1, -1], [0, -1]]: from rows (or columns) `p, q` of a 2x2 tile it makes
/// `p, p + q, p - q, -q`.
fn transform_output_grad(
    dy: &[f32],
    g: &Geometry,
    dm: &mut [f32],
    t: usize,
    first: usize,
    temp: &mut [f32],
) {
    let (ho, wo) = (g.out_height, g.out_width);
    let (th, tw) = tiles(g);
    let (k, n) = (g.out_channels, th * tw);
    // quarters[2a + b]: pixel (2ty + a, 2tx + b) of every tile; rows[b]: one row of A dY.
    let (quarters, rest) = temp.split_at_mut(4 * n);
    let (rows, _) = rest.split_at_mut(2 * n);
    for ko in 0..k {
        let plane = &dy[ko * ho * wo..(ko + 1) * ho * wo];
        // Only odd sizes leave tile pixels that no output pixel overwrites.
        if ho % 2 == 1 || wo % 2 == 1 {
            quarters.fill(0.0);
        }
        for oy in 0..ho {
            let (ty, a) = (oy / 2, oy % 2);
            let (left, right) = quarters[2 * a * n..(2 * a + 2) * n].split_at_mut(n);
            let (left, right) = (&mut left[ty * tw..][..tw], &mut right[ty * tw..][..tw]);
            let src = &plane[oy * wo..(oy + 1) * wo];
            let pairs = src.chunks_exact(2);
            if let [last] = pairs.remainder() {
                left[wo / 2] = *last;
            }
            for ((pair, l), r) in pairs.zip(left.iter_mut()).zip(right.iter_mut()) {
                *l = pair[0];
                *r = pair[1];
            }
        }
        let quarter = |a: usize, b: usize| &quarters[(2 * a + b) * n..(2 * a + b + 1) * n];
        for r in 0..4 {
            // Row r of A dY, for tile columns b = 0 and 1.
            for b in 0..2 {
                let (p, q) = (quarter(0, b), quarter(1, b));
                let out = &mut rows[b * n..(b + 1) * n];
                match r {
                    0 => out.copy_from_slice(p),
                    1 => combine(out, p, q, |p, q| p + q),
                    2 => combine(out, p, q, |p, q| p - q),
                    _ => combine(out, p, q, |_, q| -q),
                }
            }
            let (p, q) = rows.split_at(n);
            let at = |s: usize| ((r * 4 + s) * k + ko) * t + first;
            dm[at(0)..at(0) + n].copy_from_slice(p);
            combine(&mut dm[at(1)..at(1) + n], p, q, |p, q| p + q);
            combine(&mut dm[at(2)..at(2) + n], p, q, |p, q| p - q);
            combine(&mut dm[at(3)..at(3) + n], p, q, |_, q| -q);
        }
    }
}

/// Writes `V = Bt d B` of every tile of one `[C, H, W]` image into columns
/// `first..first + tiles` of `v` (`[16, C, t]`).
///
/// Bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]. Tile `(ty, tx)` covers
/// padded rows `2ty..2ty + 4` and padded columns `2tx..2tx + 4` (padded index = input index + 1).
/// First `d B` of every padded row, split by the row's parity: `even[s]` contains padded rows
/// `0, 2, 4, ...` and `odd[s]` rows `1, 3, 5, ...`, each `tw` wide. The four rows of tile row
/// `ty` are then `even[ty], odd[ty], even[ty + 1], odd[ty + 1]`, so `Bt` runs as flat vector
/// arithmetic over all tiles of the plane at once.
fn transform_input(
    x: &[f32],
    g: &Geometry,
    v: &mut [f32],
    t: usize,
    first: usize,
    temp: &mut [f32],
) {
    let (h, w, c) = (g.height, g.width, g.in_channels);
    let (th, tw) = tiles(g);
    let n = th * tw;
    let rows = (th + 1) * tw;
    // row_transforms[2s + parity]: column s of `d B` for the padded rows of that parity.
    let (row_transforms, rest) = temp.split_at_mut(8 * rows);
    let (even, odd) = rest[..2 * (tw + 1)].split_at_mut(tw + 1);
    for ci in 0..c {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        // Padded rows without an input row: row 0 and rows h + 1..2 * th + 2.
        for py in std::iter::once(0).chain(h + 1..2 * th + 2) {
            let (parity, q) = (py % 2, py / 2);
            for s in 0..4 {
                row_transforms[(2 * s + parity) * rows + q * tw..][..tw].fill(0.0);
            }
        }
        for iy in 0..h {
            // Input row iy is padded row iy + 1.
            let padded = iy + 1;
            let (parity, q) = (padded % 2, padded / 2);
            deinterleave(&plane[iy * w..(iy + 1) * w], even, odd);
            // Columns (a, b, c, d) of tile tx are (even[tx], odd[tx], even[tx + 1], odd[tx + 1]).
            let columns = [&even[..tw], &odd[..tw], &even[1..], &odd[1..]];
            let at = |s: usize| (2 * s + parity) * rows + q * tw;
            apply_bt(row_transforms, at, tw, columns);
        }
        for s in 0..4 {
            let even_rows = &row_transforms[2 * s * rows..(2 * s + 1) * rows];
            let odd_rows = &row_transforms[(2 * s + 1) * rows..(2 * s + 2) * rows];
            let tile_rows = [
                &even_rows[..n],
                &odd_rows[..n],
                &even_rows[tw..tw + n],
                &odd_rows[tw..tw + n],
            ];
            let at = |r: usize| ((r * 4 + s) * c + ci) * t + first;
            apply_bt(v, at, n, tile_rows);
        }
    }
}

/// Writes `Bt [a, b, c, d]` = `a - c, b + c, c - b, b - d`, element by element over `len`
/// values, to `dst[at(0)..]`, `dst[at(1)..]`, `dst[at(2)..]` and `dst[at(3)..]`.
fn apply_bt(dst: &mut [f32], at: impl Fn(usize) -> usize, len: usize, [a, b, c, d]: [&[f32]; 4]) {
    combine(&mut dst[at(0)..at(0) + len], a, c, |a, c| a - c);
    combine(&mut dst[at(1)..at(1) + len], b, c, |b, c| b + c);
    combine(&mut dst[at(2)..at(2) + len], c, b, |c, b| c - b);
    combine(&mut dst[at(3)..at(3) + len], b, d, |b, d| b - d);
}

/// `out[i] = f(a[i], b[i])` over the shortest of the three, a loop the compiler vectorises.
#[inline(always)]
fn combine(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((d, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *d = f(a, b);
    }
}

/// Splits one input row into the even and odd columns of its zero-padded version: padded
/// column `2j` is input column `2j - 1`, padded column `2j + 1` is input column `2j`.
fn deinterleave(src: &[f32], even: &mut [f32], odd: &mut [f32]) {
    even.fill(0.0);
    odd.fill(0.0);
    let pairs = src.chunks_exact(2);
    if let [last] = pairs.remainder() {
        odd[src.len() / 2] = *last;
    }
    for ((pair, o), e) in pairs.zip(odd.iter_mut()).zip(even[1..].iter_mut()) {
        *o = pair[0];
        *e = pair[1];
    }
}

/// Writes (or adds) `Y = At M A` of every tile of one image from columns
/// `first..first + tiles` of `m` (`[16, K, t]`) into its `[K, H, W]` output.
///
/// At = [[1, 1, 1, 0], [0, 1, -1, -1]]. Both products run as flat vector arithmetic over all
/// tiles of a plane; only the final interleave into output rows goes row by row.
fn transform_output(
    m: &[f32],
    g: &Geometry,
    t: usize,
    first: usize,
    y: &mut [f32],
    accumulate: bool,
    temp: &mut [f32],
) {
    let (ho, wo) = (g.out_height, g.out_width);
    let (th, tw) = tiles(g);
    let (k, n) = (g.out_channels, th * tw);
    let (z, out) = temp.split_at_mut(8 * n);
    let out = &mut out[..4 * n];
    for ko in 0..k {
        let plane = &mut y[ko * ho * wo..(ko + 1) * ho * wo];
        let row = |r: usize, s: usize| {
            let start = ((r * 4 + s) * k + ko) * t + first;
            &m[start..start + n]
        };
        // z = At M: row 0 is the sum of tile rows 0, 1 and 2, row 1 is row 1 - row 2 - row 3.
        for s in 0..4 {
            let (z0, z1) = z[2 * s * n..2 * (s + 1) * n].split_at_mut(n);
            sum3(z0, row(0, s), row(1, s), row(2, s));
            diff3(z1, row(1, s), row(2, s), row(3, s));
        }
        // Y = z A, the same combination over columns.
        for a in 0..2 {
            let col = |s: usize| &z[(2 * s + a) * n..(2 * s + a + 1) * n];
            let (left, right) = out[2 * a * n..2 * (a + 1) * n].split_at_mut(n);
            sum3(left, col(0), col(1), col(2));
            diff3(right, col(1), col(2), col(3));
        }
        for oy in 0..ho {
            let (ty, a) = (oy / 2, oy % 2);
            let left = &out[2 * a * n + ty * tw..][..tw];
            let right = &out[(2 * a + 1) * n + ty * tw..][..tw];
            let dst = &mut plane[oy * wo..(oy + 1) * wo];
            let pairs = dst.chunks_exact_mut(2);
            let full = pairs.len();
            if accumulate {
                for ((pair, &l), &r) in pairs.zip(left).zip(right) {
                    pair[0] += l;
                    pair[1] += r;
                }
            } else {
                for ((pair, &l), &r) in pairs.zip(left).zip(right) {
                    pair[0] = l;
                    pair[1] = r;
                }
            }
            if wo % 2 == 1 {
                let last = &mut dst[wo - 1];
                *last = if accumulate {
                    *last + left[full]
                } else {
                    left[full]
                };
            }
        }
    }
}

/// `out[i] = a[i] + b[i] + c[i]`.
fn sum3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32]) {
    for (((d, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
        *d = a + b + c;
    }
}

/// `out[i] = a[i] - b[i] - c[i]`.
fn diff3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32]) {
    for (((d, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
        *d = a - b - c;
    }
}

#[cfg(test)]
mod tests {
    use super::super::convolve_im2col;
    use super::*;
    use crate::gradcheck::values;

    /// Returns the geometry of a 3x3 convolution with stride 1 and padding 1, whose output has
    /// the input's size.
    fn same_size(batch: usize, cin: usize, cout: usize, height: usize, width: usize) -> Geometry {
        Geometry {
            batch,
            in_channels: cin,
            out_channels: cout,
            height,
            width,
            out_height: height,
            out_width: width,
            kernel: 3,
            stride: 1,
            padding: 1,
        }
    }

    /// Returns a two-thread pool and scratch buffers for it.
    fn two_threads() -> (ThreadPool, Scratch) {
        let mut scratch = Scratch::default();
        scratch.ensure_threads(2);
        (ThreadPool::new(2).unwrap(), scratch)
    }

    /// The Winograd path against im2col + GEMM on the same data: odd and even sizes, a single
    /// pixel, groups that split the batch unevenly, and accumulation into existing output.
    #[test]
    fn matches_im2col_convolution() {
        let (pool, scratch) = two_threads();
        let cases = [
            (2, 3, 4, 5, 5),
            (3, 1, 2, 1, 1),
            (5, 4, 3, 7, 4),
            (19, 3, 5, 8, 8),
            (2, 6, 2, 32, 32),
            (3, 2, 3, 2, 9),
        ];
        for (case, &(batch, cin, cout, height, width)) in cases.iter().enumerate() {
            let g = same_size(batch, cin, cout, height, width);
            let seed = 100 + 10 * case as u32;
            let weight = values(cout * cin * 9, seed);
            let x = values(batch * cin * height * width, seed + 1);
            let start = values(batch * cout * height * width, seed + 2);
            let mut u = Vec::new();
            transform_weight(&weight, cout, cin, &mut u);
            for accumulate in [false, true] {
                let mut expected = start.clone();
                convolve_im2col(&pool, &scratch, &weight, &g, &x, &mut expected, accumulate);
                let mut actual = start.clone();
                convolve(&pool, &scratch, &u, &g, &x, &mut actual, accumulate);
                let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
                    assert!(
                        (a - e).abs() <= 1e-5 * scale,
                        "case {case}, accumulate {accumulate}, element {i}: {a} != {e}"
                    );
                }
            }
        }
    }

    /// The weight gradient against the defining sum over images and output pixels, with more
    /// groups than partial sums so that several groups add into one partial.
    #[test]
    fn weight_gradient_matches_direct_sum() {
        let (pool, scratch) = two_threads();
        for (case, &(batch, cin, cout, height, width)) in [
            (2, 3, 4, 5, 5),
            (40, 2, 2, 16, 16),
            (3, 2, 3, 7, 2),
            (2, 1, 1, 1, 1),
        ]
        .iter()
        .enumerate()
        {
            let g = same_size(batch, cin, cout, height, width);
            let seed = 300 + 10 * case as u32;
            let x = values(batch * cin * height * width, seed);
            let dy = values(batch * cout * height * width, seed + 1);
            let mut expected = vec![0.0f64; cout * cin * 9];
            for n in 0..batch {
                for ko in 0..cout {
                    for ci in 0..cin {
                        for tap in 0..9 {
                            let (ky, kx) = (tap / 3, tap % 3);
                            let mut sum = 0.0f64;
                            for oy in 0..height {
                                for ox in 0..width {
                                    let (iy, ix) =
                                        ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                                    if iy < height && ix < width {
                                        let d = dy[((n * cout + ko) * height + oy) * width + ox];
                                        let v = x[((n * cin + ci) * height + iy) * width + ix];
                                        sum += f64::from(d) * f64::from(v);
                                    }
                                }
                            }
                            expected[(ko * cin + ci) * 9 + tap] += sum;
                        }
                    }
                }
            }
            let mut partials = Vec::new();
            let mut grad = vec![f32::NAN; cout * cin * 9];
            backward_weight(&pool, &scratch, &g, &x, &dy, &mut partials, &mut grad);
            let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (i, (a, e)) in grad.iter().zip(&expected).enumerate() {
                assert!(
                    (f64::from(*a) - e).abs() <= 1e-5 * scale,
                    "case {case}, element {i}: {a} != {e}"
                );
            }
        }
    }
}
