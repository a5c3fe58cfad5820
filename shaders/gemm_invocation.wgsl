// Where one invocation of a 256-invocation GEMM workgroup sits in the workgroup's grid of
// wm × wn register blocks (wn ≥ 8 and wm = 256 / wn ≥ 4, powers of two): (row ty, column
// tx). Shared by the four GEMM shaders (matmul, matmul_tiled, conv2d, conv2d_tiled).
//
// Why not ty = t / wn, tx = t % wn: the 32 consecutive invocations of an NVIDIA warp then
// lie along one or two rows of the grid, and at each k of the product they read 16 or 32
// distinct vec4s of the staged B slice (two or four 128-byte wavefronts of workgroup
// memory) beside one or two of A. Here every 32 consecutive invocations cover 4 rows × 8
// columns: 8 distinct vec4s of B and 4 of A, one wavefront each. A subgroup of 64 (AMD)
// covers 4 × 16, one of 16 or 8 (Intel, lavapipe) 2 × 8 or 1 × 8. Every (ty, tx) is taken by
// exactly one invocation, so the products, their order and their results are those of the
// row-by-row numbering; only which invocation computes a block changes.
fn gemm_invocation(t: u32, wn: u32) -> vec2<u32> {
    let warp = t / 32u;
    let lane = t % 32u;
    let warps_per_row = wn / 8u;
    return vec2<u32>(4u * (warp / warps_per_row) + lane / 8u, 8u * (warp % warps_per_row) + lane % 8u);
}

