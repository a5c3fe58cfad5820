//! Out-of-place transpose of a row-major f32 matrix in register tiles: 16×16 with AVX-512,
//! 8×8 with AVX2, a plain loop elsewhere.
//!
//! Why it exists: the dense forward y = x·Wᵀ (`matmul`'s NT layout) has both operands with
//! the shared dimension K contiguous, and the `gemm` crate packs the one it wants
//! M-contiguous element by element (a scalar gather at a stride of K). Transposing W once
//! in tiles, then running the NN product, took the MLP's 128×256×256 forward from 81 to
//! 101–103 GFLOP/s on one Zen 4 core, transpose included (BENCHMARKS.md).
//!
//! A transpose only moves values, so the product's bits are those of the NN product.

use rayon::prelude::*;

/// Matrices of at least this many elements are transposed on rayon's threads, split by
/// columns of the source (whole tiles each): below it the hand-off costs more than it saves.
const PARALLEL_ELEMENTS: usize = 1 << 17;

/// dst (cols × rows, row-major) = srcᵀ, src being rows × cols row-major. Only the first
/// rows·cols elements of each slice are used.
///
/// # Panics
/// If either slice holds fewer than rows·cols elements (callers size them).
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    let len = rows * cols;
    assert!(
        src.len() >= len && dst.len() >= len,
        "transpose of {rows}×{cols} needs {len} elements, got src {} and dst {}",
        src.len(),
        dst.len()
    );
    if len == 0 {
        return;
    }
    let kernel = Kernel::detect();
    let src = &src[..len];
    let dst = &mut dst[..len];
    if len < PARALLEL_ELEMENTS || rayon::current_num_threads() == 1 {
        transpose_columns(kernel, src, rows, cols, 0..cols, dst);
        return;
    }
    // Column blocks of the source are row blocks of dst: each task writes its own part.
    let tile = kernel.tile();
    let per_task = (cols / rayon::current_num_threads())
        .next_multiple_of(tile)
        .max(tile);
    dst.par_chunks_mut(per_task * rows)
        .enumerate()
        .for_each(|(t, part)| {
            let from = t * per_task;
            let to = (from + per_task).min(cols);
            transpose_columns(kernel, src, rows, cols, from..to, part);
        });
}

/// Whether this CPU transposes in register tiles (x86-64 with AVX2 or AVX-512). Elsewhere
/// the plain loop is no faster than the `gemm` crate's own packing, so callers skip it.
pub fn has_register_tiles() -> bool {
    Kernel::detect() != Kernel::Portable
}

/// The instruction set the tiles use, found once per call (a cached CPUID read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// Every kernel this CPU can run, widest first (for the tests).
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Kernel::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Kernel::Avx2);
            }
        }
        all.push(Kernel::Portable);
        all
    }

    fn tile(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => 16,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => 8,
            Kernel::Portable => 16,
        }
    }
}

/// Source columns `columns` into `part`, the rows `columns` of dst (`part[0]` is
/// dst[columns.start·rows]): whole tiles through the kernel, the ragged edges one by one.
fn transpose_columns(
    kernel: Kernel,
    src: &[f32],
    rows: usize,
    cols: usize,
    columns: std::ops::Range<usize>,
    part: &mut [f32],
) {
    debug_assert_eq!(part.len(), columns.len() * rows);
    let tile = kernel.tile();
    let whole_rows = rows / tile * tile;
    let whole_end = columns.start + columns.len() / tile * tile;
    let first = columns.start;
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 | Kernel::Avx2 => {
            for j0 in (first..whole_end).step_by(tile) {
                for i0 in (0..whole_rows).step_by(tile) {
                    // Every index a tile reaches is below (i0 + tile)·cols ≤ rows·cols in
                    // src and ((j0 − first) + tile)·rows ≤ part.len() in part: in bounds.
                    let from = &src[i0 * cols + j0..];
                    let to = &mut part[(j0 - first) * rows + i0..];
                    debug_assert!(from.len() > (tile - 1) * cols + tile - 1);
                    debug_assert!(to.len() > (tile - 1) * rows + tile - 1);
                    // SAFETY: the CPU has the instruction set (`detect`), and the bounds
                    // are proved just above.
                    unsafe {
                        if kernel == Kernel::Avx512 {
                            tile_16x16_avx512(from.as_ptr(), cols, to.as_mut_ptr(), rows);
                        } else {
                            tile_8x8_avx2(from.as_ptr(), cols, to.as_mut_ptr(), rows);
                        }
                    }
                }
            }
        }
        Kernel::Portable => {
            // Tiles of 16×16 keep the 16 source rows and 16 destination rows in L1.
            for j0 in (first..whole_end).step_by(tile) {
                for i0 in (0..whole_rows).step_by(tile) {
                    for j in j0..j0 + tile {
                        for i in i0..i0 + tile {
                            part[(j - first) * rows + i] = src[i * cols + j];
                        }
                    }
                }
            }
        }
    }
    // The rows below the last whole tile, in the columns of whole tiles.
    for j in first..whole_end {
        for i in whole_rows..rows {
            part[(j - first) * rows + i] = src[i * cols + j];
        }
    }
    // The columns right of the last whole tile, every row.
    for j in whole_end..columns.end {
        for i in 0..rows {
            part[(j - first) * rows + i] = src[i * cols + j];
        }
    }
}

/// One 16×16 tile: 16 rows of `src` (stride `ss`) become 16 rows of `dst` (stride `ds`),
/// in four rounds of shuffles (pairs of f32, pairs of f64, then 128-bit quarters twice).
///
/// # Safety
/// The CPU has AVX-512F; src[i·ss + j] and dst[i·ds + j] are valid for i, j < 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_16x16_avx512(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the loads and stores stay inside the tile (the caller's contract).
    unsafe {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, row) in r.iter_mut().enumerate() {
            *row = _mm512_loadu_ps(src.add(i * ss));
        }
        // Rows 2i and 2i+1 interleaved: each 128-bit lane l holds their columns 4l..4l+3
        // in pairs.
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // Pairs of pairs: lane l of r[4i + c] is column 4l + c of rows 4i..4i+3.
        for i in 0..4 {
            let (a, b) = (_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2]));
            let (c, d) = (
                _mm512_castps_pd(t[4 * i + 1]),
                _mm512_castps_pd(t[4 * i + 3]),
            );
            r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
            r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
        }
        // Quarters of rows 8i..8i+3 and 8i+4..8i+7 side by side: t[8i + j] holds columns
        // j and 8 + j (j < 4), or 4 + j' and 12 + j' (j = 4 + j'), of rows 8i..8i+7.
        for i in 0..2 {
            for j in 0..4 {
                let (a, b) = (r[8 * i + j], r[8 * i + 4 + j]);
                t[8 * i + j] = _mm512_shuffle_f32x4::<0x88>(a, b);
                t[8 * i + 4 + j] = _mm512_shuffle_f32x4::<0xdd>(a, b);
            }
        }
        // The two halves of the rows joined: r[j] is column j, all 16 rows.
        for j in 0..8 {
            let (a, b) = (t[j], t[8 + j]);
            r[j] = _mm512_shuffle_f32x4::<0x88>(a, b);
            r[8 + j] = _mm512_shuffle_f32x4::<0xdd>(a, b);
        }
        for (i, column) in r.iter().enumerate() {
            _mm512_storeu_ps(dst.add(i * ds), *column);
        }
    }
}

/// One 8×8 tile, as `tile_16x16_avx512` with three rounds (pairs, quads, 128-bit halves).
///
/// # Safety
/// The CPU has AVX2; src[i·ss + j] and dst[i·ds + j] are valid for i, j < 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_8x8_avx2(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the loads and stores stay inside the tile (the caller's contract).
    unsafe {
        let mut r = [_mm256_setzero_ps(); 8];
        for (i, row) in r.iter_mut().enumerate() {
            *row = _mm256_loadu_ps(src.add(i * ss));
        }
        let mut t = [_mm256_setzero_ps(); 8];
        for i in 0..4 {
            t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // Lane l of s[4h + c] is column 4l + c of rows 4h..4h+3.
        let mut s = [_mm256_setzero_ps(); 8];
        for h in 0..2 {
            let (a, b, c, d) = (t[4 * h], t[4 * h + 2], t[4 * h + 1], t[4 * h + 3]);
            s[4 * h] = _mm256_shuffle_ps::<0x44>(a, b);
            s[4 * h + 1] = _mm256_shuffle_ps::<0xee>(a, b);
            s[4 * h + 2] = _mm256_shuffle_ps::<0x44>(c, d);
            s[4 * h + 3] = _mm256_shuffle_ps::<0xee>(c, d);
        }
        for c in 0..4 {
            let column = _mm256_permute2f128_ps::<0x20>(s[c], s[4 + c]);
            let column_plus_4 = _mm256_permute2f128_ps::<0x31>(s[c], s[4 + c]);
            _mm256_storeu_ps(dst.add(c * ds), column);
            _mm256_storeu_ps(dst.add((c + 4) * ds), column_plus_4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut out = vec![0.0; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                out[j * rows + i] = src[i * cols + j];
            }
        }
        out
    }

    /// Every kernel against the definition, on whole tiles, ragged edges on either side or
    /// both, single rows and columns, and column ranges that start past 0 (the parallel
    /// split's parts).
    #[test]
    fn every_kernel_transposes_every_shape() {
        let sizes = [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 50];
        for kernel in Kernel::available() {
            for &rows in &sizes {
                for &cols in &sizes {
                    let src: Vec<f32> = (0..rows * cols).map(|v| v as f32 + 0.5).collect();
                    let want = reference(&src, rows, cols);
                    let mut got = vec![f32::NAN; rows * cols];
                    transpose_columns(kernel, &src, rows, cols, 0..cols, &mut got);
                    assert_eq!(got, want, "{kernel:?} {rows}×{cols}");
                    let tile = kernel.tile();
                    if cols > tile {
                        let mut part = vec![f32::NAN; (cols - tile) * rows];
                        transpose_columns(kernel, &src, rows, cols, tile..cols, &mut part);
                        assert_eq!(
                            part,
                            want[tile * rows..],
                            "{kernel:?} {rows}×{cols} from {tile}"
                        );
                    }
                }
            }
        }
    }

    /// The public entry, serial and split over threads, on matrices past the parallel
    /// threshold with ragged edges, and on views longer than the matrix.
    #[test]
    fn transpose_matches_the_definition_serial_and_parallel() {
        for (rows, cols) in [(3, 5), (256, 784), (785, 257), (1000, 200)] {
            let src: Vec<f32> = (0..rows * cols + 3)
                .map(|v| (v % 1013) as f32 - 17.25)
                .collect();
            let want = reference(&src[..rows * cols], rows, cols);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut got = vec![f32::NAN; rows * cols + 5];
                pool.install(|| transpose(&src, rows, cols, &mut got));
                assert_eq!(
                    got[..rows * cols],
                    want[..],
                    "{rows}×{cols} on {threads} threads"
                );
                assert!(
                    got[rows * cols..].iter().all(|v| v.is_nan()),
                    "wrote past the matrix"
                );
            }
        }
    }
}
