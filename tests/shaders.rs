//! Every WGSL source parses and validates with naga, the compiler wgpu itself uses: a
//! shader error is caught here, without a GPU.

use gradscope::gpu::shaders::ALL;

#[test]
fn every_shader_parses_and_validates() {
    assert!(!ALL.is_empty());
    for (name, source) in ALL {
        assert!(!source.trim().is_empty(), "shaders/{name}.wgsl is empty");
        let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| {
            panic!(
                "shaders/{name}.wgsl does not parse:\n{}",
                e.emit_to_string(source)
            )
        });
        // A subgroup stem is validated with that capability only, every other with none:
        // what each needs is exactly what it is allowed.
        let caps = if gradscope::gpu::shaders::needs_subgroups(name) {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        validator.validate(&module).unwrap_or_else(|e| {
            panic!(
                "shaders/{name}.wgsl does not validate:\n{}",
                e.emit_to_string(source)
            )
        });
        assert!(
            module
                .entry_points
                .iter()
                .all(|e| e.stage == naga::ShaderStage::Compute),
            "shaders/{name}.wgsl has a non-compute entry point"
        );
    }
}

#[test]
fn a_broken_shader_is_caught() {
    // The check above can fail: a type error is rejected.
    let bad = "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }";
    let parsed = naga::front::wgsl::parse_str(bad);
    let invalid = match parsed {
        Err(_) => true,
        Ok(m) => naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&m)
        .is_err(),
    };
    assert!(invalid);
}
