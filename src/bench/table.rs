//! The console form of a bench: a header naming the machine, then one row per result.

use super::result::{KernelResult, Machine, SideResult};

/// Lines naming the CPU, the adapter and driver, and how GPU times were taken.
pub fn header(m: &Machine, warmup: usize, repeats: usize) -> String {
    let convs = match m.cpu_conv_direct {
        Some(isa) => format!("direct {isa} stride-1 convolutions"),
        None => "convolutions by im2col + GEMM".to_string(),
    };
    let plural = if m.cpu_threads == 1 { "" } else { "s" };
    let mut s = format!(
        "gradscope {} bench, started {}\nCPU: {} ({} thread{plural}, {convs})\n",
        env!("CARGO_PKG_VERSION"),
        m.started_utc,
        m.cpu,
        m.cpu_threads
    );
    match &m.adapter {
        Some(a) => {
            s += &format!(
                "GPU: {} — backend {}, {} adapter, driver {}{}\n",
                a.name,
                a.backend,
                a.device_type,
                a.driver,
                if a.driver_info.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", a.driver_info)
                }
            );
            if a.device_type == "cpu" {
                s += "     (a software adapter: its times say nothing about GPU hardware)\n";
            }
        }
        None => s += "GPU: not measured\n",
    }
    if let Some(note) = &m.gpu_timing_note {
        s += &format!("GPU kernel times: {note}");
        if let Some(p) = m.timestamp_period_ns {
            s += &format!(", {p} ns per tick");
        }
        s += "; training steps: host clock from the call to the step's report\n";
    }
    s += &format!(
        "median of {repeats} runs after {warmup} warm-up runs; gpu/cpu = CPU time / GPU time; \
         err = max |gpu − cpu| / max |cpu| of the outputs\n\n"
    );
    s += &format!(
        "{:<34} {:<48} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}  {}\n",
        "kernel", "shape", "cpu ms", "cpu", "gpu ms", "gpu", "gpu/cpu", "err", "unit"
    );
    s
}

fn side(r: Option<&SideResult>) -> (String, String) {
    match r {
        Some(s) => (
            format!("{:.3}", s.median_s * 1e3),
            format!("{:.2}", s.throughput),
        ),
        None => ("-".into(), "-".into()),
    }
}

/// One result as a table row (with a marker when the check failed).
pub fn row(r: &KernelResult) -> String {
    let (cm, ct) = side(r.cpu.as_ref());
    let (gm, gt) = side(r.gpu.as_ref());
    let ratio = r
        .gpu_over_cpu
        .map_or_else(|| "-".into(), |v| format!("{v:.2}"));
    let err = r.max_rel_error.map_or_else(
        || "-".into(),
        |v| {
            if v == 0.0 {
                "0".into()
            } else {
                format!("{v:.1e}")
            }
        },
    );
    let mark = if r.failed() { "  FAILED" } else { "" };
    format!(
        "{:<34} {:<48} {cm:>9} {ct:>9} {gm:>9} {gt:>9} {ratio:>8} {err:>9}  {}{mark}\n",
        r.name, r.shape, r.unit
    )
}
