//! The run's summary: what a user wants to know when it ends, also written as summary.json.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub executor: String,
    pub executor_reason: String,
    pub data: String,
    pub train_samples: usize,
    pub val_samples: usize,
    pub params: usize,
    pub steps: u64,
    pub epochs: u64,
    /// Mean loss and accuracy over the last epoch's training batches.
    pub final_train_loss: f64,
    pub final_train_accuracy: f64,
    pub final_val_loss: f64,
    pub final_val_accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Training samples per second over the whole run (evaluation excluded).
    pub samples_per_second: f64,
    pub wall_seconds: f64,
    pub run_dir: String,
    /// Steps whose update was discarded (`--on-nonfinite skip`).
    pub skipped_steps: u64,
    /// Where the first NaN or Inf of the run appeared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_nonfinite: Option<crate::diagnosis::NonFiniteOrigin>,
    /// Every diagnosis finding, in the order they fired.
    pub findings: Vec<crate::diagnosis::Finding>,
}
