//! The context opens on whatever adapter exists, and wgpu errors become ours, not panics.

mod common;

#[test]
fn context_reports_its_adapter() {
    let Some(ctx) = common::gpu() else { return };
    assert!(!ctx.adapter.name.is_empty());
    assert!(ctx.limits.max_storage_buffer_binding_size >= 128 << 20);
    eprintln!("adapter: {}", ctx.adapter.describe());
}

#[test]
fn buffer_round_trip() {
    let Some(ctx) = common::gpu() else { return };
    let data: Vec<f32> = (0..1001).map(|i| i as f32 * 0.5).collect();
    let buf = ctx.upload("round_trip", &data).unwrap();
    let back: Vec<f32> = ctx.read(&buf, data.len()).unwrap();
    assert_eq!(back, data);
}

#[test]
fn oversized_buffer_is_refused_before_wgpu() {
    let Some(ctx) = common::gpu() else { return };
    let too_big = ctx.limits.max_storage_buffer_binding_size + 4;
    let err = ctx
        .storage_buffer("activations.layer9", too_big)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("activations.layer9") && msg.contains("reduce the batch size"),
        "{msg}"
    );
}
