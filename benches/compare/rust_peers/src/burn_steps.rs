//! The training steps in Burn 0.22 on its Flex CPU backend (pure Rust, SIMD kernels, `gemm`
//! for matrix products, rayon) or, in a build with the `gpu` feature, on its Vulkan backend
//! (CubeCL kernels through wgpu, with fusion and autotune), with autodiff, Burn's own layers
//! and optimizers.

use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::batch;
use crate::{Target, TrainStep};

fn describe(target: Target) -> String {
    match target {
        Target::Cpu => "burn 0.22.1 (Flex backend, autodiff)".into(),
        Target::Gpu => {
            "burn 0.22.1 (Vulkan backend: CubeCL on wgpu, fusion, autotune, autodiff)".into()
        }
    }
}

fn he_normal() -> Initializer {
    Initializer::KaimingNormal {
        gain: 2f64.sqrt(),
        fan_out_only: false,
    }
}

fn device(target: Target) -> Device {
    match target {
        Target::Cpu => Device::flex().autodiff(),
        #[cfg(feature = "gpu")]
        Target::Gpu => Device::vulkan(burn::tensor::DeviceKind::default()).autodiff(),
        #[cfg(not(feature = "gpu"))]
        Target::Gpu => unreachable!("main refuses --device gpu without the gpu feature"),
    }
}

fn labels(batch: usize, device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = batch::labels(batch).into_iter().map(i64::from).collect();
    Tensor::from_data(TensorData::new(labels, [batch]), device)
}

#[derive(Module, Debug)]
struct MlpModel {
    layers: Vec<Linear>,
}

impl MlpModel {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i + 1 < self.layers.len() {
                h = relu(h);
            }
        }
        h
    }
}

/// One network's training step on one fixed batch: its model (taken out and put back by the
/// optimizer every step), optimizer, loss, batch, learning rate and forward pass.
struct Trainer<M: Module, const D: usize> {
    target: Target,
    model: Option<M>,
    optimizer: ModuleOptimizer,
    loss: CrossEntropyLoss,
    x: Tensor<D>,
    y: Tensor<1, Int>,
    lr: f64,
    logits: fn(&M, Tensor<D>) -> Tensor<2>,
    last: Option<Tensor<1>>,
}

impl<M: Module, const D: usize> TrainStep for Trainer<M, D> {
    fn step(&mut self) {
        let model = self
            .model
            .take()
            .expect("the model is put back after every step");
        let logits = (self.logits)(&model, self.x.clone());
        let loss = self.loss.forward(logits, self.y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optimizer.step(self.lr, model, grads));
        self.last = Some(loss);
    }

    fn last_loss(&mut self) -> f32 {
        self.last
            .clone()
            .map_or(f32::NAN, |l| l.into_scalar::<f32>())
    }

    fn describe(&self) -> String {
        describe(self.target)
    }
}

/// The MLP 784-256-256-10 with Adam (lr 1e-4).
pub fn mlp(batch: usize, target: Target) -> Box<dyn TrainStep> {
    let device = device(target);
    let sizes = [784, 256, 256, 10];
    let layers = sizes
        .windows(2)
        .map(|w| {
            LinearConfig::new(w[0], w[1])
                .with_initializer(he_normal())
                .init(&device)
        })
        .collect();
    Box::new(Trainer {
        target,
        model: Some(MlpModel { layers }),
        // optax's and PyTorch's epsilon (Burn's default is 1e-5).
        optimizer: AdamConfig::new().with_epsilon(1e-8).init(),
        loss: CrossEntropyLossConfig::new().init(&device),
        x: Tensor::from_data(
            TensorData::new(batch::mlp_inputs(batch), [batch, 784]),
            &device,
        ),
        y: labels(batch, &device),
        lr: 1e-4,
        logits: MlpModel::forward,
        last: None,
    })
}

fn conv(c_in: usize, c_out: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(he_normal())
        .init(device)
}

fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

#[derive(Module, Debug)]
struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    short_conv: Option<Conv2d>,
    short_bn: Option<BatchNorm>,
}

impl Block {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        let projection = stride != 1 || c_in != c_out;
        Self {
            conv1: conv(c_in, c_out, 3, stride, device),
            bn1: batch_norm(c_out, device),
            conv2: conv(c_out, c_out, 3, 1, device),
            bn2: batch_norm(c_out, device),
            short_conv: projection.then(|| conv(c_in, c_out, 1, stride, device)),
            short_bn: projection.then(|| batch_norm(c_out, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let y = self.bn2.forward(self.conv2.forward(y));
        let shortcut = match (&self.short_conv, &self.short_bn) {
            (Some(conv), Some(bn)) => bn.forward(conv.forward(x)),
            _ => x,
        };
        relu(y + shortcut)
    }
}

#[derive(Module, Debug)]
struct ResnetModel {
    stem: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<Block>,
    fc: Linear,
}

impl ResnetModel {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = relu(self.stem_bn.forward(self.stem.forward(x)));
        for block in &self.blocks {
            h = block.forward(h);
        }
        let [n, c, _, _] = h.dims();
        // Global average pooling.
        self.fc.forward(h.mean_dim(3).mean_dim(2).reshape([n, c]))
    }
}

/// resnet-20 with momentum SGD (lr 0.1, momentum 0.9).
pub fn resnet20(batch: usize, target: Target) -> Box<dyn TrainStep> {
    let device = device(target);
    let blocks = batch::resnet20_blocks()
        .into_iter()
        .map(|(c_in, c_out, stride)| Block::new(c_in, c_out, stride, &device))
        .collect();
    let model = ResnetModel {
        stem: conv(3, 16, 3, 1, &device),
        stem_bn: batch_norm(16, &device),
        blocks,
        fc: LinearConfig::new(64, 10)
            .with_initializer(he_normal())
            .init(&device),
    };
    // optax.sgd(0.1, momentum=0.9): no dampening.
    let momentum = MomentumConfig::new().with_momentum(0.9).with_dampening(0.0);
    Box::new(Trainer {
        target,
        model: Some(model),
        optimizer: SgdConfig::new().with_momentum(Some(momentum)).init(),
        loss: CrossEntropyLossConfig::new().init(&device),
        x: Tensor::from_data(
            TensorData::new(batch::resnet_inputs(batch), [batch, 3, 32, 32]),
            &device,
        ),
        y: labels(batch, &device),
        lr: 0.1,
        logits: ResnetModel::forward,
        last: None,
    })
}
