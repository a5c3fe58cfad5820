//! Where a training step's time goes (`gradscope train --profile`): per op, per kind of op
//! (forward, loss, backward, statistics, clipping, optimizer), per kernel (every conv2d
//! forward of the step together, every matmul NT, …), per layer, and on the GPU the host's
//! time to encode and submit a step.
//!
//! Both executors feed a [`ProfileBuilder`] with the seconds of every op of every profiled
//! step (`slot` = the op's index in `Plan::ops`; the GPU's statistics finalize, which is no
//! plan op, takes the slot after the last op). The first step is left out of the averages
//! when later ones exist: it pays for pipeline creation and first touches of memory. The
//! per-op times are means over the counted steps, so an op that runs only on statistics
//! steps shows its average share.

pub mod attribute;
pub mod table;

use serde::Serialize;

pub use attribute::OpKind;

use crate::plan::Plan;

/// One op of the step.
#[derive(Clone, Debug, Serialize)]
pub struct OpProfile {
    /// Index in the plan's op list (the statistics finalize: one past the last op).
    pub index: usize,
    pub kind: OpKind,
    pub layer: String,
    pub label: String,
    /// Mean seconds per counted step.
    pub seconds: f64,
    /// Counted steps in which the op ran.
    pub runs: u64,
    /// GPU: the dispatches this op records (0 for an op another op's dispatch computes,
    /// a fused or grouped one; 3 for a BatchNorm pass that takes three).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatches: Option<usize>,
}

/// Seconds per step of one kind of op, or one layer.
#[derive(Clone, Debug, Serialize)]
pub struct Share {
    pub name: String,
    pub seconds: f64,
    /// Of the sum over ops.
    pub fraction: f64,
}

/// Seconds per step of one kernel, over every op of the step that runs it.
#[derive(Clone, Debug, Serialize)]
pub struct KernelShare {
    /// The op's label without its shape (`attribute::kernel`).
    pub name: String,
    /// Ops of the step that run it.
    pub ops: usize,
    pub seconds: f64,
    /// Of the sum over ops.
    pub fraction: f64,
    /// GPU: the dispatches those ops record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatches: Option<usize>,
}

/// A run's profile, as printed and as written to `RUN_DIR/profile.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// Which executor and device.
    pub executor: String,
    /// How op times were taken (GPU timestamps, per-op submits with a host clock, or the
    /// CPU's host clock around each op).
    pub method: String,
    /// Steps run with profiling, and how many of them the averages count.
    pub steps_run: u64,
    pub steps_counted: u64,
    /// Mean seconds per step summed over ops.
    pub op_seconds: f64,
    /// Mean host wall-clock seconds of a profiled step, from the call to its end (on the
    /// GPU: until its timestamps were read back; profiling waits for every step).
    pub step_seconds: f64,
    /// GPU: mean host seconds to encode a step's command buffer, and to submit it.
    pub host_encode_seconds: Option<f64>,
    pub host_submit_seconds: Option<f64>,
    /// GPU: dispatches a step with full statistics records (each one costs a barrier and
    /// a launch, whatever its size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatches_per_step: Option<usize>,
    pub by_kind: Vec<Share>,
    /// Slowest first.
    pub by_kernel: Vec<KernelShare>,
    pub by_layer: Vec<Share>,
    pub ops: Vec<OpProfile>,
}

/// Collects op times step by step.
pub struct ProfileBuilder {
    /// Per slot: kind, layer, label.
    slots: Vec<(OpKind, String, String)>,
    totals: Vec<f64>,
    runs: Vec<u64>,
    step_total: f64,
    /// GPU: dispatches per slot (see `OpProfile::dispatches`).
    dispatches: Option<Vec<usize>>,
    encode_total: f64,
    submit_total: f64,
    has_host: bool,
    steps_run: u64,
    /// The first step, kept apart until a second one arrives.
    first: Option<StepTimes>,
}

/// The times of one step.
pub struct StepTimes {
    /// (slot, seconds) of every op that ran.
    pub ops: Vec<(usize, f64)>,
    /// Host seconds of the whole step.
    pub step: f64,
    /// Host seconds to encode and to submit (GPU only).
    pub host: Option<(f64, f64)>,
}

impl ProfileBuilder {
    /// Slots for every op of the plan, plus `extra` named slots after them (the GPU's
    /// statistics finalize).
    pub fn new(plan: &Plan, extra: &[(OpKind, &str, &str)]) -> Self {
        let mut slots: Vec<(OpKind, String, String)> = (0..plan.ops.len())
            .map(|i| attribute::attribute(plan, i))
            .collect();
        for (k, layer, label) in extra {
            slots.push((*k, layer.to_string(), label.to_string()));
        }
        let n = slots.len();
        ProfileBuilder {
            slots,
            totals: vec![0.0; n],
            runs: vec![0; n],
            step_total: 0.0,
            dispatches: None,
            encode_total: 0.0,
            submit_total: 0.0,
            has_host: false,
            steps_run: 0,
            first: None,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// GPU: the dispatches each slot records (one entry per slot).
    pub fn set_dispatches(&mut self, per_slot: Vec<usize>) {
        self.dispatches = Some(per_slot);
    }

    /// Adds one step's times.
    pub fn add(&mut self, times: StepTimes) {
        self.steps_run += 1;
        if self.steps_run == 1 {
            self.first = Some(times);
            return;
        }
        // A second step exists: the first (warm-up) is dropped from the averages.
        self.first = None;
        self.count(times);
    }

    fn count(&mut self, t: StepTimes) {
        for (slot, s) in t.ops {
            if let Some(total) = self.totals.get_mut(slot) {
                *total += s;
                self.runs[slot] += 1;
            }
        }
        self.step_total += t.step;
        if let Some((e, s)) = t.host {
            self.has_host = true;
            self.encode_total += e;
            self.submit_total += s;
        }
    }

    /// The profile of the steps added so far (None before the first step).
    pub fn finish(mut self, executor: String, method: String) -> Option<Profile> {
        if self.steps_run == 0 {
            return None;
        }
        if let Some(first) = self.first.take() {
            self.count(first);
        }
        let counted = if self.steps_run == 1 {
            1
        } else {
            self.steps_run - 1
        };
        let per = |s: f64| s / counted as f64;
        let ops: Vec<OpProfile> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| self.runs[*i] > 0)
            .map(|(i, (kind, layer, label))| OpProfile {
                index: i,
                kind: *kind,
                layer: layer.clone(),
                label: label.clone(),
                seconds: per(self.totals[i]),
                runs: self.runs[i],
                dispatches: self.dispatches.as_ref().and_then(|d| d.get(i).copied()),
            })
            .collect();
        let op_seconds: f64 = ops.iter().map(|o| o.seconds).sum();
        let fraction = |seconds: f64| {
            if op_seconds > 0.0 {
                seconds / op_seconds
            } else {
                0.0
            }
        };
        let share = |name: String, seconds: f64| Share {
            name,
            seconds,
            fraction: fraction(seconds),
        };
        let by_kind = OpKind::ALL
            .iter()
            .filter_map(|k| {
                let s: f64 = ops.iter().filter(|o| o.kind == *k).map(|o| o.seconds).sum();
                ops.iter()
                    .any(|o| o.kind == *k)
                    .then(|| share(k.name().to_string(), s))
            })
            .collect();
        let mut by_kernel: Vec<KernelShare> = Vec::new();
        for o in &ops {
            let name = attribute::kernel(&o.label);
            let k = match by_kernel.iter_mut().position(|k| k.name == name) {
                Some(at) => &mut by_kernel[at],
                None => {
                    by_kernel.push(KernelShare {
                        name: name.to_string(),
                        ops: 0,
                        seconds: 0.0,
                        fraction: 0.0,
                        dispatches: o.dispatches.map(|_| 0),
                    });
                    by_kernel.last_mut().expect("just pushed")
                }
            };
            k.ops += 1;
            k.seconds += o.seconds;
            if let (Some(d), Some(n)) = (k.dispatches.as_mut(), o.dispatches) {
                *d += n;
            }
        }
        for k in &mut by_kernel {
            k.fraction = fraction(k.seconds);
        }
        by_kernel.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        // Layers in order of first appearance in the step.
        let mut by_layer: Vec<Share> = Vec::new();
        for o in &ops {
            match by_layer.iter_mut().find(|s| s.name == o.layer) {
                Some(s) => s.seconds += o.seconds,
                None => by_layer.push(share(o.layer.clone(), o.seconds)),
            }
        }
        for s in &mut by_layer {
            s.fraction = fraction(s.seconds);
        }
        Some(Profile {
            executor,
            method,
            steps_run: self.steps_run,
            steps_counted: counted,
            op_seconds,
            step_seconds: per(self.step_total),
            host_encode_seconds: self.has_host.then(|| per(self.encode_total)),
            host_submit_seconds: self.has_host.then(|| per(self.submit_total)),
            // A full-statistics step runs every op and the finalize of every record, not the
            // gradient-only finalize (the next-to-last extra slot).
            dispatches_per_step: self.dispatches.as_ref().map(|d| {
                let n = d.len();
                d.iter()
                    .enumerate()
                    .filter(|&(i, _)| i + 2 != n)
                    .map(|(_, c)| c)
                    .sum()
            }),
            by_kind,
            by_kernel,
            by_layer,
            ops,
        })
    }
}
