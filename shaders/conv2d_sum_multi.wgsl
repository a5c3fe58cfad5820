// conv2d_backward_weight_sum_multi: the split-K sums of up to GROUPED backward-weight
// passes in one dispatch (grouped_jobs.wgsl's table, which src/gpu/shaders.rs puts before
// this file): job j adds its partial slices into its dW exactly as conv2d.wgsl's
// conv2d_backward_weight_reduce does (the same loads, added in the same order), so the
// bits are the same. The GPU executor defers each pass's sum to the end of a group of
// passes whose dW nothing else touches in between, and runs the group's sums as one
// dispatch: a dispatch costs a barrier and a launch whatever its size.

const WG: u32 = 256u;

// Per job: (splits, accumulate, 0, 0).
struct SumJobs {
    jobs: array<vec4<u32>, GROUPED>,
}

@group(0) @binding(0) var<uniform> mh: GroupedTable;
@group(0) @binding(1) var<uniform> sj: SumJobs;
@group(0) @binding(2) var<storage, read> s0: array<f32>;
@group(0) @binding(3) var<storage, read> s1: array<f32>;
@group(0) @binding(4) var<storage, read> s2: array<f32>;
@group(0) @binding(5) var<storage, read> s3: array<f32>;
@group(0) @binding(6) var<storage, read> s4: array<f32>;
@group(0) @binding(7) var<storage, read> s5: array<f32>;
@group(0) @binding(8) var<storage, read> s6: array<f32>;
@group(0) @binding(9) var<storage, read> s7: array<f32>;
@group(0) @binding(10) var<storage, read_write> w0: array<f32>;
@group(0) @binding(11) var<storage, read_write> w1: array<f32>;
@group(0) @binding(12) var<storage, read_write> w2: array<f32>;
@group(0) @binding(13) var<storage, read_write> w3: array<f32>;
@group(0) @binding(14) var<storage, read_write> w4: array<f32>;
@group(0) @binding(15) var<storage, read_write> w5: array<f32>;
@group(0) @binding(16) var<storage, read_write> w6: array<f32>;
@group(0) @binding(17) var<storage, read_write> w7: array<f32>;

// Element i of job j's partial slices (j is uniform across a workgroup, so the switches do
// not diverge).
fn load_partial(j: u32, i: u32) -> f32 {
    switch j {
        case 0u: { return s0[i]; }
        case 1u: { return s1[i]; }
        case 2u: { return s2[i]; }
        case 3u: { return s3[i]; }
        case 4u: { return s4[i]; }
        case 5u: { return s5[i]; }
        case 6u: { return s6[i]; }
        default: { return s7[i]; }
    }
}

fn load_dw(j: u32, i: u32) -> f32 {
    switch j {
        case 0u: { return w0[i]; }
        case 1u: { return w1[i]; }
        case 2u: { return w2[i]; }
        case 3u: { return w3[i]; }
        case 4u: { return w4[i]; }
        case 5u: { return w5[i]; }
        case 6u: { return w6[i]; }
        default: { return w7[i]; }
    }
}

fn store_dw(j: u32, i: u32, v: f32) {
    switch j {
        case 0u: { w0[i] = v; }
        case 1u: { w1[i] = v; }
        case 2u: { w2[i] = v; }
        case 3u: { w3[i] = v; }
        case 4u: { w4[i] = v; }
        case 5u: { w5[i] = v; }
        case 6u: { w6[i] = v; }
        default: { w7[i] = v; }
    }
}

// The job table's accessors that grouped_jobs.wgsl reads it through.
fn grouped_head() -> vec3<u32> {
    return vec3<u32>(mh.n_jobs, mh.total_groups, mh.row);
}

fn grouped_job(k: u32) -> GroupedJob {
    return mh.jobs[k];
}

@compute @workgroup_size(WG)
fn conv2d_backward_weight_sum_multi(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let e = grouped_element(wid, lid);
    if (e.z == 0u) {
        return;
    }
    let j = e.x;
    let i = e.y;
    let n = grouped_job(j).len;
    let splits = sj.jobs[j].x;
    // conv2d_backward_weight_reduce's loop: eight slices loaded, then added in order.
    var sum = load_partial(j, i);
    var s = 1u;
    for (; s + 8u <= splits; s += 8u) {
        let b = s * n + i;
        let u = vec4<f32>(
            load_partial(j, b),
            load_partial(j, b + n),
            load_partial(j, b + 2u * n),
            load_partial(j, b + 3u * n),
        );
        let v = vec4<f32>(
            load_partial(j, b + 4u * n),
            load_partial(j, b + 5u * n),
            load_partial(j, b + 6u * n),
            load_partial(j, b + 7u * n),
        );
        sum = sum + u.x + u.y + u.z + u.w + v.x + v.y + v.z + v.w;
    }
    for (; s < splits; s++) {
        sum = sum + load_partial(j, s * n + i);
    }
    if (sj.jobs[j].y != 0u) {
        store_dw(j, i, load_dw(j, i) + sum);
    } else {
        store_dw(j, i, sum);
    }
}
