//! CPU twin of shaders/loss.wgsl. (Stub: the kernel-family owner fills this in.)

use crate::cpu::Element;

/// Fused, numerically stable softmax cross-entropy over logits (rows, classes) with integer
/// labels (rows). Writes row_loss[i] = −log softmax(logits_i)[label_i] / rows (so the mean
/// loss is Σ row_loss), dlogits = (softmax − onehot) / rows, and row_correct[i] = 1 when
/// the arg-max of row i equals its label (first maximum wins), else 0.
pub fn softmax_xent_forward_backward<T: Element>(
    logits: &[T],
    labels: &[u32],
    dlogits: &mut [T],
    row_loss: &mut [T],
    row_correct: &mut [u32],
    rows: usize,
    classes: usize,
) {
    let _ = (
        logits,
        labels,
        dlogits,
        row_loss,
        row_correct,
        rows,
        classes,
    );
    unimplemented!()
}

/// Mean squared error over pred (rows, cols) against targets (rows, cols), as PyTorch's
/// MSELoss(reduction='mean'): row_loss[i] = Σ_j (pred − target)² / (rows·cols),
/// dpred = 2·(pred − target) / (rows·cols), row_correct[i] = arg-max(pred_i) == labels[i].
#[allow(clippy::too_many_arguments)]
pub fn mse_forward_backward<T: Element>(
    pred: &[T],
    targets: &[T],
    labels: &[u32],
    dpred: &mut [T],
    row_loss: &mut [T],
    row_correct: &mut [u32],
    rows: usize,
    cols: usize,
) {
    let _ = (
        pred,
        targets,
        labels,
        dpred,
        row_loss,
        row_correct,
        rows,
        cols,
    );
    unimplemented!()
}

/// (Σ row_loss, Σ row_correct): the batch's mean loss and its number of correct predictions.
pub fn loss_reduce<T: Element>(row_loss: &[T], row_correct: &[u32]) -> (T, u32) {
    let _ = (row_loss, row_correct);
    unimplemented!()
}
