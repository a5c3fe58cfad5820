// The statistics records' fixed merge tree in workgroup memory (appended to stats.wgsl for
// adapters without subgroup operations; stats_tree_subgroup.wgsl is the other choice).
//
// Lane t absorbs lane t + s for s = WG/2, …, 1; every invocation returns the result. Every
// invocation of the workgroup must call it (it contains barriers), and the histogram's
// atomics are final when it returns.
fn tree_merge(tid: u32, a: Acc) -> Acc {
    lanes[tid] = a;
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (tid < s) {
            lanes[tid] = acc_merge(lanes[tid], lanes[tid + s]);
        }
    }
    workgroupBarrier();
    return lanes[0];
}
