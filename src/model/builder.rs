//! Building convolutional and residual networks node by node. Each method checks its
//! geometry and names its parameters as PyTorch's state dict would
//! (`stage2.block1.conv1.weight`, `stage2.block1.bn1.running_mean`).

use super::spec::{LossKind, ModelSpec, NodeId, NodeOp};
use crate::error::{Error, Result};
use crate::init::{Init, activation_gain};
use crate::ops::{Activation, Conv2dShape, Pool2dShape};

pub struct Builder {
    model: ModelSpec,
    init: Init,
}

impl Builder {
    /// A model whose input has the per-sample `shape` ([C, H, W] or [features]).
    pub fn new(name: &str, shape: &[usize], init: Init) -> (Self, NodeId) {
        let mut model = ModelSpec {
            name: name.to_string(),
            nodes: Vec::new(),
            params: Vec::new(),
        };
        let input = model.push_shaped("input", NodeOp::Input, vec![], shape.to_vec());
        (Builder { model, init }, input)
    }

    pub fn shape(&self, x: NodeId) -> &[usize] {
        &self.model.nodes[x].shape
    }

    fn chw(&self, layer: &str, x: NodeId) -> Result<[usize; 3]> {
        match *self.shape(x) {
            [c, h, w] => Ok([c, h, w]),
            ref s => Err(Error::config(format!(
                "layer `{layer}` needs a [C, H, W] input, got {s:?}"
            ))),
        }
    }

    /// A convolution with a square kernel; `gain` is that of the activation that follows.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        x: NodeId,
        out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
        bias: bool,
        gain: f64,
    ) -> Result<NodeId> {
        let [c, h, w] = self.chw(name, x)?;
        let shape = Conv2dShape {
            n: 1,
            c_in: c,
            h,
            w,
            c_out: out,
            kh: k,
            kw: k,
            stride: [stride; 2],
            pad: [pad; 2],
            dilation: [1, 1],
            groups,
        };
        shape.validate(name)?;
        let [oh, ow] = shape.out_hw();
        let weight = self.model.param(
            format!("{name}.weight"),
            vec![out, c / groups, k, k],
            self.init,
            gain,
        );
        let bias = bias.then(|| {
            self.model
                .param(format!("{name}.bias"), vec![out], Init::Zeros, 1.0)
        });
        let op = NodeOp::Conv2d {
            weight,
            bias,
            kernel: [k, k],
            stride: [stride; 2],
            pad: [pad; 2],
            dilation: [1, 1],
            groups,
        };
        Ok(self.model.push_shaped(name, op, vec![x], vec![out, oh, ow]))
    }

    /// BatchNorm over channels (images) or features (dense), PyTorch's eps and momentum.
    pub fn batchnorm(&mut self, name: &str, x: NodeId) -> NodeId {
        let shape = self.shape(x).to_vec();
        let c = shape[0];
        let gamma = self
            .model
            .param(format!("{name}.weight"), vec![c], Init::Ones, 1.0);
        let beta = self
            .model
            .param(format!("{name}.bias"), vec![c], Init::Zeros, 1.0);
        self.model.push_shaped(
            name,
            NodeOp::BatchNorm {
                gamma,
                beta,
                eps: 1e-5,
                momentum: 0.1,
            },
            vec![x],
            shape,
        )
    }

    pub fn layernorm(&mut self, name: &str, x: NodeId) -> NodeId {
        let shape = self.shape(x).to_vec();
        let d: usize = shape.iter().product();
        let gamma = self
            .model
            .param(format!("{name}.weight"), vec![d], Init::Ones, 1.0);
        let beta = self
            .model
            .param(format!("{name}.bias"), vec![d], Init::Zeros, 1.0);
        self.model.push_shaped(
            name,
            NodeOp::LayerNorm {
                gamma,
                beta,
                eps: 1e-5,
            },
            vec![x],
            shape,
        )
    }

    pub fn act(&mut self, name: &str, x: NodeId, act: Activation) -> NodeId {
        let shape = self.shape(x).to_vec();
        self.model
            .push_shaped(name, NodeOp::Activation(act), vec![x], shape)
    }

    pub fn maxpool(
        &mut self,
        name: &str,
        x: NodeId,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<NodeId> {
        self.pool(name, x, k, stride, pad, true)
    }

    pub fn avgpool(
        &mut self,
        name: &str,
        x: NodeId,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<NodeId> {
        self.pool(name, x, k, stride, pad, false)
    }

    fn pool(
        &mut self,
        name: &str,
        x: NodeId,
        k: usize,
        stride: usize,
        pad: usize,
        max: bool,
    ) -> Result<NodeId> {
        let [c, h, w] = self.chw(name, x)?;
        let shape = Pool2dShape {
            n: 1,
            c,
            h,
            w,
            kh: k,
            kw: k,
            stride: [stride; 2],
            pad: [pad; 2],
        };
        shape.validate(name)?;
        let (oh, ow) = shape.out_hw();
        let (kernel, stride, pad) = ([k, k], [stride; 2], [pad; 2]);
        let op = if max {
            NodeOp::MaxPool2d {
                kernel,
                stride,
                pad,
            }
        } else {
            NodeOp::AvgPool2d {
                kernel,
                stride,
                pad,
            }
        };
        Ok(self.model.push_shaped(name, op, vec![x], vec![c, oh, ow]))
    }

    pub fn global_avg_pool(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        let [c, _, _] = self.chw(name, x)?;
        Ok(self
            .model
            .push_shaped(name, NodeOp::GlobalAvgPool, vec![x], vec![c]))
    }

    pub fn flatten(&mut self, name: &str, x: NodeId) -> NodeId {
        let n = self.model.nodes[x].features;
        self.model
            .push_shaped(name, NodeOp::Flatten, vec![x], vec![n])
    }

    /// A dense layer over the flat features of `x`; `gain` is that of the activation after.
    pub fn linear(&mut self, name: &str, x: NodeId, out: usize, gain: f64) -> NodeId {
        let fin = self.model.nodes[x].features;
        let weight = self
            .model
            .param(format!("{name}.weight"), vec![out, fin], self.init, gain);
        let bias = Some(
            self.model
                .param(format!("{name}.bias"), vec![out], Init::Zeros, 1.0),
        );
        self.model
            .push_shaped(name, NodeOp::Linear { weight, bias }, vec![x], vec![out])
    }

    pub fn dropout(&mut self, name: &str, x: NodeId, p: f32) -> Result<NodeId> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(format!(
                "layer `{name}`: dropout probability {p} is not in [0, 1)"
            )));
        }
        let shape = self.shape(x).to_vec();
        Ok(self
            .model
            .push_shaped(name, NodeOp::Dropout { p }, vec![x], shape))
    }

    pub fn add(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        if self.shape(a) != self.shape(b) {
            return Err(Error::config(format!(
                "layer `{name}` adds tensors of shapes {:?} and {:?}",
                self.shape(a),
                self.shape(b)
            )));
        }
        let shape = self.shape(a).to_vec();
        Ok(self.model.push_shaped(name, NodeOp::Add, vec![a, b], shape))
    }

    /// Ends the model with the loss over `logits`.
    pub fn finish(mut self, logits: NodeId, loss: LossKind) -> Result<ModelSpec> {
        self.model
            .push_shaped("loss", NodeOp::Loss(loss), vec![logits], vec![1]);
        self.model.validate()?;
        Ok(self.model)
    }
}

/// The gain to initialize a layer followed by `act` with.
pub fn gain(act: Activation) -> f64 {
    activation_gain(&act)
}
