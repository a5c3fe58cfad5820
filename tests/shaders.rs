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

/// The register-blocked kernels (those compiled without loop bounding) index their
/// function-local arrays, the accumulators and staged registers, by constants only. A
/// local array indexed by a runtime value stays in registers only if the driver unrolls
/// the loop first; NVIDIA's Vulkan compiler did not, and such kernels ran from local
/// memory at a tenth of the speed.
#[test]
fn register_blocked_kernels_index_registers_by_constants() {
    for &stem in gradscope::gpu::shaders::NO_LOOP_BOUNDING {
        let source = gradscope::gpu::shaders::source(stem).expect("a listed stem exists");
        let module = naga::front::wgsl::parse_str(source).expect("parses (checked above)");
        let functions = module
            .functions
            .iter()
            .map(|(_, f)| f)
            .chain(module.entry_points.iter().map(|e| &e.function));
        for f in functions {
            for (_, expr) in f.expressions.iter() {
                if let naga::Expression::Access { base, .. } = *expr {
                    assert!(
                        !in_function_memory(&module, f, base),
                        "shaders/{stem}.wgsl: function {:?} indexes a local array by a \
                         runtime value",
                        f.name
                    );
                }
            }
        }
    }
}

/// Whether `e` points into a function's own variables (a local, or a pointer argument in
/// the function address space), through any chain of accesses.
fn in_function_memory(
    module: &naga::Module,
    f: &naga::Function,
    e: naga::Handle<naga::Expression>,
) -> bool {
    match f.expressions[e] {
        naga::Expression::Access { base, .. } | naga::Expression::AccessIndex { base, .. } => {
            in_function_memory(module, f, base)
        }
        naga::Expression::LocalVariable(_) => true,
        naga::Expression::FunctionArgument(i) => matches!(
            module.types[f.arguments[i as usize].ty].inner,
            naga::TypeInner::Pointer {
                space: naga::AddressSpace::Function,
                ..
            }
        ),
        _ => false,
    }
}
