//! Every WGSL source of the crate, embedded at build time. Each stem pairs with a launcher
//! in `gpu::kernels::<stem>` and a CPU twin in `cpu::<stem>`.

/// (stem, source) of every shader; the naga test validates each one.
pub const ALL: &[(&str, &str)] = &[
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    ("bias", include_str!("../../shaders/bias.wgsl")),
    ("activation", include_str!("../../shaders/activation.wgsl")),
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
    ("recurrent", include_str!("../../shaders/recurrent.wgsl")),
    ("embedding", include_str!("../../shaders/embedding.wgsl")),
];

/// The source of `shaders/<stem>.wgsl`.
pub fn source(stem: &str) -> Option<&'static str> {
    ALL.iter().find(|(s, _)| *s == stem).map(|(_, src)| *src)
}
