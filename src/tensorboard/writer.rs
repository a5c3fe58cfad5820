//! The event writer of a run: `RUN_DIR/tensorboard/events.out.tfevents.<time>.<host>`, with
//! the run's scalars (loss, accuracy, learning rate, gradient norm, and per layer the
//! gradient norm and update-to-weight ratio) and, on steps with full statistics, one
//! histogram of log2|x| per layer and tensor kind, built from the device's 40-bin log2
//! histograms (so TensorBoard shows exactly the counts in metrics.jsonl).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::proto::{Histogram, Value, file_version_event, summary_event};
use super::record::write_record;
use crate::error::{Error, Result};
use crate::plan::TensorKind;
use crate::stats::TensorStats;
use crate::stats::record::{HIST_BIN_WIDTH, HIST_LOG2_LO};
use crate::train::metrics::{EvalLog, StepLog};

/// Tensor kinds written as histograms (the others stay in metrics.jsonl).
pub const HISTOGRAM_KINDS: [TensorKind; 4] = [
    TensorKind::WeightGrad,
    TensorKind::Weight,
    TensorKind::WeightUpdate,
    TensorKind::Output,
];

pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The host name for the file name, as TensorFlow puts it there; no libc call needed.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .map(|h| h.replace(['/', '\\'], "_"))
        .unwrap_or_else(|| "localhost".into())
}

/// A TensorBoard histogram of log2|x| from a record's log2 histogram: bin i of the record
/// counts |x| in [2^(LO+2i), 2^(LO+2i+2)), so its bucket_limit is LO+2i+2 in log2 units.
/// Sum and sum of squares use bin centres (the exact values are not kept). None when the
/// tensor had no finite non-zero value.
pub fn log2_histogram(stats: &TensorStats) -> Option<Histogram> {
    let num: u64 = stats.hist.iter().map(|&c| c as u64).sum();
    if num == 0 {
        return None;
    }
    let lo = |i: usize| (HIST_LOG2_LO + HIST_BIN_WIDTH * i as i32) as f64;
    let first = stats.hist.iter().position(|&c| c > 0)?;
    let last = stats.hist.iter().rposition(|&c| c > 0)?;
    let (mut sum, mut sum_squares) = (0.0, 0.0);
    for (i, &c) in stats.hist.iter().enumerate() {
        let centre = lo(i) + HIST_BIN_WIDTH as f64 / 2.0;
        sum += c as f64 * centre;
        sum_squares += c as f64 * centre * centre;
    }
    Some(Histogram {
        min: lo(first),
        max: lo(last + 1),
        num: num as f64,
        sum,
        sum_squares,
        bucket_limit: (0..stats.hist.len()).map(|i| lo(i + 1)).collect(),
        bucket: stats.hist.iter().map(|&c| c as f64).collect(),
    })
}

impl EventWriter {
    /// Creates `dir` and a fresh event file in it, opened by the file-version event.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let t = now();
        let path = dir.join(format!("events.out.tfevents.{}.{}", t as u64, host()));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        w.event(&file_version_event(t))?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn event(&mut self, payload: &[u8]) -> Result<()> {
        write_record(&mut self.out, payload)
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Writes `values` at `step` (flushed, so a killed run keeps what it logged).
    pub fn write(&mut self, step: u64, values: &[Value]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        self.event(&summary_event(now(), step as i64, values))
    }

    /// The scalars and histograms of one training step.
    pub fn step(&mut self, log: &StepLog) -> Result<()> {
        let mut values = vec![
            Value::Scalar("train/loss".into(), log.loss as f32),
            Value::Scalar("train/accuracy".into(), log.accuracy as f32),
            Value::Scalar("train/lr".into(), log.lr as f32),
            Value::Scalar("train/grad_norm".into(), log.grad_norm as f32),
        ];
        for layer in log.layers.iter().flatten() {
            values.push(Value::Scalar(
                format!("grad_norm/{}", layer.name),
                layer.grad_norm as f32,
            ));
            if let Some(r) = layer.update_ratio {
                values.push(Value::Scalar(
                    format!("update_ratio/{}", layer.name),
                    r as f32,
                ));
            }
            for kind in HISTOGRAM_KINDS {
                if let Some(h) = layer.get(kind).and_then(log2_histogram) {
                    values.push(Value::Histogram(
                        format!("log2_abs_{}/{}", kind.name(), layer.name),
                        h,
                    ));
                }
            }
        }
        self.write(log.step, &values)
    }

    /// An evaluation's loss and accuracy under its split (`val/loss`, `test/accuracy`).
    pub fn eval(&mut self, log: &EvalLog) -> Result<()> {
        self.write(
            log.step,
            &[
                Value::Scalar(format!("{}/loss", log.split), log.loss as f32),
                Value::Scalar(format!("{}/accuracy", log.split), log.accuracy as f32),
            ],
        )
    }
}
