// 2-D pooling on NCHW tensors: max pooling (with its arg-max), average pooling
// (count_include_pad = True, PyTorch's default) and global average pooling, forward and
// backward. Direct loops over the window, one invocation per output element (forward) or
// per input element (backward).
//
// The backward passes gather instead of scatter: each input element walks, in a fixed
// order (output rows ascending, then columns ascending), the outputs whose window covers
// it, and sums their contributions. No atomics, no float races: results are reproducible
// and the CPU twin sums in the same order. Input gradients are activation gradients, so
// dx is overwritten.
//
// Geometry: out = ⌊(in + 2·pad − k) / stride⌋ + 1; input row iy is covered by output row
// oy iff oy·s − p ≤ iy ≤ oy·s − p + k − 1, i.e. oy ∈ [⌈(iy + p − k + 1) / s⌉, ⌊(iy + p) / s⌋].
// The validated geometry (pad ≤ k/2) guarantees every window holds a real input element.

const WG: u32 = 256u;

struct Shape {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    oh: u32,
    ow: u32,
}

@group(0) @binding(0) var<uniform> shape: Shape;

// max_pool2d_forward: x [n,c,h,w], y [n,c,oh,ow], argmax [n,c,oh,ow] (index iy·w + ix
// within the input plane).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax_out: array<u32>;

// max_pool2d_backward: dy [n,c,oh,ow], argmax [n,c,oh,ow], dx [n,c,h,w].
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> argmax_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// avg_pool2d_backward and global_avg_pool_backward: dy, then dx at binding 2.
@group(0) @binding(2) var<storage, read_write> dx2: array<f32>;

// The flat index of this invocation on a 2-D grid of workgroups (x fastest).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * (nwg.x * WG) + gid.x;
}

// The first output index (along one axis) whose window covers input index i:
// ⌈(i + p − k + 1) / s⌉ clamped at 0, in unsigned arithmetic.
fn first_cover(i: u32, k: u32, s: u32, p: u32) -> u32 {
    let hi = i + p + 1u;
    if hi <= k {
        return 0u;
    }
    return (hi - k + s - 1u) / s;
}

// The last output index covering input index i: min(⌊(i + p) / s⌋, out − 1).
fn last_cover(i: u32, s: u32, p: u32, out: u32) -> u32 {
    return min((i + p) / s, out - 1u);
}

// One invocation: one output y[b, oy, ox] (b = n·C + c) = max over the window, and the
// flat in-plane index of the first maximum in scan order (rows, then columns). Padding is
// −∞, so it never wins; a NaN in the window wins (as in PyTorch), so NaNs propagate.
@compute @workgroup_size(WG)
fn max_pool2d_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let o = flat_index(gid, nwg);
    let total = shape.n * shape.c * shape.oh * shape.ow;
    if o >= total {
        return;
    }
    let ox = o % shape.ow;
    let oy = (o / shape.ow) % shape.oh;
    let b = o / (shape.ow * shape.oh);
    let plane = b * shape.h * shape.w;
    // Window origin in padded coordinates; iy = y0 + ky − ph.
    let y0 = oy * shape.sh;
    let x0 = ox * shape.sw;
    let iy_first = max(y0, shape.ph) - shape.ph;
    let ix_first = max(x0, shape.pw) - shape.pw;
    var best = bitcast<f32>(0xff800000u); // −∞
    var best_i = iy_first * shape.w + ix_first;
    for (var ky = 0u; ky < shape.kh; ky = ky + 1u) {
        let py = y0 + ky;
        if py < shape.ph || py - shape.ph >= shape.h {
            continue;
        }
        let iy = py - shape.ph;
        for (var kx = 0u; kx < shape.kw; kx = kx + 1u) {
            let px = x0 + kx;
            if px < shape.pw || px - shape.pw >= shape.w {
                continue;
            }
            let i = iy * shape.w + (px - shape.pw);
            let v = x[plane + i];
            if v > best || v != v {
                best = v;
                best_i = i;
            }
        }
    }
    y[o] = best;
    argmax_out[o] = best_i;
}

// One invocation: one input element dx[b, iy, ix] = Σ dy[b, oy, ox] over the outputs
// whose window covers it and whose arg-max is it, oy then ox ascending.
@compute @workgroup_size(WG)
fn max_pool2d_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    let total = shape.n * shape.c * shape.h * shape.w;
    if i >= total {
        return;
    }
    let ix = i % shape.w;
    let iy = (i / shape.w) % shape.h;
    let b = i / (shape.w * shape.h);
    let me = iy * shape.w + ix;
    let oy0 = first_cover(iy, shape.kh, shape.sh, shape.ph);
    let oy1 = last_cover(iy, shape.sh, shape.ph, shape.oh);
    let ox0 = first_cover(ix, shape.kw, shape.sw, shape.pw);
    let ox1 = last_cover(ix, shape.sw, shape.pw, shape.ow);
    var sum = 0.0;
    for (var oy = oy0; oy <= oy1; oy = oy + 1u) {
        for (var ox = ox0; ox <= ox1; ox = ox + 1u) {
            let o = (b * shape.oh + oy) * shape.ow + ox;
            if argmax_in[o] == me {
                sum = sum + dy[o];
            }
        }
    }
    dx[i] = sum;
}

// One invocation: one output y[b, oy, ox] = (Σ of the window's real elements) / (kh·kw);
// padding counts as zeros in the divisor (count_include_pad = True).
@compute @workgroup_size(WG)
fn avg_pool2d_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let o = flat_index(gid, nwg);
    let total = shape.n * shape.c * shape.oh * shape.ow;
    if o >= total {
        return;
    }
    let ox = o % shape.ow;
    let oy = (o / shape.ow) % shape.oh;
    let b = o / (shape.ow * shape.oh);
    let plane = b * shape.h * shape.w;
    let y0 = oy * shape.sh;
    let x0 = ox * shape.sw;
    var sum = 0.0;
    for (var ky = 0u; ky < shape.kh; ky = ky + 1u) {
        let py = y0 + ky;
        if py < shape.ph || py - shape.ph >= shape.h {
            continue;
        }
        let iy = py - shape.ph;
        for (var kx = 0u; kx < shape.kw; kx = kx + 1u) {
            let px = x0 + kx;
            if px < shape.pw || px - shape.pw >= shape.w {
                continue;
            }
            sum = sum + x[plane + iy * shape.w + (px - shape.pw)];
        }
    }
    y[o] = sum / f32(shape.kh * shape.kw);
}

// One invocation: one input element. Forward was y = Σ_window x / (kh·kw), so
// dx[b, iy, ix] = (Σ dy over the covering outputs, oy then ox ascending) / (kh·kw).
@compute @workgroup_size(WG)
fn avg_pool2d_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    let total = shape.n * shape.c * shape.h * shape.w;
    if i >= total {
        return;
    }
    let ix = i % shape.w;
    let iy = (i / shape.w) % shape.h;
    let b = i / (shape.w * shape.h);
    let oy0 = first_cover(iy, shape.kh, shape.sh, shape.ph);
    let oy1 = last_cover(iy, shape.sh, shape.ph, shape.oh);
    let ox0 = first_cover(ix, shape.kw, shape.sw, shape.pw);
    let ox1 = last_cover(ix, shape.sw, shape.pw, shape.ow);
    var sum = 0.0;
    for (var oy = oy0; oy <= oy1; oy = oy + 1u) {
        for (var ox = ox0; ox <= ox1; ox = ox + 1u) {
            sum = sum + dy[(b * shape.oh + oy) * shape.ow + ox];
        }
    }
    dx2[i] = sum / f32(shape.kh * shape.kw);
}

// One invocation: one (n, c) plane, y[b] = Σ_{hw} x[b, ·] / (h·w), summed in order.
// (Uses only n, c, h, w of the shape.)
@compute @workgroup_size(WG)
fn global_avg_pool_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = flat_index(gid, nwg);
    if b >= shape.n * shape.c {
        return;
    }
    let hw = shape.h * shape.w;
    let base = b * hw;
    // Four values are loaded before they are added (in order): four loads in flight where
    // one at a time would wait for each, the same sum bit for bit.
    var sum = 0.0;
    var i = 0u;
    for (; i + 4u <= hw; i = i + 4u) {
        let v = vec4<f32>(x[base + i], x[base + i + 1u], x[base + i + 2u], x[base + i + 3u]);
        sum = sum + v.x + v.y + v.z + v.w;
    }
    for (; i < hw; i = i + 1u) {
        sum = sum + x[base + i];
    }
    y[b] = sum / f32(hw);
}

// One invocation: one input element. Forward was y[b] = Σ x[b, ·] / (h·w), so
// dx[b, i] = dy[b] / (h·w).
@compute @workgroup_size(WG)
fn global_avg_pool_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    let hw = shape.h * shape.w;
    if i >= shape.n * shape.c * hw {
        return;
    }
    dx2[i] = dy[i / hw] / f32(hw);
}
