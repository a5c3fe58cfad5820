// stats_partial_multi: the partial records of up to MULTI tensors in one dispatch, so that a
// run of statistics ops costs one dispatch (and one pipeline barrier) instead of one each.
// Tensor j is bound at xj; its chunks are workgroups mp.jobs[j].first_chunk .. + chunks(len).
// Each chunk is reduced exactly as stats_partial reduces it (same order, same bits).
//
// What depends on MULTI is written by src/gpu/stats_multi.rs, which appends it to this file
// and stats.wgsl (with its reduction tree): `const MULTI`, the bindings x0 … x{MULTI − 1},
// multi_partials_out at binding MULTI and the uniform `mp` after it, and
// chunk_lane(j, first, start, job), an invocation's lane over its values of the chunk at
// `start` of tensor j: one function per tensor, each stats_partial's loop over its own
// binding, chosen by one switch over j (uniform across a workgroup, so it does not
// diverge). With the switch in the loop instead, once per four values, 47 tensors took a
// resnet-20 step's statistics on lavapipe from about 53 to about 70 ms. MULTI is what the
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

    let c = w - job.first_chunk;
    let start = c * CHUNK;
    let l = chunk_lane(j, start + tid, start, job);
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
