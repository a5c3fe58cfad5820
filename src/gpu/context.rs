//! The GPU context: one adapter, its device and queue, built once per process.
//!
//! Adapter choice ranks discrete > integrated > virtual > software (CPU), so a headless
//! cloud machine with a real card never lands on lavapipe by accident. The device gets the
//! adapter's own limits (wgpu would otherwise hand out conservative defaults that refuse
//! buffers a real card holds easily). wgpu's default error handler panics; ours records the
//! error, and every public entry point turns it into an `Error` of ours.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// How the user asked for an adapter.
#[derive(Clone, Debug, Default)]
pub struct AdapterRequest {
    /// `vulkan`, `metal`, `dx12` or `gl`; `None` means every backend (or `WGPU_BACKEND`).
    pub backend: Option<String>,
    /// An index into `gradscope devices`' list, or a case-insensitive name substring.
    pub adapter: Option<String>,
    /// A test and diagnostic knob: caps the storage-binding limit the device is opened with (and that [`GpuContext::check_size`] enforces) at this many
    /// bytes, so the refusal of oversized tensors can be exercised on a small model. `None`
    /// reads `GRADSCOPE_MAX_STORAGE_BINDING` (bytes) from the environment, else keeps the
    /// adapter's own limits. A cap above the adapter's limit changes nothing.
    pub max_storage_binding: Option<u64>,
}

/// Set to `0` (or `off`) to keep the reduction kernels off subgroup operations, for
/// comparison or on a driver whose subgroups misbehave.
pub const SUBGROUPS_ENV: &str = "GRADSCOPE_SUBGROUPS";

fn subgroups_allowed() -> bool {
    !matches!(
        std::env::var(SUBGROUPS_ENV)
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "0" | "off" | "false" | "no"
    )
}

/// The environment variable behind [`AdapterRequest::max_storage_binding`].
pub const MAX_STORAGE_BINDING_ENV: &str = "GRADSCOPE_MAX_STORAGE_BINDING";

impl AdapterRequest {
    /// The storage-binding cap asked for, by field or environment.
    pub fn storage_binding_cap(&self) -> Result<Option<u64>> {
        if let Some(cap) = self.max_storage_binding {
            return Ok(Some(cap));
        }
        match std::env::var(MAX_STORAGE_BINDING_ENV) {
            Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map(Some).map_err(|_| {
                Error::config(format!(
                    "{MAX_STORAGE_BINDING_ENV}=`{v}` is not a byte count (a whole number)"
                ))
            }),
            _ => Ok(None),
        }
    }
}

/// What a user needs to know about one adapter (the `gradscope devices` listing).
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub shader_f16: bool,
    pub timestamp_query: bool,
    pub subgroups: bool,
    /// The adapter's smallest and largest subgroup sizes (meaningful with `subgroups`).
    pub subgroup_sizes: (u32, u32),
    /// Storage buffers one shader stage may bind: the grouped dispatches need 17 (statistics)
    /// and 40 (optimizer).
    pub max_storage_buffers_per_stage: u32,
}

impl AdapterSummary {
    fn new(index: usize, adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        AdapterSummary {
            index,
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: device_type_name(info.device_type).to_string(),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_workgroup_size_x: limits.max_compute_workgroup_size_x,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
            max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
        }
    }

    /// True for CPU-emulated adapters such as lavapipe or WARP.
    pub fn is_software(&self) -> bool {
        self.device_type == "cpu"
    }

    /// One line naming the adapter, for logs and summaries.
    pub fn describe(&self) -> String {
        let driver = if self.driver_info.is_empty() {
            self.driver.clone()
        } else {
            format!("{} {}", self.driver, self.driver_info)
        };
        format!(
            "{} ({}, {}, driver {})",
            self.name,
            self.backend,
            self.device_type,
            driver.trim()
        )
    }
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Lower is better: the order in which adapters are preferred.
fn device_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    // Prefer the native compute APIs over GL, which lacks much of what compute needs.
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

fn parse_backends(request: &AdapterRequest) -> Result<wgpu::Backends> {
    let name = match &request.backend {
        Some(b) => b.clone(),
        None => match std::env::var("WGPU_BACKEND") {
            Ok(b) if !b.trim().is_empty() => b,
            _ => return Ok(wgpu::Backends::all()),
        },
    };
    let mut backends = wgpu::Backends::empty();
    for part in name.split(',') {
        backends |= match part.trim().to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            other => {
                return Err(Error::config(format!(
                    "unknown backend `{other}`; use one of vulkan, metal, dx12, gl"
                )));
            }
        };
    }
    Ok(backends)
}

fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter on the requested backends, best first.
fn ranked_adapters(request: &AdapterRequest) -> Result<(wgpu::Instance, Vec<wgpu::Adapter>)> {
    let backends = parse_backends(request)?;
    let instance = new_instance(backends);
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (device_rank(info.device_type), backend_rank(info.backend))
    });
    Ok((instance, adapters))
}

/// Lists every adapter, best first, as `gradscope devices` shows them.
pub fn list_adapters(request: &AdapterRequest) -> Result<Vec<AdapterSummary>> {
    let (_, adapters) = ranked_adapters(request)?;
    Ok(adapters
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterSummary::new(i, a))
        .collect())
}

/// Errors reported by wgpu's callbacks, waiting to be turned into ours.
#[derive(Default)]
struct ErrorSink {
    gpu: Vec<String>,
    lost: Option<String>,
}

/// A device ready for compute, with everything a launcher needs.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The subgroup width the reduction kernels shuffle over (the adapter's smallest
    /// subgroup size), or `None` for their workgroup-memory trees: no `Features::SUBGROUP`,
    /// an unusable size, or `GRADSCOPE_SUBGROUPS=0`. Both give the same bits; a test may
    /// set it to `None` on its own context to run the portable kernels.
    pub subgroup_size: Option<u32>,
    errors: Arc<Mutex<ErrorSink>>,
    pub(crate) pipelines: super::pipeline_cache::PipelineCache,
    // Kept alive for the device's lifetime.
    _instance: wgpu::Instance,
}

impl GpuContext {
    /// Opens the best adapter, or the one the request names.
    pub fn new(request: &AdapterRequest) -> Result<Self> {
        let (instance, adapters) = ranked_adapters(request)?;
        if adapters.is_empty() {
            // Name what was asked for, so the error answers the user's own request.
            let mut detail = request
                .adapter
                .as_deref()
                .map_or_else(String::new, |sel| selector_detail(sel, 0));
            if let Some(b) = &request.backend {
                detail += &format!(" on backend `{b}`");
            }
            return Err(Error::NoAdapter { detail });
        }
        let index = match &request.adapter {
            None => 0,
            Some(sel) => select_adapter(&adapters, sel)?,
        };
        let adapter = &adapters[index];
        let summary = AdapterSummary::new(index, adapter);

        // Ask for everything the adapter has that we use; the limits are the adapter's own.
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let mut limits = adapter.limits();
        if let Some(cap) = request.storage_binding_cap()? {
            // Opening the device with the lowered limits makes wgpu enforce them too, so a
            // buffer that slipped past `check_size` would be a caught validation error.
            // wgpu requires storage bindings to be multiples of 4 bytes.
            let cap = (cap / 4 * 4).max(4);
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("gradscope"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            Error::DeviceRequest {
                adapter: summary.name.clone(),
                reason: e.to_string(),
            }
        })?;

        let errors = Arc::new(Mutex::new(ErrorSink::default()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut s) = sink.lock() {
                s.gpu.push(e.to_string());
            }
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut s) = sink.lock() {
                // A deliberate destroy at shutdown is not a loss worth reporting.
                if reason != wgpu::DeviceLostReason::Destroyed {
                    s.lost = Some(format!("{reason:?}: {message}"));
                }
            }
        });

        let min_size = adapter.get_info().subgroup_min_size;
        let subgroup_size = (features.contains(wgpu::Features::SUBGROUP)
            && min_size.is_power_of_two()
            && (4..=128).contains(&min_size)
            && subgroups_allowed())
        .then_some(min_size);
        Ok(GpuContext {
            pipelines: super::pipeline_cache::PipelineCache::default(),
            device,
            queue,
            adapter: summary,
            limits,
            features,
            subgroup_size,
            errors,
            _instance: instance,
        })
    }

    /// Turns any error wgpu reported since the last check into ours. `during` names the
    /// phase (plan, step 12, readback) so the message says where it happened.
    pub fn check(&self, during: &str) -> Result<()> {
        let mut sink = self.errors.lock().map_err(|_| Error::Gpu {
            during: during.to_string(),
            message: "error sink poisoned".into(),
        })?;
        // A lost device stays lost: every later check reports it again.
        if let Some(reason) = sink.lost.clone() {
            return Err(Error::DeviceLost { reason });
        }
        if !sink.gpu.is_empty() {
            let message = sink.gpu.drain(..).collect::<Vec<_>>().join("; ");
            return Err(Error::Gpu {
                during: during.to_string(),
                message,
            });
        }
        Ok(())
    }

    /// Waits until the queue is idle.
    pub fn wait_idle(&self, during: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                during: during.to_string(),
                message: e.to_string(),
            })?;
        self.check(during)
    }

    /// Whether the device has been reported lost.
    pub fn is_lost(&self) -> bool {
        self.errors.lock().map(|s| s.lost.is_some()).unwrap_or(true)
    }

    /// A test and diagnostic hook: records a device loss and destroys the device, as a
    /// driver reset or a removed GPU would. (A plain `device.destroy()` is not reported: the
    /// lost callback treats a deliberate destroy as a shutdown.) Every later check, step or
    /// readback on this context returns [`Error::DeviceLost`]; the context cannot recover,
    /// a new one must be opened.
    pub fn simulate_device_loss(&self) {
        if let Ok(mut s) = self.errors.lock() {
            s.lost
                .get_or_insert_with(|| "simulated device loss (device destroyed)".to_string());
        }
        self.device.destroy();
    }

    /// Refuses a buffer that the device cannot hold or bind, before any wgpu call.
    pub fn check_size(&self, tensor: &str, bytes: u64) -> Result<()> {
        let binding = self.limits.max_storage_buffer_binding_size;
        if bytes > binding {
            return Err(Error::TooLarge {
                tensor: tensor.to_string(),
                bytes,
                limit: binding,
                what: "storage binding",
            });
        }
        if bytes > self.limits.max_buffer_size {
            return Err(Error::TooLarge {
                tensor: tensor.to_string(),
                bytes,
                limit: self.limits.max_buffer_size,
                what: "buffer",
            });
        }
        Ok(())
    }
}

fn select_adapter(adapters: &[wgpu::Adapter], sel: &str) -> Result<usize> {
    let missing = || Error::NoAdapter {
        detail: selector_detail(sel, adapters.len()),
    };
    if let Ok(i) = sel.parse::<usize>() {
        return if i < adapters.len() {
            Ok(i)
        } else {
            Err(missing())
        };
    }
    let needle = sel.to_ascii_lowercase();
    adapters
        .iter()
        .position(|a| a.get_info().name.to_ascii_lowercase().contains(&needle))
        .ok_or_else(missing)
}

/// What `--adapter SEL` asked for, for `Error::NoAdapter` ("no GPU adapter found …"), on a
/// machine with `count` adapters.
fn selector_detail(sel: &str, count: usize) -> String {
    let asked = match sel.parse::<usize>() {
        Ok(i) => format!(" with index {i}"),
        Err(_) => format!(" whose name contains `{sel}`"),
    };
    match count {
        0 => format!("{asked} (this machine has none)"),
        1 => format!("{asked} (there is 1)"),
        n => format!("{asked} (there are {n})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--adapter` is named in the error whatever the machine has, none included (the
    /// message then must not send the user looking for an adapter list that is empty
    /// without saying so).
    #[test]
    fn a_missing_adapter_is_named_with_the_count() {
        assert_eq!(
            selector_detail("rtx", 0),
            " whose name contains `rtx` (this machine has none)"
        );
        assert_eq!(selector_detail("3", 1), " with index 3 (there is 1)");
        assert_eq!(
            selector_detail("h100", 2),
            " whose name contains `h100` (there are 2)"
        );
        let e = Error::NoAdapter {
            detail: selector_detail("rtx", 0),
        };
        assert!(
            e.to_string().contains("`rtx` (this machine has none)"),
            "{e}"
        );
    }
}
