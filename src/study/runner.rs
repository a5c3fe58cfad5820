//! Running a study's grid: one run after another in one process, sharing what can be
//! shared (the data, loaded once per distinct data/validation split; the device, opened
//! once per distinct device request, so pipelines compiled for one run serve the next),
//! and continuing where a stopped study left off.
//!
//! Each run's directory is an ordinary run directory. A run is finished when it holds
//! summary.json (or study-error.txt, for a run that stopped on a NaN) written under the
//! same config.toml as the study now plans; such runs are skipped. A run with the same
//! config and a checkpoint but no summary was interrupted and is resumed from the
//! checkpoint (bit for bit, as `--resume` does); anything else starts afresh.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::grid::RunPlan;
use super::measure::{RunResult, measure, weight_layers};
use crate::checkpoint;
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::train::{self, RunData, Shared, Silent};

/// Written in a run directory whose run stopped with an error the study records rather
/// than stopping for (a NaN under `--on-nonfinite halt`: the exploding run of a study).
pub const ERROR_FILE: &str = "study-error.txt";

/// What happened to one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Finished by an earlier invocation; not run again.
    Skipped,
    /// Trained now from the start.
    Trained,
    /// Continued now from the checkpoint of an interrupted invocation.
    Resumed,
}

/// Told about each run as the study goes (the console in the binary).
pub trait StudyObserver {
    fn run_starting(&mut self, _index: usize, _total: usize, _plan: &RunPlan, _resuming: bool) {}
    fn run_done(&mut self, _index: usize, _total: usize, _result: &RunResult, _status: &RunStatus) {
    }
}

impl StudyObserver for Silent {}

/// How far an earlier invocation got with a run.
enum Progress {
    Finished(Option<String>),
    Interrupted,
    Fresh,
}

fn progress_of(dir: &Path, config: &TrainConfig) -> Progress {
    let same = checkpoint::load_run_config(dir).is_ok_and(|c| &c == config);
    if !same {
        return Progress::Fresh;
    }
    if dir.join("summary.json").is_file() {
        return Progress::Finished(None);
    }
    if let Ok(msg) = std::fs::read_to_string(dir.join(ERROR_FILE)) {
        return Progress::Finished(Some(msg.trim().to_string()));
    }
    let has_checkpoint = checkpoint::store::list(&checkpoint::store::checkpoint_dir(dir))
        .is_ok_and(|l| !l.is_empty());
    if has_checkpoint {
        Progress::Interrupted
    } else {
        Progress::Fresh
    }
}

/// The settings that decide what `train::load_data` loads: the data directory, the
/// validation split, the seed, and for a sequence task the task, its length and the
/// number of synthetic sequences.
type DataKey = (
    Option<PathBuf>,
    u64,
    u64,
    Option<String>,
    Option<usize>,
    usize,
);

fn data_key(config: &TrainConfig) -> DataKey {
    (
        config.data.clone(),
        config.val_fraction.to_bits(),
        config.seed,
        config.task.clone(),
        config.seq_len,
        config.train_samples,
    )
}

/// Data and devices opened so far, keyed by the settings that decide them.
#[derive(Default)]
pub struct Resources {
    data: HashMap<DataKey, Arc<RunData>>,
    devices: HashMap<(String, Option<String>, Option<String>), Shared>,
    /// How many times data was loaded and a device chosen (the tests check the sharing).
    pub data_loads: usize,
    pub device_opens: usize,
}

impl Resources {
    /// The data a run of `config` trains on, loaded by the first run that needs it.
    fn data(&mut self, config: &TrainConfig) -> Result<Arc<RunData>> {
        let key = data_key(config);
        if let Some(d) = self.data.get(&key) {
            return Ok(d.clone());
        }
        let d = Arc::new(train::load_data(config)?);
        self.data_loads += 1;
        self.data.insert(key, d.clone());
        Ok(d)
    }

    /// What a run of `config` shares with the runs before it.
    pub fn shared(&mut self, config: &TrainConfig) -> Result<Shared> {
        let data = self.data(config)?;
        let vkey = (
            format!("{:?}", config.device),
            config.adapter.clone(),
            config.backend.clone(),
        );
        let device = match self.devices.get(&vkey) {
            Some(s) => s.device.clone(),
            None => {
                let d = train::select::choose_device(config)?;
                self.device_opens += 1;
                self.devices.insert(
                    vkey,
                    Shared {
                        data: None,
                        device: Some(d.clone()),
                    },
                );
                Some(d)
            }
        };
        Ok(Shared {
            data: Some(data),
            device,
        })
    }

    /// The weight layers (and their sizes) of the model `config` builds on its data (no
    /// device is opened for a run that only needs reading back).
    fn weight_layers(&mut self, config: &TrainConfig) -> Result<Vec<(String, usize)>> {
        if let Some(task) = config.seq_task()? {
            return Ok(weight_layers(&config.sequence_model(task)?));
        }
        let data = self.data(config)?;
        let shape = data
            .train
            .image
            .map_or_else(|| vec![data.train.dim], |i| i.to_vec());
        Ok(weight_layers(
            &config.model_for(&shape, data.train.classes)?,
        ))
    }
}

/// Options of one invocation.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stop after this many runs have been trained now (skipped ones do not count): a
    /// study cut short, as an interrupted one is.
    pub stop_after: Option<usize>,
}

/// Trains every run of `plans` not finished before, and reads every finished one back.
/// Returns the results of the runs finished by now, in grid order, with how each got there.
pub fn run_all(
    plans: &[RunPlan],
    resources: &mut Resources,
    options: &RunOptions,
    observer: &mut dyn StudyObserver,
) -> Result<Vec<(RunResult, RunStatus)>> {
    let mut out = Vec::with_capacity(plans.len());
    let mut trained = 0usize;
    for (i, plan) in plans.iter().enumerate() {
        let dir = plan
            .config
            .run_dir
            .clone()
            .ok_or_else(|| Error::config("a study run has no directory (a bug: report it)"))?;
        let layers = resources.weight_layers(&plan.config)?;
        let (error, status) = match progress_of(&dir, &plan.config) {
            Progress::Finished(error) => (error, RunStatus::Skipped),
            progress => {
                if options.stop_after.is_some_and(|k| trained >= k) {
                    break;
                }
                let resuming = matches!(progress, Progress::Interrupted);
                observer.run_starting(i, plans.len(), plan, resuming);
                for stale in ["summary.json", ERROR_FILE] {
                    let p = dir.join(stale);
                    if p.exists() {
                        std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                    }
                }
                let shared = resources.shared(&plan.config)?;
                let from = resuming.then_some(dir.as_path());
                let result =
                    train::train_shared(&plan.config, &plan.id, from, &shared, &mut Silent);
                trained += 1;
                let status = if resuming {
                    RunStatus::Resumed
                } else {
                    RunStatus::Trained
                };
                match result {
                    Ok(_) => (None, status),
                    // A NaN that halts a run is a result of the study (an exploding
                    // configuration), not a reason to stop it.
                    Err(Error::NonFinite(msg)) => {
                        let p = dir.join(ERROR_FILE);
                        std::fs::write(&p, &msg).map_err(|e| Error::io(&p, e))?;
                        (Some(msg), status)
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let result = match measure(plan, &dir, &layers, error.clone()) {
            Ok(r) => r,
            Err(_) if error.is_some() => RunResult::stopped(plan, &dir, error.unwrap_or_default()),
            Err(e) => return Err(e),
        };
        observer.run_done(i, plans.len(), &result, &status);
        out.push((result, status));
    }
    Ok(out)
}
