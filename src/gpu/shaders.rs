//! Every WGSL source of the crate, embedded at build time. Each stem pairs with a launcher
//! in `gpu::kernels::<stem>` and a CPU twin in `cpu::<stem>`.

/// (stem, source) of every shader; the naga test validates each one. A source may be the
/// concatenation of a shared file of functions (no bindings, no entry points) and the
/// stem's own file: WGSL has no include, and this keeps each formula in one place.
pub const ALL: &[(&str, &str)] = &[
    (
        "matmul",
        concat!(
            include_str!("../../shaders/gemm_invocation.wgsl"),
            include_str!("../../shaders/matmul.wgsl")
        ),
    ),
    (
        "matmul_tiled",
        concat!(
            include_str!("../../shaders/activation_math.wgsl"),
            include_str!("../../shaders/gemm_invocation.wgsl"),
            include_str!("../../shaders/matmul_tiled.wgsl")
        ),
    ),
    ("bias", include_str!("../../shaders/bias.wgsl")),
    (
        "activation",
        concat!(
            include_str!("../../shaders/activation_math.wgsl"),
            include_str!("../../shaders/activation.wgsl")
        ),
    ),
    ("loss", include_str!("../../shaders/loss.wgsl")),
    (
        "optimizer",
        concat!(
            include_str!("../../shaders/optimizer_math.wgsl"),
            include_str!("../../shaders/optimizer.wgsl")
        ),
    ),
    (
        "optimizer_multi",
        concat!(
            include_str!("../../shaders/optimizer_math.wgsl"),
            include_str!("../../shaders/grouped_jobs.wgsl"),
            include_str!("../../shaders/optimizer_multi.wgsl")
        ),
    ),
    (
        "stats",
        concat!(
            include_str!("../../shaders/stats.wgsl"),
            include_str!("../../shaders/stats_tree.wgsl")
        ),
    ),
    (
        "stats_subgroup",
        concat!(
            include_str!("../../shaders/stats.wgsl"),
            include_str!("../../shaders/stats_tree_subgroup.wgsl")
        ),
    ),
    (
        "conv2d_sum_multi",
        concat!(
            include_str!("../../shaders/grouped_jobs.wgsl"),
            include_str!("../../shaders/conv2d_sum_multi.wgsl")
        ),
    ),
    (
        "clip",
        concat!(
            include_str!("../../shaders/grouped_jobs.wgsl"),
            include_str!("../../shaders/clip.wgsl")
        ),
    ),
    ("pool2d", include_str!("../../shaders/pool2d.wgsl")),
    ("dropout", include_str!("../../shaders/dropout.wgsl")),
    (
        "add",
        concat!(
            include_str!("../../shaders/activation_math.wgsl"),
            include_str!("../../shaders/add.wgsl")
        ),
    ),
    (
        "batchnorm",
        concat!(
            include_str!("../../shaders/activation_math.wgsl"),
            include_str!("../../shaders/batchnorm.wgsl"),
            include_str!("../../shaders/workgroup_tree_common.wgsl"),
            include_str!("../../shaders/workgroup_tree.wgsl")
        ),
    ),
    (
        "batchnorm_subgroup",
        concat!(
            include_str!("../../shaders/activation_math.wgsl"),
            include_str!("../../shaders/batchnorm.wgsl"),
            include_str!("../../shaders/workgroup_tree_common.wgsl"),
            include_str!("../../shaders/workgroup_tree_subgroup.wgsl")
        ),
    ),
    (
        "layernorm",
        concat!(
            include_str!("../../shaders/layernorm.wgsl"),
            include_str!("../../shaders/workgroup_tree_common.wgsl"),
            include_str!("../../shaders/workgroup_tree.wgsl")
        ),
    ),
    (
        "layernorm_subgroup",
        concat!(
            include_str!("../../shaders/layernorm.wgsl"),
            include_str!("../../shaders/workgroup_tree_common.wgsl"),
            include_str!("../../shaders/workgroup_tree_subgroup.wgsl")
        ),
    ),
    (
        "conv2d",
        concat!(
            include_str!("../../shaders/gemm_invocation.wgsl"),
            include_str!("../../shaders/conv2d.wgsl")
        ),
    ),
    (
        "conv2d_tiled",
        concat!(
            include_str!("../../shaders/gemm_invocation.wgsl"),
            include_str!("../../shaders/conv2d_tiled.wgsl")
        ),
    ),
    ("recurrent", include_str!("../../shaders/recurrent.wgsl")),
    ("embedding", include_str!("../../shaders/embedding.wgsl")),
];

/// The source of `shaders/<stem>.wgsl`, or of a stem `gpu::stats_multi` generates for the
/// device's width.
pub fn source(stem: &str) -> Option<&'static str> {
    ALL.iter()
        .find(|(s, _)| *s == stem)
        .map(|(_, src)| *src)
        .or_else(|| super::stats_multi::source_of(stem))
}

/// Shaders compiled without two of wgpu's injected runtime checks (bounds checks stay on):
///
/// - loop bounding: a counter and a break added to every loop, in case a loop never ends.
///   In a register-blocked GEMM it turns the constant trip counts of the inner loops into
///   unknown ones, so the driver may no longer unroll them, and an accumulator array indexed
///   by a loop variable then lives in memory instead of registers. Every loop of these
///   shaders ends: bounds are override constants or uniforms, steps are positive constants
///   (or halvings of a power of two).
/// - integer-division checks: a select guarding each `/` and `%` against a zero divisor.
///   Their divisors are constants or sizes the launchers have validated as ≥ 1
///   (`Conv2dShape::validate`, non-zero matmul sizes).
pub const NO_LOOP_BOUNDING: &[&str] = &["matmul", "matmul_tiled", "conv2d", "conv2d_tiled"];

/// The stems that use subgroup operations: compiled only on a device with
/// `Features::SUBGROUP` (a module using them fails validation elsewhere), each the
/// counterpart of a portable stem that gives the same bits.
pub const NEEDS_SUBGROUPS: &[&str] =
    &["stats_subgroup", "batchnorm_subgroup", "layernorm_subgroup"];

/// Whether `stem` uses subgroup operations (see [`NEEDS_SUBGROUPS`]).
pub fn needs_subgroups(stem: &str) -> bool {
    NEEDS_SUBGROUPS.contains(&stem) || super::stats_multi::needs_subgroups(stem)
}

/// Whether `stem` is compiled as described at [`NO_LOOP_BOUNDING`].
pub fn trusted(stem: &str) -> bool {
    NO_LOOP_BOUNDING.contains(&stem)
}
