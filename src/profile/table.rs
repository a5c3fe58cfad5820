//! The console form of a profile: the step's time by kind of op, by kernel, by layer, and
//! the slowest ops.

use super::Profile;

/// Ops listed individually (the rest are in the JSON).
const TOP_OPS: usize = 12;

fn ms(s: f64) -> String {
    format!("{:.3}", s * 1e3)
}

fn bar(fraction: f64) -> String {
    "█".repeat((fraction * 30.0).round().clamp(0.0, 30.0) as usize)
}

pub fn render(p: &Profile) -> String {
    let mut s = format!(
        "profile: {} — {}\n  {} steps profiled, the first left out of the means ({} counted); \
         ops sum to {} ms per step, a profiled step takes {} ms on the host clock\n",
        p.executor,
        p.method,
        p.steps_run,
        p.steps_counted,
        ms(p.op_seconds),
        ms(p.step_seconds)
    );
    if let (Some(e), Some(sub)) = (p.host_encode_seconds, p.host_submit_seconds) {
        s += &format!(
            "  host: {} ms to encode a step's command buffer, {} ms to submit it\n",
            ms(e),
            ms(sub)
        );
    }
    if let Some(d) = p.dispatches_per_step {
        s += &format!("  {d} dispatches in a step with full statistics\n");
    }
    s += &format!("\n{:<12} {:>10} {:>7}\n", "kind", "ms/step", "share");
    for k in &p.by_kind {
        s += &format!(
            "{:<12} {:>10} {:>6.1}%  {}\n",
            k.name,
            ms(k.seconds),
            100.0 * k.fraction,
            bar(k.fraction)
        );
    }
    let dispatches = p.by_kernel.iter().any(|k| k.dispatches.is_some());
    s += &format!(
        "\n{:<34} {:>4}{} {:>10} {:>7}\n",
        "kernel",
        "ops",
        if dispatches { "  dispatches" } else { "" },
        "ms/step",
        "share"
    );
    for k in &p.by_kernel {
        let d = match k.dispatches {
            Some(d) => format!(" {d:>11}"),
            None if dispatches => format!(" {:>11}", "-"),
            None => String::new(),
        };
        s += &format!(
            "{:<34} {:>4}{d} {:>10} {:>6.1}%  {}\n",
            k.name,
            k.ops,
            ms(k.seconds),
            100.0 * k.fraction,
            bar(k.fraction)
        );
    }
    s += &format!("\n{:<28} {:>10} {:>7}\n", "layer", "ms/step", "share");
    for l in &p.by_layer {
        s += &format!(
            "{:<28} {:>10} {:>6.1}%  {}\n",
            l.name,
            ms(l.seconds),
            100.0 * l.fraction,
            bar(l.fraction)
        );
    }
    let mut ops: Vec<_> = p.ops.iter().collect();
    ops.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    s += &format!(
        "\nslowest ops ({} of {}; all in profile.json)\n{:<5} {:<11} {:<28} {:<34} {:>10}\n",
        TOP_OPS.min(ops.len()),
        ops.len(),
        "op",
        "kind",
        "layer",
        "kernel",
        "ms/step"
    );
    for o in ops.iter().take(TOP_OPS) {
        s += &format!(
            "{:<5} {:<11} {:<28} {:<34} {:>10}\n",
            o.index,
            o.kind.name(),
            o.layer,
            o.label,
            ms(o.seconds)
        );
    }
    s
}
