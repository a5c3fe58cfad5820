//! The training loop: data → plan → executor → statistics → outputs.
//!
//! The loop keeps the device busy: it loads the next batch and submits the next step while
//! earlier steps' results are still on their way back, and logs each step's report when it
//! arrives. Everything a step needs was allocated before the first one.

pub mod metrics;
pub mod select;
pub mod summary;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint::{self, Checkpointer, Progress};
use crate::config::NonFinitePolicy;
use crate::config::TrainConfig;
use crate::data::dataset::{Dataset, bundled_fashion_mnist};
use crate::data::load_any;
use crate::data::loader::BatchLoader;
use crate::diagnosis::{Diagnoser, Finding, Watch};
use crate::error::{Error, Result};
use crate::executor::{Executor, StatsLevel, StepReport};
use crate::init::init_weight;
use crate::ops::StepScalars;
use crate::plan::{Plan, compile_with};
use crate::rng::Rng;
use crate::stats::{LayerStats, layer_stats, total_grad_norm};
use metrics::{EvalLog, MetricsLog, StepLog};
pub use summary::Summary;

/// What the loop tells whoever shows it (the console in the binary, nothing in tests).
pub trait Observer {
    /// Before the first step: the chosen executor and why, and the plan.
    fn started(
        &mut self,
        _executor: &str,
        _reason: &str,
        _plan: &Plan,
        _total_steps: u64,
        _run_dir: &Path,
    ) {
    }
    fn step(&mut self, _log: &StepLog, _samples_per_second: f64) {}
    fn evaluated(&mut self, _log: &EvalLog) {}
    /// A diagnosis finding, the first time it holds.
    fn finding(&mut self, _finding: &Finding) {}
    fn finished(&mut self, _summary: &Summary, _layers: &[LayerStats]) {}
    /// Where a step's time went (`--profile`), after the last step.
    fn profiled(&mut self, _profile: &crate::profile::Profile, _path: &Path) {}
}

/// An observer that shows nothing.
pub struct Silent;
impl Observer for Silent {}

/// The data of a run, normalized with the training split's statistics.
pub struct RunData {
    pub train: Dataset,
    pub val: Dataset,
    pub test: Option<Dataset>,
    pub source: String,
}

/// Loads `--data DIR` or the bundled set, splits off validation and standardizes; or makes
/// the data of a built-in sequence task.
pub fn load_data(config: &TrainConfig) -> Result<RunData> {
    if let Some(task) = config.seq_task()? {
        return sequence_data(config, task);
    }
    let (full, test, source) = match &config.data {
        Some(dir) => {
            let (train, test) = load_any(dir)?;
            (train, test, dir.display().to_string())
        }
        None => (
            bundled_fashion_mnist()?,
            None,
            "bundled Fashion-MNIST test set (10 000 images)".to_string(),
        ),
    };
    let (mut train, mut val) = full.split(config.val_fraction, config.seed)?;
    let mut test = test;
    // Colour images are standardized per channel (as torchvision's Normalize), grey ones
    // and plain features with one mean and deviation; always with the training split's.
    if train.image.is_some_and(|[c, _, _]| c > 1) {
        let (mean, std) = train.channel_mean_std()?;
        for d in [Some(&mut train), Some(&mut val), test.as_mut()]
            .into_iter()
            .flatten()
        {
            d.standardize_channels(&mean, &std)?;
        }
    } else {
        let (mean, std) = train.mean_std();
        for d in [Some(&mut train), Some(&mut val), test.as_mut()]
            .into_iter()
            .flatten()
        {
            d.standardize(mean, std)?;
        }
    }
    Ok(RunData {
        train,
        val,
        test,
        source,
    })
}

/// The data of a sequence task: synthetic ones drawn from the seed (never standardized:
/// the adding problem's markers and the memory task's token ids mean what they are), the
/// row-by-row images split and standardized as the bundled set always is.
fn sequence_data(config: &TrainConfig, task: crate::data::sequence::SeqTask) -> Result<RunData> {
    use crate::data::sequence::{self, SeqTask};
    let steps = config.steps_for(task);
    if task == SeqTask::Rows {
        let full = sequence::rows(steps)?;
        let (mut train, mut val) = full.split(config.val_fraction, config.seed)?;
        let (mean, std) = train.mean_std();
        train.standardize(mean, std)?;
        val.standardize(mean, std)?;
        return Ok(RunData {
            source: train.name.clone(),
            train,
            val,
            test: None,
        });
    }
    let (train, val) = sequence::synthetic(task, steps, config.train_samples, config.seed)?;
    Ok(RunData {
        source: format!("{} ({} training sequences)", train.name, train.n),
        train,
        val,
        test: None,
    })
}

/// Writes every parameter's initial value, drawn from the seeded generator: parameter i
/// uses sub-stream i, so adding a layer does not change the others' draws.
pub fn initialize(exec: &mut dyn Executor, seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let specs = exec.plan().model.params.clone();
    let slots = exec.plan().params.clone();
    for (i, (spec, slot)) in specs.iter().zip(&slots).enumerate() {
        let fan_out = spec.shape.first().copied().unwrap_or(1);
        let fan_in = spec.shape.iter().skip(1).product::<usize>().max(1);
        let mut stream = rng.fork(i as u64);
        let values = init_weight(spec.init, fan_out, fan_in, spec.gain, &mut stream);
        exec.write(slot.value, &values)?;
    }
    // An LSTM's forget-gate bias option: b_ih's forget rows take the value, b_hh's 0, so
    // the gate starts at σ(value) on average.
    for (b_ih, b_hh, hidden, v) in crate::model::recurrent::forget_bias_inits(&specs_model(exec)) {
        for (p, value) in [(b_ih, v), (b_hh, 0.0)] {
            let slot = exec.plan().params[p].clone();
            let mut b = exec.read(slot.value)?;
            b[hidden..2 * hidden].fill(value);
            exec.write(slot.value, &b)?;
        }
    }
    // BatchNorm's running statistics start as PyTorch's: mean 0, variance 1.
    let running = exec.plan().running.clone();
    for (_, buf, init) in running {
        let n = exec.plan().buffer(buf).numel;
        exec.write(buf, &vec![init; n])?;
    }
    Ok(())
}

fn specs_model(exec: &dyn Executor) -> crate::model::ModelSpec {
    exec.plan().model.clone()
}

/// Mean loss and accuracy of `data` under the current parameters, in batches of the plan's
/// size (the last batch padded; padded rows are not counted).
pub fn evaluate(
    exec: &mut dyn Executor,
    data: &Dataset,
    inputs: &mut [f32],
    labels: &mut [u32],
) -> Result<(f64, f64)> {
    let batch = exec.plan().batch;
    let dim = data.dim;
    let per = data.targets_per_record();
    let mut targets = vec![0.0f32; batch * per];
    let (mut loss, mut correct) = (0.0, 0u64);
    for start in (0..data.n).step_by(batch) {
        let valid = batch.min(data.n - start);
        inputs.fill(0.0);
        labels.fill(0);
        inputs[..valid * dim].copy_from_slice(&data.inputs[start * dim..(start + valid) * dim]);
        labels[..valid].copy_from_slice(&data.labels[start..start + valid]);
        exec.load_batch(inputs, labels)?;
        if per > 0 {
            targets.fill(0.0);
            targets[..valid * per]
                .copy_from_slice(&data.targets[start * per..(start + valid) * per]);
            exec.load_targets(&targets)?;
        }
        let (l, c) = exec.evaluate(valid)?;
        loss += l;
        correct += c as u64;
    }
    let n = data.n.max(1) as f64;
    Ok((loss / n, correct as f64 / n))
}

/// A fresh run directory: the given one, or runs/<unix time>-<name>, with -2, -3, … added
/// where a run started in the same second under the same name already took it (two runs
/// must never write one directory's logs and checkpoints).
fn run_dir(config: &TrainConfig, name: &str) -> Result<PathBuf> {
    if let Some(d) = &config.run_dir {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        return Ok(d.clone());
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let runs = PathBuf::from("runs");
    std::fs::create_dir_all(&runs).map_err(|e| Error::io(&runs, e))?;
    for k in 1.. {
        let leaf = match k {
            1 => format!("{t}-{name}"),
            _ => format!("{t}-{name}-{k}"),
        };
        let dir = runs.join(leaf);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    unreachable!("some suffix is free")
}

/// Trains the network `config` describes; `name` labels the run (the preset's name).
/// What `--dry-run` reports: the plan's memory by role and what the executor allocated.
pub struct DryRun {
    pub executor: String,
    pub reason: String,
    pub plan: Plan,
    pub allocated: u64,
}

/// What several runs may share instead of each building its own (a study's runs): the
/// loaded data and the opened device. `Shared::default()` shares nothing.
#[derive(Clone, Default)]
pub struct Shared {
    /// Data loaded by [`load_data`] with the run's `data`, `val_fraction` and `seed`.
    pub data: Option<std::sync::Arc<RunData>>,
    /// The device chosen by [`select::choose_device`] for the run's config, and why.
    pub device: Option<(Option<std::sync::Arc<crate::gpu::GpuContext>>, String)>,
}

/// The data, model and plan a config describes (validated first).
fn prepare(
    config: &TrainConfig,
    shared: &Shared,
) -> Result<(std::sync::Arc<RunData>, crate::model::ModelSpec, Plan)> {
    config.validate()?;
    let data = match &shared.data {
        Some(d) => d.clone(),
        None => std::sync::Arc::new(load_data(config)?),
    };
    let shape = data
        .train
        .image
        .map_or_else(|| vec![data.train.dim], |i| i.to_vec());
    let model = match config.seq_task()? {
        Some(task) => config.sequence_model(task)?,
        None => config.model_for(&shape, data.train.classes)?,
    };
    let plan = compile_with(
        &model,
        config.batch_size,
        config.optimizer()?,
        config.step_options(),
    )?;
    Ok((data, model, plan))
}

/// Builds the data, model, plan and executor of a run without training: the memory plan.
pub fn dry_run(config: &TrainConfig) -> Result<DryRun> {
    let (_, _, plan) = prepare(config, &Shared::default())?;
    let (exec, reason) = select::open_executor(config, plan)?;
    Ok(DryRun {
        executor: exec.describe(),
        reason,
        plan: exec.plan().clone(),
        allocated: exec.allocated_bytes(),
    })
}

pub fn train(config: &TrainConfig, name: &str, observer: &mut dyn Observer) -> Result<Summary> {
    run(config, name, None, &Shared::default(), observer)
}

/// [`train`], or [`resume`] when `resume_from` is given, with the data and device in
/// `shared` instead of loading and opening its own.
pub fn train_shared(
    config: &TrainConfig,
    name: &str,
    resume_from: Option<&Path>,
    shared: &Shared,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    let mut config = config.clone();
    if let Some(dir) = resume_from {
        config.run_dir = Some(dir.to_path_buf());
    }
    run(&config, name, resume_from, shared, observer)
}

/// Continues the run in `run_dir` from its newest valid checkpoint, bit for bit, with
/// `config` (normally [`checkpoint::load_run_config`], possibly with overrides).
pub fn resume(
    config: &TrainConfig,
    run_dir: &Path,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    let mut config = config.clone();
    config.run_dir = Some(run_dir.to_path_buf());
    run(
        &config,
        "resume",
        Some(run_dir),
        &Shared::default(),
        observer,
    )
}

fn run(
    config: &TrainConfig,
    name: &str,
    resume_from: Option<&Path>,
    shared: &Shared,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    let (data, model, plan) = prepare(config, shared)?;
    let mut watch = Watch::new(
        &plan,
        config.on_nonfinite,
        Diagnoser::new(config.diagnosis.clone()),
    );
    let mut loader = BatchLoader::new(&data.train, config.batch_size, config.seed)?;
    let (mut exec, reason) = match &shared.device {
        Some((ctx, why)) => (select::open_on(ctx.as_ref(), plan)?, why.clone()),
        None => select::open_executor(config, plan)?,
    };
    initialize(exec.as_mut(), config.seed)?;
    if config.profile {
        exec.enable_profiling()?;
    }

    let dir = run_dir(config, name)?;
    let checkpointer = Checkpointer::new(&dir, config.checkpoint_every, config.keep_checkpoints)?;
    let progress = match resume_from {
        Some(from) => checkpoint::resume(exec.as_mut(), from)?.0,
        None => {
            checkpoint::store::remove_all(checkpointer.dir())?;
            if let Some(path) = &config.init_from {
                checkpoint::init_from(exec.as_mut(), path)?;
            }
            Progress::start()
        }
    };
    loader.set_cursor(progress.cursor)?;
    watch.skipped_steps = progress.skipped_steps;
    let config_path = dir.join("config.toml");
    checkpoint::atomic::write_atomic(&config_path, config.to_toml().as_bytes())?;
    let metrics_path = dir.join("metrics.jsonl");
    let mut log = match resume_from {
        Some(_) => MetricsLog::append(&metrics_path)?,
        None => MetricsLog::create(&metrics_path)?,
    };
    if config.tensorboard {
        log.attach_tensorboard(crate::tensorboard::EventWriter::create(
            &dir.join("tensorboard"),
        )?);
    }

    let per_epoch = loader.batches_per_epoch() as u64;
    let total = if config.max_steps > 0 {
        config
            .max_steps
            .min(per_epoch * config.epochs.max(1) as u64)
    } else {
        per_epoch * config.epochs as u64
    };
    let total = if config.epochs == 0 {
        config.max_steps
    } else {
        total
    };
    let executor = exec.describe();
    observer.started(&executor, &reason, exec.plan(), total, &dir);

    let batch = config.batch_size;
    let mut inputs = vec![0.0f32; batch * data.train.dim];
    let mut labels = vec![0u32; batch];
    let mut targets = vec![0.0f32; batch * data.train.targets_per_record()];
    let mut last_layers: Vec<LayerStats> = Vec::new();
    let mut epoch_loss = progress.epoch_loss(); // (sum of losses, correct, steps)
    let mut step = progress.step;
    // Learning rates by step, those before a resumed step included (the log reads them).
    let mut lrs: Vec<f64> = (1..=step).map(|s| config.lr_at(s, total)).collect();
    let mut train_time = 0.0f64;
    let start = Instant::now();
    // Epochs completed (and evaluated): a checkpoint is taken before its epoch's end.
    let mut epoch = progress.cursor.epoch;
    let mut val_result = (f64::NAN, f64::NAN);
    let mut last_epoch_train = (f64::NAN, f64::NAN);

    let handle = |reports: Vec<StepReport>,
                  exec: &dyn Executor,
                  watch: &mut Watch,
                  log: &mut MetricsLog,
                  observer: &mut dyn Observer,
                  last_layers: &mut Vec<LayerStats>,
                  epoch_loss: &mut (f64, u64, u64),
                  lrs: &[f64],
                  elapsed: f64|
     -> Result<()> {
        for r in reports {
            let plan = exec.plan();
            let layers = if r.stats == StatsLevel::Full {
                Some(layer_stats(plan, &r))
            } else {
                None
            };
            if let Some(l) = &layers {
                *last_layers = l.clone();
            }
            let grad_norm = total_grad_norm(plan, &r);
            let verdict = watch.examine(plan, &r, layers.as_deref(), grad_norm)?;
            for f in &verdict.new_findings {
                observer.finding(f);
            }
            let entry = StepLog {
                kind: "step",
                step: r.step,
                epoch: (r.step - 1) / per_epoch.max(1),
                loss: r.loss as f64,
                accuracy: r.correct as f64 / plan.batch as f64,
                lr: lrs.get(r.step as usize - 1).copied().unwrap_or(f64::NAN),
                grad_norm,
                grad_norm_clipped: r.clip.map(|c| c.norm_after as f64),
                clip_scale: r.clip.map(|c| c.scale as f64),
                skipped: verdict.skipped,
                nonfinite: verdict.nonfinite,
                hidden_grad_norms: (r.stats == StatsLevel::Full
                    && !plan.recurrent_layers.is_empty())
                .then(|| metrics::HiddenGradNorms::from_report(plan, &r.hidden_norms)),
                layers,
            };
            log.write_step(&entry)?;
            observer.step(&entry, (r.step as f64 * batch as f64) / elapsed.max(1e-9));
            if !r.loss.is_finite() {
                // Only `continue` and `skip` get here; a non-finite loss is not averaged.
                continue;
            }
            epoch_loss.0 += r.loss as f64;
            epoch_loss.1 += r.correct as u64;
            epoch_loss.2 += 1;
        }
        Ok(())
    };

    // A run resumed from its last step still owes that epoch's evaluation.
    let mut more = total > 0;
    while more {
        let t0 = Instant::now();
        while step < total && loader.fill(&mut inputs, &mut labels) {
            step += 1;
            // Random crop and flip drawn from (seed, step): a resumed run draws the same.
            if let (true, Some(image)) = (config.augment, data.train.image) {
                let augment = crate::data::augment::Augment {
                    crop_pad: 4,
                    flip: true,
                };
                augment.apply(&mut inputs, batch, image, config.seed, step)?;
            }
            // A skipped step does not advance the schedule or Adam's step count.
            let t = step - watch.skipped_steps;
            let lr = config.lr_at(t, total);
            lrs.push(lr);
            exec.load_batch(&inputs, &labels)?;
            if !targets.is_empty() {
                loader.fill_targets(&mut targets);
                exec.load_targets(&targets)?;
            }
            let full = (step - 1) % config.stats_every == 0 || step == total;
            let stats = if full {
                StatsLevel::Full
            } else {
                StatsLevel::Gradients
            };
            exec.train_step(
                step,
                StepScalars {
                    lr: lr as f32,
                    t: t as u32,
                },
                stats,
            )?;
            // Under `skip` the host must know whether this step was skipped before it sets
            // the next step's schedule: it waits for each step (the device no longer runs
            // ahead). Other policies collect whatever has finished.
            let reports = exec.finished(config.on_nonfinite == NonFinitePolicy::Skip)?;
            let elapsed = train_time + t0.elapsed().as_secs_f64();
            handle(
                reports,
                exec.as_ref(),
                &mut watch,
                &mut log,
                observer,
                &mut last_layers,
                &mut epoch_loss,
                &lrs,
                elapsed,
            )?;
            if checkpointer.due(step, total) {
                // Every report up to this step is logged before its checkpoint exists.
                let reports = exec.finished(true)?;
                let elapsed = train_time + t0.elapsed().as_secs_f64();
                handle(
                    reports,
                    exec.as_ref(),
                    &mut watch,
                    &mut log,
                    observer,
                    &mut last_layers,
                    &mut epoch_loss,
                    &lrs,
                    elapsed,
                )?;
                let progress = Progress {
                    step,
                    cursor: loader.cursor(),
                    skipped_steps: watch.skipped_steps,
                    ..Progress::start()
                }
                .with_epoch_loss(epoch_loss);
                checkpointer.save(exec.as_mut(), config, &progress)?;
            }
        }
        let reports = exec.finished(true)?;
        train_time += t0.elapsed().as_secs_f64();
        handle(
            reports,
            exec.as_ref(),
            &mut watch,
            &mut log,
            observer,
            &mut last_layers,
            &mut epoch_loss,
            &lrs,
            train_time,
        )?;
        epoch += 1;
        let n = epoch_loss.2.max(1) as f64;
        last_epoch_train = (epoch_loss.0 / n, epoch_loss.1 as f64 / (n * batch as f64));
        epoch_loss = (0.0, 0, 0);

        val_result = evaluate(exec.as_mut(), &data.val, &mut inputs, &mut labels)?;
        let entry = EvalLog {
            kind: "eval",
            split: "val".into(),
            epoch,
            step,
            loss: val_result.0,
            accuracy: val_result.1,
            samples: data.val.n,
        };
        log.write_eval(&entry)?;
        observer.evaluated(&entry);
        more = step < total;
    }

    // The profile covers the training steps only (evaluation is not an op of a step).
    if let Some(profile) = exec.take_profile() {
        let path = dir.join("profile.json");
        let json =
            serde_json::to_string_pretty(&profile).map_err(|e| Error::config(e.to_string()))?;
        std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
        observer.profiled(&profile, &path);
    }

    let test = match &data.test {
        Some(t) => {
            let (loss, acc) = evaluate(exec.as_mut(), t, &mut inputs, &mut labels)?;
            let entry = EvalLog {
                kind: "eval",
                split: "test".into(),
                epoch,
                step,
                loss,
                accuracy: acc,
                samples: t.n,
            };
            log.write_eval(&entry)?;
            observer.evaluated(&entry);
            Some((loss, acc))
        }
        None => None,
    };

    let summary = Summary {
        executor,
        executor_reason: reason,
        data: data.source.clone(),
        train_samples: data.train.n,
        val_samples: data.val.n,
        params: model.param_count(),
        steps: step,
        epochs: epoch,
        final_train_loss: last_epoch_train.0,
        final_train_accuracy: last_epoch_train.1,
        final_val_loss: val_result.0,
        final_val_accuracy: val_result.1,
        test_loss: test.map(|t| t.0),
        test_accuracy: test.map(|t| t.1),
        samples_per_second: step as f64 * batch as f64 / train_time.max(1e-9),
        wall_seconds: start.elapsed().as_secs_f64(),
        run_dir: dir.display().to_string(),
        skipped_steps: watch.skipped_steps,
        first_nonfinite: watch.first_nonfinite.clone(),
        findings: watch.diagnoser.findings().to_vec(),
    };
    let path = dir.join("summary.json");
    let json = serde_json::to_string_pretty(&summary).map_err(|e| Error::config(e.to_string()))?;
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
    observer.finished(&summary, &last_layers);
    Ok(summary)
}
