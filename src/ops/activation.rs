//! Element-wise activation functions. Their formulas live in `shaders/activation_math.wgsl` and
//! `cpu/activation.rs`; this file only names them and carries their constants.

use serde::{Deserialize, Serialize};

/// SELU's constants from Klambauer et al. 2017 (the values PyTorch uses).
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Activation {
    Identity,
    Sigmoid,
    Tanh,
    Relu,
    /// max(x, slope·x); PyTorch's default slope is 0.01.
    LeakyRelu {
        slope: f32,
    },
    /// x for x > 0, alpha·(eˣ − 1) otherwise; PyTorch's default alpha is 1.
    Elu {
        alpha: f32,
    },
    Selu,
    /// The exact GELU, x·Φ(x), with Φ the normal CDF (PyTorch's `approximate='none'`).
    Gelu,
    /// ln(1 + eˣ), computed without overflow.
    Softplus,
}

impl Activation {
    /// The code the WGSL kernel switches on (`ACT_*` constants in activation.wgsl).
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Sigmoid => 1,
            Activation::Tanh => 2,
            Activation::Relu => 3,
            Activation::LeakyRelu { .. } => 4,
            Activation::Elu { .. } => 5,
            Activation::Selu => 6,
            Activation::Gelu => 7,
            Activation::Softplus => 8,
        }
    }

    /// The activation's one tunable constant (slope or alpha), 0 where there is none.
    pub fn param(self) -> f32 {
        match self {
            Activation::LeakyRelu { slope } => slope,
            Activation::Elu { alpha } => alpha,
            _ => 0.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Selu => "selu",
            Activation::Gelu => "gelu",
            Activation::Softplus => "softplus",
        }
    }

    /// Parses the names used on the command line and in config files.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().replace('-', "_").as_str() {
            "identity" | "linear" | "none" => Activation::Identity,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "relu" => Activation::Relu,
            "leaky_relu" | "leakyrelu" => Activation::LeakyRelu { slope: 0.01 },
            "elu" => Activation::Elu { alpha: 1.0 },
            "selu" => Activation::Selu,
            "gelu" => Activation::Gelu,
            "softplus" => Activation::Softplus,
            _ => return None,
        })
    }

    pub const ALL_NAMES: &'static [&'static str] = &[
        "identity",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "elu",
        "selu",
        "gelu",
        "softplus",
    ];

    /// Bounds between which an output counts as saturated (sigmoid and tanh only): the
    /// derivative there is below 2% of its peak, which is where gradients stop flowing.
    pub fn saturation_bounds(self) -> Option<(f32, f32)> {
        match self {
            Activation::Sigmoid => Some((0.01, 0.99)),
            Activation::Tanh => Some((-0.99, 0.99)),
            _ => None,
        }
    }

    /// Whether a unit can die (output exactly zero for every input): ReLU only.
    pub fn can_die(self) -> bool {
        matches!(self, Activation::Relu)
    }
}
