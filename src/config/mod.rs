//! Run configuration: defaults, then a named preset, then a TOML file, then command-line
//! flags, each layer overriding the one before. Unknown keys, impossible sizes and
//! non-finite numbers are refused with a message naming the key.

pub mod presets;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::Init;
use crate::model::{LossKind, ModelSpec};
use crate::ops::{Activation, OptimizerKind, OptimizerParams};

/// Which executor runs the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The GPU when a hardware adapter exists, else the CPU executor.
    Auto,
    /// The GPU executor on any adapter, software ones included.
    Gpu,
    Cpu,
}

/// Learning-rate schedule over optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Cosine decay from lr to lr·min_lr_factor over the run.
    Cosine,
    /// lr·gamma^(step / step_every).
    Step,
}

/// What a run does when a NaN or Inf appears in a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonFinitePolicy {
    /// Stop with an error naming the origin; the parameters stay those of the last step
    /// whose gradients were finite (the device stops updating at the bad step).
    #[default]
    Halt,
    /// Discard that step's update (parameters and optimizer state unchanged), count it, and
    /// go on; the learning-rate schedule does not advance.
    Skip,
    /// Name the origin once and go on.
    Continue,
}

/// Every setting of a training run. Field names are the TOML keys and, with dashes, the
/// command-line flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// `mlp`, or a convolutional network: lenet5, resnet20/32/56, plain20/32/56, dwsep.
    pub model: String,
    /// A TOML file describing the network layer by layer (see `model::file`); overrides
    /// `model`.
    pub model_file: Option<PathBuf>,
    /// BatchNorm after every convolution of the residual, plain and depthwise networks.
    pub batchnorm: bool,
    /// Random crops (zero padding 4) and horizontal flips of image batches while training.
    pub augment: bool,
    /// Hidden layer widths; overrides `depth` × `width` when non-empty.
    pub hidden: Vec<usize>,
    /// Number of hidden layers (used when `hidden` is empty).
    pub depth: usize,
    /// Width of every hidden layer (used when `hidden` is empty).
    pub width: usize,
    pub activation: String,
    pub init: String,
    pub loss: String,
    pub optimizer: String,
    pub lr: f64,
    pub momentum: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Steps of linear warm-up from 0 to lr.
    pub warmup_steps: u64,
    /// Cosine: the final lr as a fraction of lr.
    pub min_lr_factor: f64,
    /// Step schedule: decay every this many steps.
    pub step_every: u64,
    /// Step schedule: decay factor.
    pub gamma: f64,
    pub batch_size: usize,
    pub epochs: usize,
    /// Stop after this many steps (0: run every epoch).
    pub max_steps: u64,
    pub seed: u64,
    /// Full statistics every N steps (gradient norms are taken every step regardless).
    pub stats_every: u64,
    /// Fraction of the training data held out for validation.
    pub val_fraction: f64,
    pub device: DeviceChoice,
    /// Adapter index or name substring (see `gradscope devices`).
    pub adapter: Option<String>,
    /// vulkan, metal, dx12 or gl.
    pub backend: Option<String>,
    /// A directory of IDX files (train-images-idx3-ubyte[.gz], …); none: the bundled set.
    pub data: Option<PathBuf>,
    /// Where the run directory goes (default runs/<time>-<preset>).
    pub run_dir: Option<PathBuf>,
    /// Write a checkpoint every N steps (0: only the one after the last step).
    pub checkpoint_every: u64,
    /// How many of the newest checkpoints to keep (at least 1).
    pub keep_checkpoints: usize,
    /// Initial weights from a safetensors file (e.g. exported by PyTorch) instead of `init`.
    pub init_from: Option<PathBuf>,
    /// Also write TensorBoard event files into RUN_DIR/tensorboard/.
    pub tensorboard: bool,
    /// Clip every gradient by the global L2 norm to at most this (PyTorch clip_grad_norm_).
    pub clip_norm: Option<f64>,
    /// Clamp every gradient element to [−v, v] (PyTorch clip_grad_value_).
    pub clip_value: Option<f64>,
    /// halt, skip or continue when a NaN or Inf appears.
    pub on_nonfinite: NonFinitePolicy,
    /// Thresholds of the diagnosis rules (`[diagnosis]` table).
    pub diagnosis: crate::diagnosis::DiagnosisConfig,
    /// Time every op of every step and write where a step's time goes to
    /// RUN_DIR/profile.json (`--profile`). Results do not change; the GPU executor then
    /// waits for each step. A mode of this run, not a training setting: it is not written
    /// to the run's config.toml, so `--resume` does not profile unless asked again.
    #[serde(skip_serializing)]
    pub profile: bool,
    /// A built-in sequence task for the recurrent models (`model` = rnn, rnn_relu, lstm,
    /// gru): adding, memory or rows (see `data::sequence`).
    pub task: Option<String>,
    /// Sequence length T (default: 50 adding, 20 memory, 28 rows).
    pub seq_len: Option<usize>,
    /// Hidden units of every recurrent layer.
    pub hidden_size: usize,
    /// Stacked recurrent layers.
    pub rnn_layers: usize,
    /// Truncated BPTT: no gradient crosses a multiple of this many steps (0: none).
    pub truncate: usize,
    /// The LSTM's forget-gate bias at initialization (unset: drawn like the other biases).
    pub forget_bias: Option<f64>,
    /// Width of the memory task's token embedding.
    pub embedding_dim: usize,
    /// Training sequences of a synthetic task (validation gets an eighth as many more).
    pub train_samples: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "mlp".into(),
            model_file: None,
            batchnorm: true,
            augment: false,
            hidden: Vec::new(),
            depth: 6,
            width: 128,
            activation: "relu".into(),
            init: "he_normal".into(),
            loss: "xent".into(),
            optimizer: "adam".into(),
            lr: 1e-3,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            warmup_steps: 0,
            min_lr_factor: 0.0,
            step_every: 1000,
            gamma: 0.1,
            batch_size: 128,
            epochs: 3,
            max_steps: 0,
            seed: 0,
            stats_every: 1,
            val_fraction: 0.1,
            device: DeviceChoice::Auto,
            adapter: None,
            backend: None,
            data: None,
            run_dir: None,
            checkpoint_every: 0,
            keep_checkpoints: 3,
            init_from: None,
            tensorboard: true,
            clip_norm: None,
            clip_value: None,
            on_nonfinite: NonFinitePolicy::Halt,
            profile: false,
            diagnosis: Default::default(),
            task: None,
            seq_len: None,
            hidden_size: 64,
            rnn_layers: 1,
            truncate: 0,
            forget_bias: None,
            embedding_dim: 16,
            train_samples: 8192,
        }
    }
}

/// The recurrent models `model` may name.
pub const RECURRENT_MODELS: [&str; 4] = ["rnn", "rnn_relu", "lstm", "gru"];

/// The largest layer width a config may ask for.
pub const MAX_WIDTH: usize = 1 << 20;
/// The most hidden layers a config may ask for.
pub const MAX_DEPTH: usize = 4096;
/// The largest batch.
pub const MAX_BATCH: usize = 1 << 24;
/// The most epochs (times at most 2³² batches an epoch, far from overflowing a u64).
pub const MAX_EPOCHS: usize = 1 << 20;
/// The most steps.
pub const MAX_STEPS: u64 = 1 << 40;

impl TrainConfig {
    /// Parses a TOML config, refusing unknown keys.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text)
            .map_err(|e| Error::config(format!("{}: {}", path.display(), e.message())))
    }

    /// Overlays the keys present in a TOML table onto `self`.
    pub fn overlay_toml(&self, text: &str, path: &Path) -> Result<Self> {
        let over: toml::Table = toml::from_str(text)
            .map_err(|e| Error::config(format!("{}: {}", path.display(), e.message())))?;
        let mut base = toml::Table::try_from(self).map_err(|e| Error::config(e.to_string()))?;
        for (k, v) in over {
            base.insert(k, v);
        }
        let merged = toml::to_string(&base).map_err(|e| Error::config(e.to_string()))?;
        Self::from_toml(&merged, path)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn hidden_widths(&self) -> Vec<usize> {
        if self.hidden.is_empty() {
            vec![self.width; self.depth]
        } else {
            self.hidden.clone()
        }
    }

    pub fn activation(&self) -> Result<Activation> {
        Activation::parse(&self.activation).ok_or_else(|| {
            Error::config(format!(
                "unknown activation `{}`; use one of {}",
                self.activation,
                Activation::ALL_NAMES.join(", ")
            ))
        })
    }

    pub fn init(&self) -> Result<Init> {
        Init::parse(&self.init).ok_or_else(|| {
            Error::config(format!(
                "unknown init `{}`; use one of {}",
                self.init,
                Init::ALL_NAMES.join(", ")
            ))
        })
    }

    pub fn loss(&self) -> Result<LossKind> {
        LossKind::parse(&self.loss)
            .ok_or_else(|| Error::config(format!("unknown loss `{}`; use xent or mse", self.loss)))
    }

    pub fn optimizer(&self) -> Result<OptimizerParams> {
        let kind = OptimizerKind::parse(&self.optimizer).ok_or_else(|| {
            Error::config(format!(
                "unknown optimizer `{}`; use one of {}",
                self.optimizer,
                OptimizerKind::ALL_NAMES.join(", ")
            ))
        })?;
        let mut p = OptimizerParams::new(kind);
        p.momentum = self.momentum as f32;
        p.beta1 = self.beta1 as f32;
        // RMSProp's smoothing constant α shares the β₂ slot; its PyTorch default is 0.99.
        p.beta2 = if kind == OptimizerKind::Rmsprop && self.beta2 == TrainConfig::default().beta2 {
            0.99
        } else {
            self.beta2 as f32
        };
        p.eps = if kind == OptimizerKind::Adagrad && self.eps == TrainConfig::default().eps {
            1e-10
        } else {
            self.eps as f32
        };
        p.weight_decay = self.weight_decay as f32;
        Ok(p)
    }

    /// Clipping and the device's non-finite guard, as the plan takes them.
    pub fn step_options(&self) -> crate::plan::StepOptions {
        crate::plan::StepOptions {
            clip_norm: self.clip_norm.map(|v| v as f32),
            clip_value: self.clip_value.map(|v| v as f32),
            guard: match self.on_nonfinite {
                NonFinitePolicy::Halt => crate::plan::Guard::Halt,
                NonFinitePolicy::Skip => crate::plan::Guard::Skip,
                NonFinitePolicy::Continue => crate::plan::Guard::Off,
            },
        }
    }

    /// The model this config describes for inputs of per-sample `shape` ([features] or
    /// [C, H, W]) and `classes` classes.
    pub fn model_for(&self, shape: &[usize], classes: usize) -> Result<ModelSpec> {
        if let Some(path) = &self.model_file {
            let model = crate::model::file::load(path, shape, self.init()?, self.loss()?)?;
            let logits = model.nodes.iter().rev().nth(1).map_or(0, |n| n.features);
            if logits != classes {
                return Err(Error::config(format!(
                    "{}: the last layer has {logits} outputs but the data has {classes} classes",
                    path.display()
                )));
            }
            return Ok(model);
        }
        if self.model == "mlp" {
            return self.model(shape.iter().product(), classes);
        }
        crate::model::zoo::build(
            &self.model,
            shape,
            classes,
            self.batchnorm,
            self.init()?,
            self.loss()?,
        )
    }

    /// The MLP this config describes, for `input` features and `classes` classes.
    pub fn model(&self, input: usize, classes: usize) -> Result<ModelSpec> {
        ModelSpec::mlp(
            input,
            &self.hidden_widths(),
            classes,
            self.activation()?,
            self.init()?,
            self.loss()?,
        )
    }

    /// Whether `model` names a recurrent network.
    pub fn is_recurrent(&self) -> bool {
        RECURRENT_MODELS.contains(&self.model.as_str())
    }

    /// The sequence task, or None for image and feature data.
    pub fn seq_task(&self) -> Result<Option<crate::data::sequence::SeqTask>> {
        use crate::data::sequence::SeqTask;
        match &self.task {
            None => Ok(None),
            Some(name) => SeqTask::parse(name).map(Some).ok_or_else(|| {
                Error::config(format!(
                    "unknown task `{name}`; use one of {}",
                    SeqTask::NAMES.join(", ")
                ))
            }),
        }
    }

    /// The sequence length of `task`: `seq_len`, or the task's default.
    pub fn steps_for(&self, task: crate::data::sequence::SeqTask) -> usize {
        use crate::data::sequence::SeqTask;
        self.seq_len.unwrap_or(match task {
            SeqTask::Adding => 50,
            SeqTask::Memory { .. } => 20,
            SeqTask::Rows => 28,
        })
    }

    /// The recurrent model of this config for `task`.
    pub fn sequence_model(&self, task: crate::data::sequence::SeqTask) -> Result<ModelSpec> {
        use crate::model::recurrent::{Readout, SeqInput, SequenceModel};
        let steps = self.steps_for(task);
        task.check_steps(steps)?;
        let cell = crate::ops::CellKind::parse(&self.model).ok_or_else(|| {
            Error::config(format!(
                "model `{}` is not a recurrent network; use one of {}",
                self.model,
                RECURRENT_MODELS.join(", ")
            ))
        })?;
        let input = match task.vocab() {
            Some(vocab) => SeqInput::Tokens {
                vocab,
                dim: self.embedding_dim,
            },
            None => SeqInput::Features(task.features(steps)),
        };
        SequenceModel {
            cell,
            input,
            steps,
            hidden: self.hidden_size,
            layers: self.rnn_layers,
            outputs: task.outputs(),
            readout: Readout::Last,
            loss: if task.regression() {
                LossKind::Mse
            } else {
                self.loss()?
            },
            truncate: self.truncate,
            forget_bias: self.forget_bias.map(|v| v as f32),
        }
        .build()
    }

    /// Refuses settings no run can use, naming the key.
    pub fn validate(&self) -> Result<()> {
        let task = self.seq_task()?;
        match (self.is_recurrent(), task) {
            (true, None) => {
                return Err(Error::config(format!(
                    "model `{}` reads sequences: choose a task with `task` (--task): adding,                      memory or rows",
                    self.model
                )));
            }
            (false, Some(t)) => {
                return Err(Error::config(format!(
                    "task `{}` needs a recurrent model: set `model` to one of {}",
                    t.name(),
                    RECURRENT_MODELS.join(", ")
                )));
            }
            (true, Some(t)) => {
                t.check_steps(self.steps_for(t))?;
                if self.hidden_size == 0 {
                    return Err(Error::config(
                        "`hidden_size` is 0; a recurrent layer needs at least 1 unit",
                    ));
                }
                if self.rnn_layers == 0 {
                    return Err(Error::config("`rnn_layers` must be at least 1"));
                }
                if self.embedding_dim == 0 || self.train_samples == 0 {
                    return Err(Error::config(
                        "`embedding_dim` and `train_samples` must be at least 1",
                    ));
                }
                if self.forget_bias.is_some_and(|v| !v.is_finite()) {
                    return Err(Error::config("`forget_bias` must be a finite number"));
                }
            }
            (false, None) => {}
        }
        let known_model = self.is_recurrent()
            || self.model == "mlp"
            || crate::model::zoo::NAMES.contains(&self.model.as_str())
            || self
                .model
                .strip_prefix("resnet")
                .or(self.model.strip_prefix("plain"))
                .is_some_and(|d| d.parse::<usize>().is_ok());
        if !known_model {
            return Err(Error::config(format!(
                "unknown model `{}`; use mlp or one of {} (resnetN/plainN with N = 6n + 2)",
                self.model,
                crate::model::zoo::NAMES.join(", ")
            )));
        }
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "`{name}` must be a finite number > 0, got {v}"
                )))
            }
        };
        let non_negative = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "`{name}` must be a finite number ≥ 0, got {v}"
                )))
            }
        };
        let fraction = |name: &str, v: f64| {
            if v.is_finite() && (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "`{name}` must lie in [0, 1), got {v}"
                )))
            }
        };
        positive("lr", self.lr)?;
        fraction("momentum", self.momentum)?;
        fraction("beta1", self.beta1)?;
        fraction("beta2", self.beta2)?;
        positive("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("min_lr_factor", self.min_lr_factor)?;
        positive("gamma", self.gamma)?;
        fraction("val_fraction", self.val_fraction)?;
        if self.batch_size == 0 {
            return Err(Error::config("`batch_size` must be at least 1"));
        }
        if self.epochs == 0 && self.max_steps == 0 {
            return Err(Error::config(
                "`epochs` must be at least 1 (or set `max_steps`)",
            ));
        }
        if self.stats_every == 0 {
            return Err(Error::config("`stats_every` must be at least 1"));
        }
        if self.keep_checkpoints == 0 {
            return Err(Error::config(
                "`keep_checkpoints` must be at least 1 (the newest checkpoint is always kept)",
            ));
        }
        if self.step_every == 0 {
            return Err(Error::config("`step_every` must be at least 1"));
        }
        if self.hidden.is_empty() && self.depth > 0 && self.width == 0 {
            return Err(Error::config("`width` must be at least 1"));
        }
        if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
            return Err(Error::config(format!(
                "`hidden` entry {i} is 0; widths must be at least 1"
            )));
        }
        // Bounds that keep every size computed from these settings (tensor elements, step
        // counts) far from overflow, whatever a config file says.
        let at_most = |name: &str, v: usize, max: usize| {
            if v > max {
                Err(Error::config(format!(
                    "`{name}` is {v}; at most {max} is supported"
                )))
            } else {
                Ok(())
            }
        };
        at_most("depth", self.depth, MAX_DEPTH)?;
        at_most("width", self.width, MAX_WIDTH)?;
        at_most("hidden (number of layers)", self.hidden.len(), MAX_DEPTH)?;
        for &w in &self.hidden {
            at_most("hidden (a width)", w, MAX_WIDTH)?;
        }
        at_most("batch_size", self.batch_size, MAX_BATCH)?;
        at_most("seq_len", self.seq_len.unwrap_or(0), 1 << 20)?;
        at_most("hidden_size", self.hidden_size, MAX_WIDTH)?;
        at_most("rnn_layers", self.rnn_layers, MAX_DEPTH)?;
        at_most("embedding_dim", self.embedding_dim, MAX_WIDTH)?;
        at_most("train_samples", self.train_samples, 1 << 24)?;
        at_most("epochs", self.epochs, MAX_EPOCHS)?;
        if self.max_steps > MAX_STEPS {
            return Err(Error::config(format!(
                "`max_steps` is {}; at most {MAX_STEPS} is supported",
                self.max_steps
            )));
        }
        if let Some(v) = self.clip_norm {
            positive("clip_norm", v)?;
        }
        if let Some(v) = self.clip_value {
            positive("clip_value", v)?;
        }
        if self.clip_norm.is_some() && self.clip_value.is_some() {
            return Err(Error::config(
                "set one of `clip_norm` and `clip_value`, not both",
            ));
        }
        self.diagnosis.validate()?;
        self.activation()?;
        self.init()?;
        self.loss()?;
        self.optimizer()?;
        Ok(())
    }

    /// The learning rate of 1-based optimizer step `t` out of `total`.
    pub fn lr_at(&self, t: u64, total: u64) -> f64 {
        let warm = if self.warmup_steps > 0 && t <= self.warmup_steps {
            t as f64 / self.warmup_steps as f64
        } else {
            1.0
        };
        let after = t.saturating_sub(self.warmup_steps);
        let span = total.saturating_sub(self.warmup_steps).max(1);
        let factor = match self.schedule {
            Schedule::Constant => 1.0,
            Schedule::Cosine => {
                let progress = (after as f64 / span as f64).min(1.0);
                self.min_lr_factor
                    + (1.0 - self.min_lr_factor)
                        * 0.5
                        * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Schedule::Step => self.gamma.powi((after / self.step_every) as i32),
        };
        self.lr * warm * factor
    }
}
