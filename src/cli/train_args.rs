//! `gradscope train`: every setting of `TrainConfig` as a flag, laid over a preset and a
//! TOML config file.

use std::path::PathBuf;

use clap::Args;

use gradscope::config::{DeviceChoice, NonFinitePolicy, Schedule, TrainConfig, presets};
use gradscope::{Error, Result};

use super::console::Console;

#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// Named starting point: mlp (default), deep-sigmoid, deep-tanh, sigmoid-mse, wide-relu.
    #[arg(long)]
    preset: Option<String>,
    /// A TOML file with any of the settings below (keys with underscores).
    #[arg(long)]
    config: Option<PathBuf>,
    /// mlp (default), lenet5, resnet20/32/56, plain20/32/56 or dwsep.
    #[arg(long)]
    model: Option<String>,
    /// A TOML file describing the network layer by layer (overrides --model).
    #[arg(long)]
    model_file: Option<PathBuf>,
    /// BatchNorm in the convolutional networks (true/false; default true).
    #[arg(long)]
    batchnorm: Option<bool>,
    /// Random crop (pad 4) and horizontal flip of training images (true/false).
    #[arg(long)]
    augment: Option<bool>,
    /// Hidden layer widths, comma-separated (e.g. 256,128,64); overrides --depth/--width.
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Number of hidden layers.
    #[arg(long)]
    depth: Option<usize>,
    /// Width of every hidden layer.
    #[arg(long)]
    width: Option<usize>,
    /// identity, sigmoid, tanh, relu, leaky_relu, elu, selu, gelu, softplus.
    #[arg(long)]
    activation: Option<String>,
    /// zeros, normal, uniform, xavier_uniform, xavier_normal, he_uniform, he_normal,
    /// lecun_normal, lecun_uniform, orthogonal.
    #[arg(long)]
    init: Option<String>,
    /// xent or mse.
    #[arg(long)]
    loss: Option<String>,
    /// sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw.
    #[arg(long)]
    optimizer: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    momentum: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    beta1: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    beta2: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    eps: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f64>,
    /// constant, cosine or step.
    #[arg(long, value_parser = parse_schedule)]
    schedule: Option<Schedule>,
    #[arg(long)]
    warmup_steps: Option<u64>,
    #[arg(long, allow_negative_numbers = true)]
    batch_size: Option<i64>,
    #[arg(long)]
    epochs: Option<usize>,
    /// Stop after this many steps.
    #[arg(long)]
    max_steps: Option<u64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Full per-layer statistics every N steps (default 1).
    #[arg(long)]
    stats_every: Option<u64>,
    #[arg(long, allow_negative_numbers = true)]
    val_fraction: Option<f64>,
    /// auto (a hardware GPU, else the CPU), gpu (any adapter) or cpu.
    #[arg(long, value_parser = parse_device)]
    device: Option<DeviceChoice>,
    /// Adapter index or name substring (see `gradscope devices`).
    #[arg(long)]
    adapter: Option<String>,
    /// vulkan, metal, dx12 or gl.
    #[arg(long)]
    backend: Option<String>,
    /// Directory of MNIST-format IDX files (plain or gzip); default: the bundled set.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run directory (default runs/<time>-<preset>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Write a checkpoint every N steps (one is always written after the last step).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Keep the newest K checkpoints (default 3).
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// Start from the weights of a safetensors file (e.g. saved by PyTorch) instead of `--init`.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its newest valid checkpoint, with its config.toml
    /// (other flags given override it).
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Write TensorBoard event files into RUN_DIR/tensorboard/ (default true;
    /// `--tensorboard false` turns them off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    tensorboard: Option<bool>,
    /// Clip gradients by their global L2 norm to at most X.
    #[arg(long, allow_negative_numbers = true)]
    clip_norm: Option<f64>,
    /// Clamp every gradient element to [−V, V].
    #[arg(long, allow_negative_numbers = true)]
    clip_value: Option<f64>,
    /// halt (default), skip or continue when a NaN or Inf appears.
    #[arg(long, value_parser = parse_nonfinite)]
    on_nonfinite: Option<NonFinitePolicy>,
    /// A sequence task for --model rnn, rnn_relu, lstm or gru: adding, memory or rows.
    #[arg(long)]
    task: Option<String>,
    /// Sequence length T of the task.
    #[arg(long)]
    seq_len: Option<usize>,
    /// Hidden units of every recurrent layer.
    #[arg(long)]
    hidden_size: Option<usize>,
    /// Stacked recurrent layers (the depth of a recurrent model).
    #[arg(long)]
    rnn_layers: Option<usize>,
    /// Truncated BPTT length: no gradient crosses a multiple of it (0: none).
    #[arg(long)]
    truncate: Option<usize>,
    /// The LSTM's forget-gate bias at initialization (e.g. 1).
    #[arg(long, allow_negative_numbers = true)]
    forget_bias: Option<f64>,
    /// Width of the memory task's token embedding.
    #[arg(long)]
    embedding_dim: Option<usize>,
    /// Training sequences of a synthetic task.
    #[arg(long)]
    train_samples: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Build the data, model, plan and executor, print the memory plan, and stop.
    #[arg(long)]
    dry_run: bool,
    /// Time every op of every step (GPU timestamps where the adapter has them) and print
    /// where a step's time goes: per kind of op, per layer, the slowest ops, and the host's
    /// time to encode and submit; also written to RUN_DIR/profile.json.
    #[arg(long)]
    profile: bool,
}

fn parse_schedule(s: &str) -> std::result::Result<Schedule, String> {
    match s {
        "constant" => Ok(Schedule::Constant),
        "cosine" => Ok(Schedule::Cosine),
        "step" => Ok(Schedule::Step),
        _ => Err(format!(
            "unknown schedule `{s}`; use constant, cosine or step"
        )),
    }
}

fn parse_nonfinite(s: &str) -> std::result::Result<NonFinitePolicy, String> {
    match s {
        "halt" => Ok(NonFinitePolicy::Halt),
        "skip" => Ok(NonFinitePolicy::Skip),
        "continue" => Ok(NonFinitePolicy::Continue),
        _ => Err(format!("unknown policy `{s}`; use halt, skip or continue")),
    }
}

fn parse_device(s: &str) -> std::result::Result<DeviceChoice, String> {
    match s {
        "auto" => Ok(DeviceChoice::Auto),
        "gpu" => Ok(DeviceChoice::Gpu),
        "cpu" => Ok(DeviceChoice::Cpu),
        _ => Err(format!("unknown device `{s}`; use auto, gpu or cpu")),
    }
}

impl TrainArgs {
    /// Defaults, then the preset, then the config file, then the flags.
    fn resolve(&self) -> Result<(TrainConfig, String)> {
        if let Some(dir) = &self.resume {
            if self.preset.is_some() || self.config.is_some() || self.init_from.is_some() {
                return Err(Error::config(
                    "--resume takes its settings from RUN_DIR/config.toml and its weights from                      the checkpoint; drop --preset, --config and --init-from",
                ));
            }
            let base = gradscope::checkpoint::load_run_config(dir)?;
            return Ok((self.overlay(base)?, "resume".into()));
        }
        let name = self.preset.clone().unwrap_or_else(|| "mlp".into());
        let overlay = presets::find(&name).ok_or_else(|| {
            Error::config(format!(
                "unknown preset `{name}`; use one of {}",
                presets::names().join(", ")
            ))
        })?;
        let mut c =
            TrainConfig::default().overlay_toml(overlay, std::path::Path::new("<preset>"))?;
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            c = c.overlay_toml(&text, path)?;
        }
        let c = self.overlay(c)?;
        // Without a preset, the run is named after its network (`--model resnet20` is not
        // an "mlp" run although it starts from that preset's settings).
        let name = match (&self.preset, &c.model_file) {
            (Some(_), _) => name,
            (None, Some(file)) => file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| c.model.clone()),
            (None, None) => c.model.clone(),
        };
        Ok((c, name))
    }

    /// The flags given, laid over `c`.
    fn overlay(&self, mut c: TrainConfig) -> Result<TrainConfig> {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { c.$field = v.clone(); } )* };
        }
        set!(model, batchnorm, augment);
        set!(
            hidden, depth, width, activation, init, loss, optimizer, lr, momentum, beta1, beta2,
            eps
        );
        set!(
            weight_decay,
            schedule,
            warmup_steps,
            epochs,
            max_steps,
            seed,
            stats_every,
            val_fraction,
            device,
            checkpoint_every,
            keep_checkpoints,
            on_nonfinite
        );
        set!(
            hidden_size,
            rnn_layers,
            truncate,
            embedding_dim,
            train_samples
        );
        if self.task.is_some() {
            c.task = self.task.clone();
        }
        if self.seq_len.is_some() {
            c.seq_len = self.seq_len;
        }
        if self.forget_bias.is_some() {
            c.forget_bias = self.forget_bias;
        }
        if self.clip_norm.is_some() {
            c.clip_norm = self.clip_norm;
        }
        if self.clip_value.is_some() {
            c.clip_value = self.clip_value;
        }
        if let Some(b) = self.batch_size {
            c.batch_size = usize::try_from(b).ok().filter(|&b| b > 0).ok_or_else(|| {
                Error::config(format!("`batch_size` must be at least 1, got {b}"))
            })?;
        }
        if self.adapter.is_some() {
            c.adapter = self.adapter.clone();
        }
        if self.backend.is_some() {
            c.backend = self.backend.clone();
        }
        if self.data.is_some() {
            c.data = self.data.clone();
        }
        if self.model_file.is_some() {
            c.model_file = self.model_file.clone();
        }
        if self.run_dir.is_some() {
            c.run_dir = self.run_dir.clone();
        }
        if self.init_from.is_some() {
            c.init_from = self.init_from.clone();
        }
        if let Some(tb) = self.tensorboard {
            c.tensorboard = tb;
        }
        if self.profile {
            c.profile = true;
        }
        c.validate()?;
        Ok(c)
    }
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let (config, name) = args.resolve()?;
    if args.dry_run {
        let d = gradscope::train::dry_run(&config)?;
        print!("{}", super::console::memory_plan(&d));
        return Ok(());
    }
    let mut console = Console::new(args.quiet);
    match &args.resume {
        Some(dir) => gradscope::train::resume(&config, dir, &mut console)?,
        None => gradscope::train::train(&config, &name, &mut console)?,
    };
    Ok(())
}
