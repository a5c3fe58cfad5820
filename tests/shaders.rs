//! Every WGSL source parses and validates with naga, the compiler wgpu itself uses: a
//! shader error is caught here, without a GPU.

use gradscope::gpu::shaders::ALL;
use gradscope::gpu::stats_multi;

#[test]
fn every_shader_parses_and_validates() {
    assert!(!ALL.is_empty());
    // The generated statistics modules (`gpu::stats_multi`): the narrowest, GL's and
    // lavapipe's widths, and the widest, each with both reduction trees.
    let generated: Vec<(String, String)> = [2, 15, 16, 47, stats_multi::MAX_WIDTH]
        .into_iter()
        .flat_map(|w| [false, true].map(|sg| (w, sg)))
        .map(|(w, sg)| {
            let stem = stats_multi::stem(w, sg).to_string();
            (stem, stats_multi::source(w, sg))
        })
        .collect();
    let all = ALL
        .iter()
        .map(|(n, s)| (*n, *s))
        .chain(generated.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    for (name, source) in all {
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

/// No shader indexes function memory (a local array or vector), or an array held as a
/// value, by a runtime value. Such an array stays in registers only if the driver unrolls
/// the loop first (naga itself spills an array value indexed at run time to a function
/// variable); NVIDIA's Vulkan compiler did not, and the register-blocked GEMMs, whose
/// accumulators were indexed by loop variables, ran from local memory at a tenth of the
/// speed. A component of a vector value chosen at run time is allowed.
#[test]
fn no_shader_indexes_local_arrays_at_runtime() {
    let mut found = Vec::new();
    for (stem, source) in ALL {
        let module = naga::front::wgsl::parse_str(source).expect("parses (checked above)");
        let caps = if gradscope::gpu::shaders::needs_subgroups(stem) {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .expect("validates (checked above)");
        let functions = module.functions.iter().map(|(h, f)| (f, &info[h])).chain(
            module
                .entry_points
                .iter()
                .enumerate()
                .map(|(i, e)| (&e.function, info.get_entry_point(i))),
        );
        for (f, fi) in functions {
            for (h, expr) in f.expressions.iter() {
                let naga::Expression::Access { base, .. } = *expr else {
                    continue;
                };
                let value_array = matches!(
                    fi[base].ty.inner_with(&module.types),
                    naga::TypeInner::Array { .. }
                );
                if value_array || in_function_memory(&module, f, base) {
                    found.push(format!("shaders/{stem}.wgsl: {:?} ({h:?})", f.name));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "runtime index into a local array:\n{}",
        found.join("\n")
    );
}
