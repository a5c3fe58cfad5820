//! The WGSL of `stats_partial_multi` for a given number of tensors per dispatch.
//!
//! A dispatch binds each of its tensors as a storage buffer of its own, and how many a
//! shader stage may bind depends on the device: 16 on wgpu's GL backend, 48 on lavapipe's
//! Vulkan, far more on NVIDIA's, AMD's and Intel's. A fixed 16 made a resnet-20 step's 279
//! statistics ops 20 dispatches, each a launch and a pipeline barrier whatever its size
//! (about 15 µs on the H200 of 2026-11-26). So the width is the device's, up to
//! [`MAX_WIDTH`]: shaders/stats_multi.wgsl holds the kernel, and this file writes what
//! depends on the width (the bindings, one loop function per tensor and the switch that
//! picks it, `MULTI`) and joins them to shaders/stats.wgsl and its reduction tree. Each width and tree is compiled once
//! per process, under a stem of its own (`stem`), which `shaders::source` resolves.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

/// The most tensors one dispatch takes: 64 inputs and the partials fit the bind-group
/// limits every backend has where it binds that many storage buffers, and a step's
/// statistics then take a handful of dispatches.
pub const MAX_WIDTH: usize = 64;

/// The prefix of the generated stems: `stats_multi{width}`, `stats_multi{width}_subgroup`.
const PREFIX: &str = "stats_multi";
/// The suffix of the stems whose reduction tree uses subgroup operations.
const SUBGROUP: &str = "_subgroup";

/// (stem, source) of one generated module.
type Module = (&'static str, &'static str);

/// The generated module of each (width, subgroups) asked for so far: made once, and kept
/// for the process (the pipeline cache names modules by `&'static str`).
fn generated() -> &'static Mutex<HashMap<(usize, bool), Module>> {
    static CACHE: OnceLock<Mutex<HashMap<(usize, bool), Module>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// (stem, source) of the module whose `stats_partial_multi` takes `width` tensors, with the
/// subgroup reduction tree where `subgroups`.
fn entry(width: usize, subgroups: bool) -> Module {
    assert!(
        (1..=MAX_WIDTH).contains(&width),
        "stats_partial_multi takes 1 to {MAX_WIDTH} tensors, not {width}"
    );
    let mut cache = generated()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *cache.entry((width, subgroups)).or_insert_with(|| {
        let stem = format!("{PREFIX}{width}{}", if subgroups { SUBGROUP } else { "" });
        let source = source(width, subgroups);
        (
            Box::leak(stem.into_boxed_str()),
            Box::leak(source.into_boxed_str()),
        )
    })
}

/// The stem of the module whose `stats_partial_multi` takes `width` tensors (1 to
/// [`MAX_WIDTH`]), with the subgroup reduction tree where `subgroups`.
pub fn stem(width: usize, subgroups: bool) -> &'static str {
    entry(width, subgroups).0
}

/// The source of a stem `stem` made, if `stem` is one.
pub fn source_of(stem: &str) -> Option<&'static str> {
    let rest = stem.strip_prefix(PREFIX)?;
    let (digits, subgroups) = match rest.strip_suffix(SUBGROUP) {
        Some(d) => (d, true),
        None => (rest, false),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let width: usize = digits.parse().ok()?;
    (1..=MAX_WIDTH)
        .contains(&width)
        .then(|| entry(width, subgroups).1)
}

/// Whether `stem` is a generated stem with the subgroup tree.
pub fn needs_subgroups(stem: &str) -> bool {
    stem.starts_with(PREFIX) && stem.ends_with(SUBGROUP)
}

/// The module's WGSL: shaders/stats.wgsl, its reduction tree, shaders/stats_multi.wgsl, and
/// the declarations that depend on the width.
pub fn source(width: usize, subgroups: bool) -> String {
    let tree = if subgroups {
        include_str!("../../shaders/stats_tree_subgroup.wgsl")
    } else {
        include_str!("../../shaders/stats_tree.wgsl")
    };
    let mut s = String::new();
    s.push_str(include_str!("../../shaders/stats.wgsl"));
    s.push_str(tree);
    s.push_str(include_str!("../../shaders/stats_multi.wgsl"));
    // `write!` into a String cannot fail.
    let _ = writeln!(
        s,
        "\n// Written by src/gpu/stats_multi.rs for {width} tensors."
    );
    let _ = writeln!(s, "const MULTI: u32 = {width}u;");
    for j in 0..width {
        let _ = writeln!(
            s,
            "@group(0) @binding({j}) var<storage, read> x{j}: array<f32>;"
        );
    }
    let _ = writeln!(
        s,
        "@group(0) @binding({width}) var<storage, read_write> multi_partials_out: array<StatRecord>;"
    );
    let _ = writeln!(
        s,
        "@group(0) @binding({}) var<uniform> mp: MultiParams;",
        width + 1
    );
    // One lane function per tensor: stats_partial's loop over that tensor's binding.
    for j in 0..width {
        let _ = write!(
            s,
            "
fn lane_x{j}(first: u32, start: u32, job: MultiJob) -> Lane {{
    let saturate = job.saturate != 0u;
    var k0 = 0.0;
    if (first < job.len) {{
        k0 = x{j}[first];
    }}
    var l = lane_new(k0);
    if (start + CHUNK <= job.len) {{
        for (var k = 0u; k < PER; k += 4u) {{
            let i = first + k * WG;
            let v = vec4<f32>(x{j}[i], x{j}[i + WG], x{j}[i + 2u * WG], x{j}[i + 3u * WG]);
            lane_push4(&l, v, saturate, job.lo, job.hi);
        }}
    }} else {{
        for (var k = 0u; k < PER; k++) {{
            let i = first + k * WG;
            if (i < job.len) {{
                lane_push(&l, x{j}[i], saturate, job.lo, job.hi);
            }}
        }}
    }}
    return l;
}}
"
        );
    }
    let last = width - 1;
    s.push_str("\nfn chunk_lane(j: u32, first: u32, start: u32, job: MultiJob) -> Lane {\n    switch j {\n");
    for j in 0..last {
        let _ = writeln!(
            s,
            "        case {j}u: {{ return lane_x{j}(first, start, job); }}"
        );
    }
    let _ = writeln!(
        s,
        "        default: {{ return lane_x{last}(first, start, job); }}\n    }}\n}}"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_name_their_width_and_tree_and_resolve_to_their_source() {
        for (width, subgroups) in [(1, false), (16, false), (47, true), (MAX_WIDTH, false)] {
            let stem = stem(width, subgroups);
            assert_eq!(needs_subgroups(stem), subgroups, "{stem}");
            let src = source_of(stem).expect("a generated stem resolves");
            assert!(
                src.contains(&format!("const MULTI: u32 = {width}u;")),
                "{stem}"
            );
            assert!(src.contains(&format!("fn lane_x{}(", width - 1)), "{stem}");
            assert!(!src.contains(&format!("fn lane_x{width}(")), "{stem}");
            // Asked again: the same module, not a second copy.
            assert!(std::ptr::eq(src, source_of(stem).unwrap()));
        }
        for not_ours in [
            "stats",
            "stats_multi",
            "stats_multi0",
            "stats_multi65",
            "stats_multix",
        ] {
            assert!(source_of(not_ours).is_none(), "{not_ours}");
        }
    }
}
