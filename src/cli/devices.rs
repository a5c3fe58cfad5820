//! `gradscope devices`: every adapter, best first, as the executor would rank them.

use clap::Args;

use gradscope::Result;
use gradscope::gpu::{AdapterRequest, list_adapters};

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Only adapters of this backend (vulkan, metal, dx12, gl).
    #[arg(long)]
    backend: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

pub fn run(args: &DevicesArgs) -> Result<()> {
    let adapters = list_adapters(&AdapterRequest {
        backend: args.backend.clone(),
        adapter: None,
        ..AdapterRequest::default()
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&adapters).unwrap_or_default()
        );
        return Ok(());
    }
    if adapters.is_empty() {
        println!("no GPU adapter found; training runs on the CPU executor (--device cpu)");
        return Ok(());
    }
    for a in &adapters {
        println!("[{}] {}", a.index, a.name);
        println!(
            "    backend {}, type {}, driver {} {}",
            a.backend, a.device_type, a.driver, a.driver_info
        );
        println!(
            "    max buffer {}, max storage binding {}, workgroup ≤ {} invocations (x ≤ {}), {} bytes shared, {} groups/dim",
            mib(a.max_buffer_size),
            mib(a.max_storage_buffer_binding_size),
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroup_size_x,
            a.max_compute_workgroup_storage_size,
            a.max_compute_workgroups_per_dimension
        );
        let yes = |b: bool| if b { "yes" } else { "no" };
        let subgroups = if a.subgroups {
            let (lo, hi) = a.subgroup_sizes;
            if lo == hi {
                format!("yes ({lo} wide)")
            } else {
                format!("yes ({lo}–{hi} wide)")
            }
        } else {
            "no".to_string()
        };
        println!(
            "    {} storage buffers per stage, shader-f16 {}, timestamp queries {}, subgroups {}{}",
            a.max_storage_buffers_per_stage,
            yes(a.shader_f16),
            yes(a.timestamp_query),
            subgroups,
            if a.is_software() {
                "  (software renderer: slower than the CPU executor)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
