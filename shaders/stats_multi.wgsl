// stats_partial_multi: the partial records of up to MULTI tensors in one dispatch, so that a
// run of statistics ops costs one dispatch (and one pipeline barrier) instead of one each.
// Tensor j is bound at xj; its chunks are workgroups mp.jobs[j].first_chunk .. + chunks(len).
// Each chunk is reduced exactly as stats_partial reduces it (same order, same bits).
//
// What depends on MULTI is written by src/gpu/stats_multi.rs, which appends this file and
// stats.wgsl (with its reduction tree) to it: `const MULTI`, the bindings x0 … x{MULTI − 1},
// multi_partials_out at binding MULTI and the uniform `mp` after it, and load_x(j, i) and
// load4(j, i), which read element i (and i + WG, i + 2·WG, i + 3·WG) of tensor j through a
// switch over j (uniform across a workgroup, so it does not diverge). MULTI is what the
// device binds: up to 64 tensors, one dispatch where 16 took four.

struct MultiJob {
    len: u32,
    partial_base: u32,
    saturate: u32,
    first_chunk: u32,
    lo: f32,
    hi: f32,
    pad0: u32,
    pad1: u32,
}

struct MultiParams {
    n_jobs: u32,
    total_chunks: u32,
    pad0: u32,
    pad1: u32,
    jobs: array<MultiJob, MULTI>,
}

@compute @workgroup_size(256)
fn stats_partial_multi(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup (depends on the workgroup id only).
    if (w >= mp.total_chunks) {
        return;
    }
    // The job whose chunk range holds w: the last one starting at or before it.
    var j = 0u;
    for (var k = 1u; k < mp.n_jobs; k++) {
        if (mp.jobs[k].first_chunk <= w) {
            j = k;
        }
    }
    let job = mp.jobs[j];
    if (tid < HIST_BINS) {
        atomicStore(&hist_acc[tid], 0u);
    }
    workgroupBarrier();

    let saturate = job.saturate != 0u;
    let c = w - job.first_chunk;
    let start = c * CHUNK;
    let first = start + tid;
    var k0 = 0.0;
    if (first < job.len) {
        k0 = load_x(j, first);
    }
    var l = lane_new(k0);
    if (start + CHUNK <= job.len) {
        for (var k = 0u; k < PER; k += 4u) {
            lane_push4(&l, load4(j, first + k * WG), saturate, job.lo, job.hi);
        }
    } else {
        for (var k = 0u; k < PER; k++) {
            let i = first + k * WG;
            if (i < job.len) {
                lane_push(&l, load_x(j, i), saturate, job.lo, job.hi);
            }
        }
    }
    lane_flush_hist(l);
    let merged = tree_merge(tid, lane_acc(l));
    let r = job.partial_base + c;
    if (tid == 0u) {
        multi_partials_out[r].head = merged;
    }
    if (tid < HIST_BINS) {
        multi_partials_out[r].hist[tid] = atomicLoad(&hist_acc[tid]);
    } else if (tid < HIST_BINS + 5u) {
        multi_partials_out[r].pad[tid - HIST_BINS] = 0u;
    }
}
