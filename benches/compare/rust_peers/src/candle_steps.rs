//! The training steps in Candle 0.11 on its CPU device (`gemm` for matrix products, im2col
//! convolutions, rayon), with Candle's autograd, layers and AdamW (weight decay 0 is Adam).
//! Candle has no momentum SGD, so resnet-20's is written here, as optax and PyTorch define it.

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{
    AdamW, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, Linear, Optimizer, ParamsAdamW,
    VarBuilder, VarMap,
};

use crate::TrainStep;
use crate::batch;

const DESCRIPTION: &str = "candle 0.11.1 (CPU device)";

/// Candle returns a Result from every op; a failure here is a bug of this comparison.
fn ok<T>(r: candle_core::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("candle: {e}"))
}

/// The last step's loss, NaN before the first.
fn loss_value(last: &Option<Tensor>) -> f32 {
    last.as_ref().map_or(f32::NAN, |l| ok(l.to_scalar::<f32>()))
}

fn labels(batch: usize) -> Tensor {
    ok(Tensor::from_vec(batch::labels(batch), batch, &Device::Cpu))
}

pub struct Mlp {
    layers: Vec<Linear>,
    optimizer: AdamW,
    x: Tensor,
    y: Tensor,
    last: Option<Tensor>,
}

impl Mlp {
    pub fn new(batch: usize) -> Self {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
        // candle_nn::linear draws He-normal weights (fan-in, ReLU gain), as the others do.
        let layers = [784, 256, 256, 10]
            .windows(2)
            .enumerate()
            .map(|(i, w)| ok(candle_nn::linear(w[0], w[1], vb.pp(format!("l{i}")))))
            .collect();
        let params = ParamsAdamW {
            lr: 1e-4,
            eps: 1e-8,
            weight_decay: 0.0,
            ..Default::default()
        };
        Self {
            layers,
            optimizer: ok(AdamW::new(vars.all_vars(), params)),
            x: ok(Tensor::from_vec(
                batch::mlp_inputs(batch),
                (batch, 784),
                &Device::Cpu,
            )),
            y: labels(batch),
            last: None,
        }
    }
}

impl TrainStep for Mlp {
    fn step(&mut self) {
        let mut h = self.x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = ok(layer.forward(&h));
            if i + 1 < self.layers.len() {
                h = ok(h.relu());
            }
        }
        let loss = ok(candle_nn::loss::cross_entropy(&h, &self.y));
        ok(self.optimizer.backward_step(&loss));
        self.last = Some(loss);
    }

    fn last_loss(&mut self) -> f32 {
        loss_value(&self.last)
    }

    fn describe(&self) -> String {
        DESCRIPTION.into()
    }
}

/// Momentum SGD as optax.sgd(lr, momentum) and torch.optim.SGD define it: t = g + μ·t,
/// w = w − lr·t.
struct MomentumSgd {
    vars: Vec<Var>,
    trace: Vec<Option<Tensor>>,
    lr: f64,
    momentum: f64,
}

impl MomentumSgd {
    fn new(vars: Vec<Var>, lr: f64, momentum: f64) -> Self {
        let trace = vec![None; vars.len()];
        Self {
            vars,
            trace,
            lr,
            momentum,
        }
    }

    fn backward_step(&mut self, loss: &Tensor) {
        let grads = ok(loss.backward());
        for (var, trace) in self.vars.iter().zip(&mut self.trace) {
            // BatchNorm's running statistics are variables without a gradient.
            let Some(g) = grads.get(var) else { continue };
            let t = match trace.take() {
                Some(t) => ok((t * self.momentum).and_then(|t| t + g)),
                None => g.clone(),
            };
            ok(var.set(&ok(var.as_tensor() - ok(&t * self.lr))));
            *trace = Some(t);
        }
    }
}

fn conv(c_in: usize, c_out: usize, kernel: usize, stride: usize, vb: VarBuilder) -> Conv2d {
    let config = Conv2dConfig {
        padding: kernel / 2,
        stride,
        ..Default::default()
    };
    // He-normal weights (fan-in, ReLU gain), no bias.
    ok(candle_nn::conv2d_no_bias(c_in, c_out, kernel, config, vb))
}

fn batch_norm(channels: usize, vb: VarBuilder) -> BatchNorm {
    // eps 1e-5, momentum 0.1, affine: the other frameworks' defaults.
    ok(candle_nn::batch_norm(
        channels,
        BatchNormConfig::default(),
        vb,
    ))
}

struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
}

impl Block {
    fn new(c_in: usize, c_out: usize, stride: usize, vb: VarBuilder) -> Self {
        let projection = stride != 1 || c_in != c_out;
        Self {
            conv1: conv(c_in, c_out, 3, stride, vb.pp("conv1")),
            bn1: batch_norm(c_out, vb.pp("bn1")),
            conv2: conv(c_out, c_out, 3, 1, vb.pp("conv2")),
            bn2: batch_norm(c_out, vb.pp("bn2")),
            shortcut: projection.then(|| {
                (
                    conv(c_in, c_out, 1, stride, vb.pp("short")),
                    batch_norm(c_out, vb.pp("short_bn")),
                )
            }),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = ok(self.bn1.forward_train(&ok(self.conv1.forward(x))));
        let y = ok(self
            .bn2
            .forward_train(&ok(self.conv2.forward(&ok(y.relu())))));
        let shortcut = match &self.shortcut {
            Some((conv, bn)) => ok(bn.forward_train(&ok(conv.forward(x)))),
            None => x.clone(),
        };
        ok((y + shortcut).and_then(|s| s.relu()))
    }
}

pub struct Resnet20 {
    stem: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<Block>,
    fc: Linear,
    optimizer: MomentumSgd,
    x: Tensor,
    y: Tensor,
    last: Option<Tensor>,
}

impl Resnet20 {
    pub fn new(batch: usize) -> Self {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
        let blocks = batch::resnet20_blocks()
            .into_iter()
            .enumerate()
            .map(|(i, (c_in, c_out, stride))| {
                Block::new(c_in, c_out, stride, vb.pp(format!("b{i}")))
            })
            .collect();
        let stem = conv(3, 16, 3, 1, vb.pp("stem"));
        let stem_bn = batch_norm(16, vb.pp("stem_bn"));
        let fc = ok(candle_nn::linear(64, 10, vb.pp("fc")));
        let x = ok(Tensor::from_vec(
            batch::resnet_inputs(batch),
            (batch, 3, 32, 32),
            &Device::Cpu,
        ));
        Self {
            stem,
            stem_bn,
            blocks,
            fc,
            optimizer: MomentumSgd::new(vars.all_vars(), 0.1, 0.9),
            x,
            y: labels(batch),
            last: None,
        }
    }
}

impl TrainStep for Resnet20 {
    fn step(&mut self) {
        let mut h = ok(self.stem_bn.forward_train(&ok(self.stem.forward(&self.x))));
        h = ok(h.relu());
        for block in &self.blocks {
            h = block.forward(&h);
        }
        // Global average pooling.
        let pooled = ok(h.mean((2, 3)));
        let logits = ok(self.fc.forward(&pooled));
        let loss = ok(candle_nn::loss::cross_entropy(&logits, &self.y));
        self.optimizer.backward_step(&loss);
        self.last = Some(loss);
    }

    fn last_loss(&mut self) -> f32 {
        loss_value(&self.last)
    }

    fn describe(&self) -> String {
        DESCRIPTION.into()
    }
}
