//! The console view of a run: which executor and why, a progress bar with loss and
//! samples/s (hidden when stderr is not a terminal), a line per evaluation, and at the end
//! the per-layer gradient table and the summary.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use gradscope::diagnosis::Finding;
use gradscope::model::{LossKind, NodeOp};
use gradscope::plan::Plan;
use gradscope::stats::{LayerStats, table};
use gradscope::train::metrics::{EvalLog, StepLog};
use gradscope::train::{Observer, Summary};

pub struct Console {
    bar: Option<ProgressBar>,
    quiet: bool,
    /// One output (a regression, such as the adding problem): the arg-max is always right,
    /// so accuracy means nothing and is not printed, and the loss is called an MSE.
    regression: bool,
}

impl Console {
    pub fn new(quiet: bool) -> Self {
        Console {
            bar: None,
            quiet,
            regression: false,
        }
    }

    /// " accuracy 97.12%", or nothing for a regression.
    fn accuracy(&self, a: f64) -> String {
        if self.regression {
            String::new()
        } else {
            format!(" accuracy {:.2}%", 100.0 * a)
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(line),
            _ => eprintln!("{line}"),
        }
    }
}

impl Observer for Console {
    fn started(
        &mut self,
        executor: &str,
        reason: &str,
        plan: &Plan,
        total_steps: u64,
        run_dir: &Path,
    ) {
        self.regression = plan.classes == 1 && plan.loss == LossKind::Mse;
        eprintln!("executor: {reason}");
        // A stack of dense layers reads as its widths; any other network by its name and
        // size (a resnet's per-layer widths say little).
        let dense = plan.model.nodes.iter().all(|n| {
            matches!(
                n.op,
                NodeOp::Input | NodeOp::Linear { .. } | NodeOp::Activation(_) | NodeOp::Loss(_)
            )
        });
        let shape = if dense {
            let widths: Vec<String> = plan.layers.iter().map(|l| l.units.to_string()).collect();
            format!(
                "{}-{} {}",
                plan.input_features,
                widths.join("-"),
                plan.layers
                    .first()
                    .and_then(|l| l.activation)
                    .map_or("linear", |a| a.name())
            )
        } else {
            format!(
                "{} ({} layers, {} input features)",
                plan.model.name,
                plan.layers.len(),
                plan.input_features
            )
        };
        eprintln!(
            "model: {shape} ({} parameters), batch {}, {} steps; {}",
            plan.model.param_count(),
            plan.batch,
            total_steps,
            plan.optimizer.kind.name()
        );
        if let Some(first) = plan.recurrent_layers.first() {
            eprintln!(
                "sequence model: {} ×{} layers, length {}; ‖∂L/∂h_t‖ at every step is logged \
                 with the full statistics",
                plan.model.name,
                plan.recurrent_layers.len(),
                first.steps
            );
        }
        let roles: Vec<String> = plan
            .bytes_by_role()
            .iter()
            .map(|(role, bytes)| format!("{role:?} {:.2} MiB", *bytes as f64 / (1u64 << 20) as f64))
            .collect();
        eprintln!(
            "memory: {} (total {:.2} MiB)",
            roles.join(", "),
            plan.total_bytes() as f64 / (1u64 << 20) as f64
        );
        eprintln!("run directory: {}", run_dir.display());
        let _ = executor;
        let target = if self.quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total_steps), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar = Some(bar);
    }

    fn step(&mut self, log: &StepLog, samples_per_second: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(log.step);
            bar.set_message(format!(
                "loss {:.4}  |∇| {:.2e}  {:.0} samples/s",
                log.loss, log.grad_norm, samples_per_second
            ));
        }
    }

    fn evaluated(&mut self, log: &EvalLog) {
        self.println(&format!(
            "epoch {:>3}  step {:>6}  {} loss {:.4} {}",
            log.epoch,
            log.step,
            log.split,
            log.loss,
            self.accuracy(log.accuracy)
        ));
    }

    fn finding(&mut self, finding: &Finding) {
        self.println(&format!("diagnosis: {}", finding.render()));
    }

    fn finished(&mut self, summary: &Summary, layers: &[LayerStats]) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !layers.is_empty() {
            println!("\nper-layer gradient statistics at the last step (input at the top):");
            print!("{}", table::render_with_findings(layers, &summary.findings));
        }
        if !summary.findings.is_empty() {
            println!("\ndiagnosis ({} finding(s)):", summary.findings.len());
            for f in &summary.findings {
                println!("  {}", f.render());
            }
        }
        if summary.skipped_steps > 0 {
            println!(
                "{} step(s) skipped for non-finite gradients",
                summary.skipped_steps
            );
        }
        let loss = if self.regression { "MSE" } else { "loss" };
        println!(
            "\ntrain {loss} {:.4}{} | validation {loss} {:.4}{}{}",
            summary.final_train_loss,
            self.accuracy(summary.final_train_accuracy),
            summary.final_val_loss,
            self.accuracy(summary.final_val_accuracy),
            match (summary.test_loss, summary.test_accuracy) {
                (Some(l), Some(a)) => format!(" | test {loss} {l:.4}{}", self.accuracy(a)),
                _ => String::new(),
            }
        );
        println!(
            "{} steps, {:.0} samples/s on {}, {:.1} s; run directory {}",
            summary.steps,
            summary.samples_per_second,
            summary.executor,
            summary.wall_seconds,
            summary.run_dir
        );
    }

    fn profiled(&mut self, profile: &gradscope::profile::Profile, path: &Path) {
        self.println("");
        for line in gradscope::profile::table::render(profile).lines() {
            self.println(line);
        }
        self.println(&format!("profile written to {}", path.display()));
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// The `--dry-run` report: what the plan allocates, by role, against what the executor
/// actually holds, and the largest buffers.
pub fn memory_plan(d: &gradscope::train::DryRun) -> String {
    let plan = &d.plan;
    let mut out = format!("executor: {}\n", d.reason);
    out.push_str(&format!(
        "model {}: {} parameters, batch {}, {} buffers, {} ops per step\n\nmemory plan:\n",
        plan.model.name,
        plan.model.param_count(),
        plan.batch,
        plan.buffers.len(),
        plan.ops.len()
    ));
    for (role, bytes) in plan.bytes_by_role() {
        out.push_str(&format!(
            "  {:<16} {:>10.2} MiB\n",
            format!("{role:?}"),
            mib(bytes)
        ));
    }
    out.push_str(&format!(
        "  {:<16} {:>10.2} MiB\n",
        "planned total",
        mib(plan.total_bytes())
    ));
    out.push_str(&format!(
        "  {:<16} {:>10.2} MiB  (the plan, plus statistics and readback buffers on the GPU)\n",
        "allocated",
        mib(d.allocated)
    ));
    let mut largest: Vec<_> = plan.buffers.iter().collect();
    largest.sort_by_key(|b| std::cmp::Reverse(b.bytes()));
    out.push_str("\nlargest buffers:\n");
    for b in largest.iter().take(8) {
        out.push_str(&format!(
            "  {:<40} {:>10.2} MiB  {:?}\n",
            b.name,
            mib(b.bytes()),
            b.role
        ));
    }
    out
}
