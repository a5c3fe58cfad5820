//! Backpropagation through time against central finite differences in f64 on the CPU
//! executor: every parameter element (embedding, W_ih, W_hh, both biases of every layer,
//! the read-out) of small stacked networks of every cell, through several time steps, with
//! a read-out at the last step and at every step, with and without truncation. With
//! truncated BPTT the analytic gradient is *not* the derivative of the loss, so there the
//! check is that it differs (and that the untruncated one does not).

mod common;

use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::Executor;
use gradscope::model::LossKind;
use gradscope::model::recurrent::{Readout, SeqInput, SequenceModel};
use gradscope::ops::{CellKind, OptimizerKind, OptimizerParams};
use gradscope::plan::compile;
use gradscope::train::initialize;

const CELLS: [CellKind; 4] = [
    CellKind::RnnTanh,
    CellKind::RnnRelu,
    CellKind::Lstm,
    CellKind::Gru,
];

/// (analytic, numeric) gradients of every parameter, by name.
fn gradients(m: &SequenceModel, seed: u64) -> Vec<(String, Vec<f64>, Vec<f64>)> {
    let batch = 2;
    let model = m.build().unwrap();
    let plan = compile(&model, batch, OptimizerParams::new(OptimizerKind::Sgd)).unwrap();
    let mut exec = CpuExecutor::<f64>::new(plan.clone());
    initialize(&mut exec, seed).unwrap();
    // Larger weights than the default init, so that the cells leave their linear regime
    // and the ReLU cell has dead and live units.
    for (i, slot) in plan.params.iter().enumerate() {
        exec.set_tensor(
            slot.value,
            &common::random_vec_f64(seed * 31 + i as u64, slot.numel, -0.8, 0.8),
        )
        .unwrap();
    }
    let features = plan.input_features;
    let inputs = match m.input {
        SeqInput::Tokens { vocab, .. } => {
            common::random_labels(seed + 5, batch * features, vocab as u32)
                .iter()
                .map(|&v| v as f32)
                .collect()
        }
        SeqInput::Features(_) => common::random_vec(seed + 5, batch * features, -1.5, 1.5),
    };
    let labels = common::random_labels(seed + 6, batch * plan.label_rows, m.outputs as u32);
    exec.load_batch(&inputs, &labels).unwrap();
    exec.compute_gradients().unwrap();
    // eps 1e-6 in f64: truncation error ~eps² and cancellation ~1e-16/eps both near 1e-10.
    let eps = 1e-6;
    let mut out = Vec::new();
    for slot in &plan.params {
        let analytic = exec.tensor(slot.grad).to_vec();
        let base = exec.tensor(slot.value).to_vec();
        let mut numeric = vec![0.0; base.len()];
        for i in 0..base.len() {
            let mut p = base.clone();
            p[i] = base[i] + eps;
            exec.set_tensor(slot.value, &p).unwrap();
            let up = exec.compute_gradients().unwrap();
            p[i] = base[i] - eps;
            exec.set_tensor(slot.value, &p).unwrap();
            let down = exec.compute_gradients().unwrap();
            numeric[i] = (up - down) / (2.0 * eps);
        }
        exec.set_tensor(slot.value, &base).unwrap();
        exec.compute_gradients().unwrap();
        out.push((slot.name.clone(), analytic, numeric));
    }
    out
}

fn model(cell: CellKind, input: SeqInput, readout: Readout, truncate: usize) -> SequenceModel {
    SequenceModel {
        cell,
        input,
        steps: 5,
        hidden: 3,
        layers: 2,
        outputs: 3,
        readout,
        loss: LossKind::Xent,
        truncate,
        forget_bias: None,
    }
}

fn check(m: &SequenceModel, seed: u64) {
    for (name, analytic, numeric) in gradients(m, seed) {
        common::assert_close_f64(
            &format!(
                "{} {:?} {:?} seed {seed}: {name}",
                m.cell.name(),
                m.input,
                m.readout
            ),
            &analytic,
            &numeric,
            1e-7,
            1e-5,
        );
    }
}

#[test]
fn every_cell_last_step_readout() {
    for (i, cell) in CELLS.into_iter().enumerate() {
        check(
            &model(cell, SeqInput::Features(2), Readout::Last, 0),
            10 + i as u64,
        );
    }
}

#[test]
fn every_cell_every_step_readout_mse() {
    for (i, cell) in CELLS.into_iter().enumerate() {
        let mut m = model(cell, SeqInput::Features(3), Readout::EveryStep, 0);
        m.loss = LossKind::Mse;
        check(&m, 20 + i as u64);
    }
}

#[test]
fn every_cell_with_an_embedding() {
    for (i, cell) in CELLS.into_iter().enumerate() {
        check(
            &model(
                cell,
                SeqInput::Tokens { vocab: 4, dim: 3 },
                Readout::EveryStep,
                0,
            ),
            30 + i as u64,
        );
    }
}

#[test]
fn truncation_cuts_the_gradient_and_only_there() {
    for (i, cell) in CELLS.into_iter().enumerate() {
        let seed = 40 + i as u64;
        // A cut every 2 steps of 5: the recurrent weights' analytic gradient leaves out
        // paths the loss does depend on, so it differs from the numeric derivative ...
        let cut = gradients(&model(cell, SeqInput::Features(2), Readout::Last, 2), seed);
        let (_, a, n) = cut
            .iter()
            .find(|(name, _, _)| name == "rnn.weight_hh_l0")
            .unwrap();
        let diff = a
            .iter()
            .zip(n)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(
            diff > 1e-6,
            "{}: truncated gradient equals the full one",
            cell.name()
        );
        // ... while a cut longer than the sequence changes nothing.
        check(&model(cell, SeqInput::Features(2), Readout::Last, 5), seed);
    }
}
