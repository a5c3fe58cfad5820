//! What the training loop asks of diagnosis for each finished step: trace non-finite
//! values, apply the `--on-nonfinite` policy, and run the rules on full-statistics steps.
//!
//! The device decides first (plan::Guard, in shaders/clip.wgsl): under `skip` it drops the
//! bad step's update, under `halt` that one's and every later one's, since the GPU runs up
//! to three steps ahead of the host. So when the host reads the bad step's report and
//! stops, the parameters are those after the last step whose gradients were finite (the
//! one exception: a non-finite value born in the optimizer's update itself, with finite
//! gradients, reaches the parameters before any guard sees it).

use super::{Diagnoser, Finding, NonFiniteOrigin, nonfinite};
use crate::config::NonFinitePolicy;
use crate::error::{Error, Result};
use crate::executor::StepReport;
use crate::plan::Plan;
use crate::stats::LayerStats;

pub struct Watch {
    pub diagnoser: Diagnoser,
    pub policy: NonFinitePolicy,
    order: Vec<usize>,
    /// The first non-finite origin of the run.
    pub first_nonfinite: Option<NonFiniteOrigin>,
    /// Steps whose update the device discarded.
    pub skipped_steps: u64,
}

/// What one step's examination found.
pub struct StepVerdict {
    /// Findings that fire for the first time at this step.
    pub new_findings: Vec<Finding>,
    /// This step's non-finite origin, if any.
    pub nonfinite: Option<NonFiniteOrigin>,
    /// The device discarded this step's update.
    pub skipped: bool,
}

impl Watch {
    pub fn new(plan: &Plan, policy: NonFinitePolicy, diagnoser: Diagnoser) -> Self {
        Watch {
            diagnoser,
            policy,
            order: nonfinite::production_order(plan),
            first_nonfinite: None,
            skipped_steps: 0,
        }
    }

    /// Examines a finished step. `layers` are its per-layer statistics on full-statistics
    /// steps. Returns an error when the policy is `halt` and the step was not finite.
    pub fn examine(
        &mut self,
        plan: &Plan,
        report: &StepReport,
        layers: Option<&[LayerStats]>,
        grad_norm: f64,
    ) -> Result<StepVerdict> {
        let skipped = report.clip.is_some_and(|c| c.skipped);
        let origin = nonfinite::trace(plan, &self.order, report);
        let mut new_findings = Vec::new();
        if let Some(o) = &origin {
            if self.first_nonfinite.is_none() {
                self.first_nonfinite = Some(o.clone());
            }
            new_findings.extend(self.diagnoser.add(o.finding()));
        }
        if skipped {
            self.skipped_steps += 1;
        }
        if let (Some(o), NonFinitePolicy::Halt) = (&origin, self.policy) {
            return Err(Error::NonFinite(format!(
                "{}; halting (--on-nonfinite halt): the parameters are those after step {}, the last whose gradients were finite; lower the learning rate, clip gradients (--clip-norm), or use --on-nonfinite skip",
                o.describe(),
                report.step.saturating_sub(1)
            )));
        }
        if let Some(layers) = layers.filter(|_| origin.is_none()) {
            new_findings.extend(self.diagnoser.observe(report.step, layers, grad_norm));
        }
        Ok(StepVerdict {
            new_findings,
            nonfinite: origin,
            skipped,
        })
    }
}
