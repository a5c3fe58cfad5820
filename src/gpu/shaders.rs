//! Every WGSL source of the crate, embedded at build time. Each stem pairs with a launcher
//! in `gpu::kernels::<stem>` and a CPU twin in `cpu::<stem>`.

/// (stem, source) of every shader; the naga test validates each one. A source may be the
/// concatenation of a shared file of functions (no bindings, no entry points) and the
/// stem's own file: WGSL has no include, and this keeps each formula in one place.
pub const ALL: &[(&str, &str)] = &[
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    (
        "matmul_tiled",
        concat!(
            include_str!("../../shaders/activation_math.wgsl"),
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
    ("optimizer", include_str!("../../shaders/optimizer.wgsl")),
    ("stats", include_str!("../../shaders/stats.wgsl")),
    ("clip", include_str!("../../shaders/clip.wgsl")),
    ("pool2d", include_str!("../../shaders/pool2d.wgsl")),
    ("dropout", include_str!("../../shaders/dropout.wgsl")),
    ("add", include_str!("../../shaders/add.wgsl")),
    ("batchnorm", include_str!("../../shaders/batchnorm.wgsl")),
    ("layernorm", include_str!("../../shaders/layernorm.wgsl")),
    ("conv2d", include_str!("../../shaders/conv2d.wgsl")),
    (
        "conv2d_tiled",
        include_str!("../../shaders/conv2d_tiled.wgsl"),
    ),
];

/// The source of `shaders/<stem>.wgsl`.
pub fn source(stem: &str) -> Option<&'static str> {
    ALL.iter().find(|(s, _)| *s == stem).map(|(_, src)| *src)
}
