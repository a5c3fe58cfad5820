//! What a bench run measures: the kernel families, what `--sizes` means for each, and the
//! run counts.

use crate::error::{Error, Result};

/// A kernel family, as `--op` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Matmul,
    Conv2d,
    Pool,
    Batchnorm,
    Layernorm,
    Activation,
    Loss,
    Stats,
    Reduce,
    Optimizer,
    Step,
}

impl Family {
    pub const ALL: [Family; 11] = [
        Family::Matmul,
        Family::Conv2d,
        Family::Pool,
        Family::Batchnorm,
        Family::Layernorm,
        Family::Activation,
        Family::Loss,
        Family::Stats,
        Family::Reduce,
        Family::Optimizer,
        Family::Step,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Matmul => "matmul",
            Family::Conv2d => "conv2d",
            Family::Pool => "pool",
            Family::Batchnorm => "batchnorm",
            Family::Layernorm => "layernorm",
            Family::Activation => "activation",
            Family::Loss => "loss",
            Family::Stats => "stats",
            Family::Reduce => "reduce",
            Family::Optimizer => "optimizer",
            Family::Step => "step",
        }
    }

    /// What one number of `--sizes` means for this family.
    pub fn size_meaning(self) -> &'static str {
        match self {
            Family::Matmul => "N: an N×N×N product (M = N = K) in each layout NN, NT, TN",
            Family::Conv2d => {
                "batch of the distinct resnet-20 convolutions on 3×32×32 (stride 1 and 2, 1×1 projections) and of dwsep's depthwise ones on 28×28"
            }
            Family::Pool => {
                "batch: 2×2 stride-2 max and average pooling of 16×32×32, global average of 64×8×8"
            }
            Family::Batchnorm => "batch of 16×32×32 feature maps",
            Family::Layernorm => "rows of 1024 features",
            Family::Activation => "elements (ReLU, σ, tanh, GELU; dropout at p = 0.5)",
            Family::Loss => "rows of softmax cross-entropy over 1000 classes",
            Family::Stats => "elements of the tensor whose statistics record is taken",
            Family::Reduce => {
                "elements: bias gradients of [size/256, 256] and [size/4096, 64, 8, 8], loss of size/256 rows"
            }
            Family::Optimizer => "parameters updated",
            Family::Step => {
                "batch of a training step (MLP 784-256-256-10, LeNet-5, resnet-20, dwsep; full statistics)"
            }
        }
    }

    /// Elements (4 bytes each) of the tensors of this family's largest case at `size`, an
    /// upper bound checked by a test against the cases themselves (0 for `step`, whose
    /// executors check their plan). With the copies the runner keeps (initial values, the
    /// CPU side's, the reference) that is what a case holds on the host.
    pub fn tensor_elements(self, size: usize) -> u64 {
        let s = size as u64;
        // One sample of the largest resnet-20 feature map the families use (16×32×32).
        const MAP: u64 = 16 * 32 * 32;
        match self {
            Family::Matmul => 3 * s * s,
            // x and y (or dy and dx) of the largest: the 64-channel depthwise convolution
            // (28×28 to 14×14; the 16→16 one holds 2·MAP), and the 64→64 weights.
            Family::Conv2d => (64 * 28 * 28 + 64 * 14 * 14) * s + 64 * 64 * 9,
            // Max pooling's backward: x, dy, the arg-max and dx.
            Family::Pool => (2 * MAP + 2 * MAP / 4) * s,
            // The backward: x, dy, dx, and per channel γ and the saved statistics.
            Family::Batchnorm => 4 * MAP * s + 16 * 8,
            Family::Layernorm => 4 * 1024 * s + 4 * 1024 + 2 * s,
            // x, y, dy and dx.
            Family::Activation => 4 * s,
            // Logits and their gradient, per-row loss, label and correct flag.
            Family::Loss => 2 * 1000 * s + 3 * s,
            Family::Stats => s + 64,
            // The bias gradient's dy and its 256 sums.
            Family::Reduce => s + 256,
            // Parameter, gradient, two state tensors and the update.
            Family::Optimizer => 5 * s,
            Family::Step => 0,
        }
    }

    /// Sizes measured when `--sizes` is not given: large enough to occupy a real GPU.
    pub fn default_sizes(self) -> Vec<usize> {
        match self {
            Family::Matmul => vec![256, 1024, 4096],
            Family::Conv2d | Family::Pool | Family::Batchnorm | Family::Step => vec![128],
            Family::Layernorm => vec![4096],
            Family::Loss => vec![4096],
            Family::Activation | Family::Stats | Family::Reduce | Family::Optimizer => {
                vec![1 << 20, 1 << 24]
            }
        }
    }
}

/// A bench run's settings.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Filters: a family name or a substring of a kernel's name; empty means everything.
    pub ops: Vec<String>,
    /// Sizes for every selected family (meaning per family); None means the defaults.
    pub sizes: Option<Vec<usize>>,
    pub repeats: usize,
    pub warmup: usize,
    pub cpu: bool,
    pub gpu: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            ops: Vec::new(),
            sizes: None,
            repeats: 5,
            warmup: 2,
            cpu: true,
            gpu: true,
        }
    }
}

impl BenchOptions {
    /// Refuses settings that would measure nothing.
    pub fn validate(&self) -> Result<()> {
        if self.repeats == 0 {
            return Err(Error::config("--repeats must be at least 1"));
        }
        if !self.cpu && !self.gpu {
            return Err(Error::config(
                "--cpu-only and --gpu-only together leave nothing to measure",
            ));
        }
        if let Some(s) = &self.sizes
            && (s.is_empty() || s.contains(&0))
        {
            return Err(Error::config(format!(
                "--sizes must list positive numbers, got {s:?}"
            )));
        }
        for op in &self.ops {
            if op.trim().is_empty() {
                return Err(Error::config("--op got an empty name"));
            }
        }
        Ok(())
    }

    /// The sizes of a family.
    pub fn sizes_for(&self, family: Family) -> Vec<usize> {
        self.sizes.clone().unwrap_or_else(|| family.default_sizes())
    }

    /// Whether a filter names the family as a whole, or none is given.
    pub fn family_selected(&self, family: Family) -> bool {
        self.ops.is_empty()
            || self
                .ops
                .iter()
                .any(|o| o.eq_ignore_ascii_case(family.name()))
    }

    /// Whether a case of `family` named `name` runs: its family is selected, or a filter
    /// that names no family is a substring of its name (`--op matmul_nt`, `--op backward`;
    /// `--op conv2d` is the family, not also the reduce family's `conv2d_backward_bias`).
    pub fn selected(&self, family: Family, name: &str) -> bool {
        let is_family = |o: &str| Family::ALL.iter().any(|f| o.eq_ignore_ascii_case(f.name()));
        self.family_selected(family)
            || self.ops.iter().any(|o| {
                !is_family(o) && name.to_ascii_lowercase().contains(&o.to_ascii_lowercase())
            })
    }
}
