//! The run's metrics log: one JSON object per line, flushed as it is written so that a run
//! killed at any moment leaves every line it logged readable.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::stats::LayerStats;
use crate::tensorboard::EventWriter;

/// One training step.
#[derive(Clone, Debug, Serialize)]
pub struct StepLog {
    pub kind: &'static str,
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub accuracy: f64,
    pub lr: f64,
    /// √(Σ‖g‖²) over every parameter gradient, taken every step.
    pub grad_norm: f64,
    /// The global gradient norm after clipping (plans with a global-norm op).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm_clipped: Option<f64>,
    /// The factor clipping applied to every gradient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_scale: Option<f64>,
    /// The device discarded this step's update (`--on-nonfinite skip`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// Where this step's first NaN or Inf appeared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonfinite: Option<crate::diagnosis::NonFiniteOrigin>,
    /// Per-layer statistics, on the steps that take them (`stats_every`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerStats>>,
    /// ‖∂L/∂h_t‖ at every time step of every recurrent layer, on the same steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_grad_norms: Option<Vec<HiddenGradNorms>>,
}

/// One recurrent layer's hidden-state gradient norm at each time step t = 0 … T − 1: the
/// quantity whose decay towards early steps is the vanishing gradient over time.
#[derive(Clone, Debug, Serialize)]
pub struct HiddenGradNorms {
    pub layer: String,
    pub norms: Vec<f32>,
}

impl HiddenGradNorms {
    /// Each recurrent layer's slice of a step report's norms.
    pub fn from_report(plan: &crate::plan::Plan, norms: &[f32]) -> Vec<HiddenGradNorms> {
        plan.recurrent_layers
            .iter()
            .filter_map(|l| {
                Some(HiddenGradNorms {
                    layer: l.name.clone(),
                    norms: norms.get(l.offset..l.offset + l.steps)?.to_vec(),
                })
            })
            .collect()
    }
}

/// One evaluation, at the end of an epoch.
#[derive(Clone, Debug, Serialize)]
pub struct EvalLog {
    pub kind: &'static str,
    pub split: String,
    pub epoch: u64,
    pub step: u64,
    pub loss: f64,
    pub accuracy: f64,
    pub samples: usize,
}

pub struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
    /// TensorBoard events mirroring the step and eval lines, when asked for.
    tensorboard: Option<EventWriter>,
}

impl MetricsLog {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            tensorboard: None,
        })
    }

    /// Opens an existing log to add lines at its end (a resumed run, after
    /// `checkpoint::store::truncate_metrics`).
    pub fn append(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            tensorboard: None,
        })
    }

    /// Mirrors every later step and eval line into TensorBoard events.
    pub fn attach_tensorboard(&mut self, writer: EventWriter) {
        self.tensorboard = Some(writer);
    }

    /// A step line, and its TensorBoard events if attached.
    pub fn write_step(&mut self, log: &StepLog) -> Result<()> {
        self.write(log)?;
        match &mut self.tensorboard {
            Some(tb) => tb.step(log),
            None => Ok(()),
        }
    }

    /// An eval line, and its TensorBoard events if attached.
    pub fn write_eval(&mut self, log: &EvalLog) -> Result<()> {
        self.write(log)?;
        match &mut self.tensorboard {
            Some(tb) => tb.eval(log),
            None => Ok(()),
        }
    }

    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::config(format!("serialising metrics: {e}")))?;
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}
