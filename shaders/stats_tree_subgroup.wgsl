// The statistics records' fixed merge tree with its last levels in subgroup registers
// (appended to stats.wgsl where the adapter has subgroup operations).
//
// The same tree as stats_tree.wgsl, with the same bits: lane t absorbs lane t + s for
// s = WG/2, …, 1. The levels s ≥ SG run in workgroup memory, one barrier each; after them
// lanes[0 .. SG) hold the values the last log2(SG) levels merge. Every subgroup then reads
// those SG values by its own lane index (subgroupExclusiveAdd(1) of a full subgroup), so
// nothing assumes how the driver maps local invocations to subgroups, and merges them with
// shuffles: at level s, lane t < s absorbs the value of lane t + s, which lane t + s
// computed at level 2s — the workgroup tree's order exactly. Lane 0 of every subgroup ends
// with the result, which a broadcast hands to each invocation (invocation 0 included,
// wherever it lies), so SG need only be at most the adapter's smallest subgroup size.
//
// SG: the adapter's minimum subgroup size (a power of two, 4 to 128), set by the launcher.

override SG: u32 = 32u;

fn shuffle_down_acc(a: Acc, s: u32) -> Acc {
    return Acc(
        subgroupShuffleDown(a.finite, s),
        subgroupShuffleDown(a.nan, s),
        subgroupShuffleDown(a.inf, s),
        subgroupShuffleDown(a.zeros, s),
        subgroupShuffleDown(a.saturated, s),
        subgroupShuffleDown(a.mean, s),
        subgroupShuffleDown(a.m2s, s),
        subgroupShuffleDown(a.mn, s),
        subgroupShuffleDown(a.mx, s),
        subgroupShuffleDown(a.scale, s),
        subgroupShuffleDown(a.ssq, s),
    );
}

fn broadcast_first_lane(a: Acc) -> Acc {
    return Acc(
        subgroupBroadcast(a.finite, 0u),
        subgroupBroadcast(a.nan, 0u),
        subgroupBroadcast(a.inf, 0u),
        subgroupBroadcast(a.zeros, 0u),
        subgroupBroadcast(a.saturated, 0u),
        subgroupBroadcast(a.mean, 0u),
        subgroupBroadcast(a.m2s, 0u),
        subgroupBroadcast(a.mn, 0u),
        subgroupBroadcast(a.mx, 0u),
        subgroupBroadcast(a.scale, 0u),
        subgroupBroadcast(a.ssq, 0u),
    );
}

fn tree_merge(tid: u32, a: Acc) -> Acc {
    lanes[tid] = a;
    for (var s = WG / 2u; s >= SG; s = s >> 1u) {
        workgroupBarrier();
        if (tid < s) {
            lanes[tid] = acc_merge(lanes[tid], lanes[tid + s]);
        }
    }
    workgroupBarrier();
    let lane = subgroupExclusiveAdd(1u);
    var v = acc_empty();
    if (lane < SG) {
        v = lanes[lane];
    }
    for (var s = SG / 2u; s > 0u; s = s >> 1u) {
        let other = shuffle_down_acc(v, s);
        if (lane < s) {
            v = acc_merge(v, other);
        }
    }
    return broadcast_first_lane(v);
}
