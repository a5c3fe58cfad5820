//! Checkpoints: a run's full state in one safetensors file, written atomically, from which
//! `gradscope train --resume RUN_DIR` continues bit for bit.
//!
//! # Layout of a checkpoint file
//!
//! - Every parameter under its plan name, which is PyTorch's state-dict name
//!   (`layers.0.weight` with nn.Linear's `[out, in]` layout, `layers.0.bias` `[out]`), F32.
//! - The optimizer state as `optimizer.<param>.state<i>` (same shape as the parameter):
//!   slot 0 is the momentum buffer / Adagrad or RMSprop accumulator / Adam's first moment,
//!   slot 1 Adam's second moment. Adam's step counter t is the step index itself.
//! - String metadata: `format` (`gradscope-checkpoint`), `format_version` (`1`), `step`,
//!   `cursor` (the data loader's `{epoch, position}` as JSON), `progress` (step, cursor and
//!   the current epoch's running loss sums, JSON), `seed` and `rng` (how the seed determines
//!   every random draw: no generator state is consumed while training), `optimizer`,
//!   `optimizer_state` (the slot naming above) and `config` (the resolved `TrainConfig` as
//!   TOML).
//!
//! The checkpoint of step s is taken after step s's report has been logged and before that
//! step's epoch-end evaluation (if any), so resuming truncates `metrics.jsonl` to the step
//! lines ≤ s and the evaluations before s (see [`store::truncate_metrics`]).
//!
//! `gradscope export` writes the parameters alone ([`export`]), for PyTorch's
//! `model.load_state_dict(safetensors.torch.load_file(path))`.

pub mod atomic;
pub mod format;
pub mod state;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use format::{StoredTensor, TensorFile};
pub use state::{FORMAT, FORMAT_VERSION, Progress, init_from, restore, state_name};

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::executor::Executor;

/// Writes a run's checkpoints: every `every` steps (0: never) and after the last step,
/// keeping the newest `keep`.
#[derive(Clone, Debug)]
pub struct Checkpointer {
    dir: PathBuf,
    every: u64,
    keep: usize,
}

impl Checkpointer {
    /// Prepares `RUN_DIR/checkpoints` (creating it and removing a killed writer's temporary
    /// files).
    pub fn new(run_dir: &Path, every: u64, keep: usize) -> Result<Self> {
        let dir = store::checkpoint_dir(run_dir);
        store::prepare(&dir)?;
        Ok(Checkpointer { dir, every, keep })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the state after `step` (of `total`) is checkpointed.
    pub fn due(&self, step: u64, total: u64) -> bool {
        step >= total || (self.every > 0 && step.is_multiple_of(self.every))
    }

    /// Writes the checkpoint of `progress.step` atomically, then prunes old ones.
    pub fn save(
        &self,
        exec: &mut dyn Executor,
        config: &TrainConfig,
        progress: &Progress,
    ) -> Result<PathBuf> {
        let path = self.dir.join(store::file_name(progress.step));
        let tensors = state::capture(exec)?;
        let meta = state::metadata(exec.plan(), config, progress);
        let bytes = format::encode(&path, &tensors, &meta)?;
        atomic::write_atomic(&path, &bytes)?;
        store::prune(&self.dir, self.keep)?;
        Ok(path)
    }
}

/// The settings a run directory was started with (`RUN_DIR/config.toml`), with `run_dir`
/// pointing at it.
pub fn load_run_config(run_dir: &Path) -> Result<TrainConfig> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::run_dir_file(run_dir, "config.toml", e))?;
    let mut config = TrainConfig::from_toml(&text, &path)?;
    config.run_dir = Some(run_dir.to_path_buf());
    Ok(config)
}

/// The newest checkpoint of a run directory that reads back whole; corrupt newer ones are
/// skipped and returned with their errors.
pub fn newest(run_dir: &Path) -> Result<(TensorFile, Vec<Error>)> {
    store::newest_valid(&store::checkpoint_dir(run_dir))
}

/// Restores the newest valid checkpoint of `run_dir` into `exec` and cuts the metrics log
/// back to it; returns the progress to continue from and the checkpoint's path.
pub fn resume(exec: &mut dyn Executor, run_dir: &Path) -> Result<(Progress, PathBuf)> {
    let (file, skipped) = newest(run_dir)?;
    for e in &skipped {
        log::warn!("skipping an unreadable checkpoint: {e}");
    }
    let progress = restore(exec, &file)?;
    store::truncate_metrics(&run_dir.join("metrics.jsonl"), progress.step)?;
    Ok((progress, file.path))
}

/// Writes the parameters of the newest valid checkpoint of `run_dir` (no optimizer state)
/// to `out` (default `RUN_DIR/model.safetensors`), atomically; returns the path written.
pub fn export(run_dir: &Path, out: Option<&Path>) -> Result<PathBuf> {
    let (file, _) = newest(run_dir)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run_dir.join("model.safetensors"));
    let params: Vec<StoredTensor> = file
        .tensors
        .iter()
        .filter(|t| !t.name.starts_with(state::OPTIMIZER_PREFIX))
        .cloned()
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    for key in ["step", "config"] {
        if let Some(v) = file.metadata.get(key) {
            meta.insert(key.to_string(), v.clone());
        }
    }
    let bytes = format::encode(&out, &params, &meta)?;
    atomic::write_atomic(&out, &bytes)?;
    Ok(out)
}
