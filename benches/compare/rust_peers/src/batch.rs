//! The fixed batches of gradscope's benches (`benches/train_step.rs`, `gradscope bench --op
//! step`) and of the JAX and PyTorch comparison scripts, value for value.

/// MLP inputs: ((i·7919) mod 255)/255 − 0.5, row-major [batch, 784].
pub fn mlp_inputs(batch: usize) -> Vec<f32> {
    (0..batch * 784)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect()
}

/// resnet-20 inputs: ((i·7919) mod 255)/255, NCHW [batch, 3, 32, 32].
pub fn resnet_inputs(batch: usize) -> Vec<f32> {
    (0..batch * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0)
        .collect()
}

/// Labels i mod 10.
pub fn labels(batch: usize) -> Vec<u32> {
    (0..batch).map(|i| (i % 10) as u32).collect()
}

/// resnet-20's blocks: (input channels, output channels, stride), three stages of three.
pub fn resnet20_blocks() -> Vec<(usize, usize, usize)> {
    let mut blocks = Vec::new();
    let mut c_in = 16;
    for (stage, c_out) in [16, 32, 64].into_iter().enumerate() {
        for b in 0..3 {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            blocks.push((c_in, c_out, stride));
            c_in = c_out;
        }
    }
    blocks
}
