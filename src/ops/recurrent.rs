//! Recurrent-layer geometry and cell kinds, shared by the GPU launchers
//! (`gpu::kernels::recurrent`) and the CPU twins (`cpu::recurrent`).
//!
//! Layout follows PyTorch's `nn.RNN` / `nn.LSTM` / `nn.GRU` with `batch_first=True`:
//! sequences are `[B, T, features]`, `weight_ih_l{k}` is `[G·H, I]`, `weight_hh_l{k}` is
//! `[G·H, H]`, both biases `[G·H]`, with G gates stacked in PyTorch's order (LSTM i, f, g, o;
//! GRU r, z, n). Checkpoints and golden values therefore line up with PyTorch's.

use crate::error::{Error, Result};

/// The cell of a recurrent layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Elman RNN, h = tanh(W_ih x + b_ih + W_hh h' + b_hh).
    RnnTanh,
    /// Elman RNN with ReLU instead of tanh.
    RnnRelu,
    /// LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).
    Lstm,
    /// GRU (Cho et al. 2014) as PyTorch writes it: n = tanh(W_in x + b_in + r·(W_hn h' + b_hn)).
    Gru,
}

impl CellKind {
    /// Gates stacked in the weight rows.
    pub fn gates(self) -> usize {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CellKind::RnnTanh => "rnn_tanh",
            CellKind::RnnRelu => "rnn_relu",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace('-', "_").as_str() {
            "rnn" | "rnn_tanh" | "tanh" => Some(CellKind::RnnTanh),
            "rnn_relu" | "relu" => Some(CellKind::RnnRelu),
            "lstm" => Some(CellKind::Lstm),
            "gru" => Some(CellKind::Gru),
            _ => None,
        }
    }

    /// The code of the WGSL `RecShape::cell`.
    pub fn code(self) -> u32 {
        match self {
            CellKind::RnnTanh => 0,
            CellKind::RnnRelu => 1,
            CellKind::Lstm => 2,
            CellKind::Gru => 3,
        }
    }

    /// Elements per (batch, step) of the auxiliary saved tensor: the LSTM's cell state c,
    /// the GRU's W_hn h' + b_hn; the Elman cell saves nothing besides h.
    pub fn aux_width(self, hidden: usize) -> usize {
        match self {
            CellKind::Lstm | CellKind::Gru => hidden,
            CellKind::RnnTanh | CellKind::RnnRelu => 0,
        }
    }
}

/// One recurrent layer over a batch: input `[batch, steps, input]`, output
/// `[batch, steps, hidden]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecurrentShape {
    pub cell: CellKind,
    pub batch: usize,
    pub steps: usize,
    pub input: usize,
    pub hidden: usize,
    /// Truncated backpropagation through time: the gradient does not flow from step s back
    /// to step s − 1 when s is a multiple of `truncate` (the hidden state is detached every
    /// `truncate` steps, as chunked TBPTT does). 0: the whole sequence.
    pub truncate: usize,
}

impl RecurrentShape {
    /// G·H, the rows of both weight matrices.
    pub fn gate_width(&self) -> usize {
        self.cell.gates() * self.hidden
    }

    /// Rows of every sequence tensor: B·T.
    pub fn rows(&self) -> usize {
        self.batch * self.steps
    }

    /// Whether the gradient flows from step `s` back into step `s − 1`.
    pub fn flows_back(&self, s: usize) -> bool {
        s > 0 && (self.truncate == 0 || !s.is_multiple_of(self.truncate))
    }

    /// Refuses empty sizes and element counts past u32 indexing, naming the layer.
    pub fn validate(&self, layer: &str) -> Result<()> {
        let bad = |why: String| Error::config(format!("recurrent layer `{layer}`: {why}"));
        if self.steps == 0 {
            return Err(bad("the sequence length is 0; it must be at least 1".into()));
        }
        if self.hidden == 0 {
            return Err(bad("the hidden size is 0; it must be at least 1".into()));
        }
        if self.input == 0 || self.batch == 0 {
            return Err(bad(format!(
                "input size ({}) and batch ({}) must be at least 1",
                self.input, self.batch
            )));
        }
        let widest = self.gate_width().max(self.input);
        match self.rows().checked_mul(widest) {
            Some(n) if n <= i32::MAX as usize => Ok(()),
            _ => Err(bad(format!(
                "batch {} × length {} × width {widest} exceeds the 2^31 − 1 elements a kernel \
                 can index; shorten the sequence or reduce the batch",
                self.batch, self.steps
            ))),
        }
    }
}
