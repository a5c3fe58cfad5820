//! The TensorBoard event file of a short CPU run parses back with our own reader (framing,
//! both CRCs of every record, the Event protobuf) and holds the run's scalars and histogram
//! counts. tests/tensorboard/check_events.py does the same with TensorBoard's reader.

use std::collections::HashMap;

use gradscope::config::{DeviceChoice, TrainConfig};
use gradscope::tensorboard::proto::decode_event;
use gradscope::tensorboard::{Value, read_records};
use gradscope::train::{Silent, train};

#[test]
fn event_file_matches_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        depth: 2,
        width: 16,
        max_steps: 8,
        epochs: 1,
        device: DeviceChoice::Cpu,
        run_dir: Some(tmp.path().to_path_buf()),
        ..TrainConfig::default()
    };
    train(&config, "tb-test", &mut Silent).unwrap();

    let dir = tmp.path().join("tensorboard");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one event file in {}", dir.display());
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let records = read_records(&bytes).unwrap();
    let events: Vec<_> = records.iter().map(|r| decode_event(r).unwrap()).collect();
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));

    // (tag, step) → value, from the event file.
    let mut scalars = HashMap::new();
    let mut hists = HashMap::new();
    for e in &events[1..] {
        for v in &e.values {
            match v {
                Value::Scalar(t, x) => scalars.insert((t.clone(), e.step as u64), *x),
                Value::Histogram(t, h) => hists
                    .insert((t.clone(), e.step as u64), h.bucket.clone())
                    .map(|_| 0.0),
            };
        }
    }

    let metrics = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).unwrap();
    let (mut steps, mut n_hists) = (0, 0);
    for line in metrics.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let step = v["step"].as_u64().unwrap();
        if v["kind"] != "step" {
            continue;
        }
        steps += 1;
        for k in ["loss", "accuracy", "lr", "grad_norm"] {
            let want = v[k].as_f64().unwrap() as f32;
            let got = scalars[&(format!("train/{k}"), step)];
            assert_eq!(got, want, "train/{k} at step {step}");
        }
        for layer in v["layers"].as_array().into_iter().flatten() {
            let name = layer["name"].as_str().unwrap();
            let got = scalars[&(format!("grad_norm/{name}"), step)];
            assert_eq!(got, layer["grad_norm"].as_f64().unwrap() as f32);
            for t in layer["tensors"].as_array().unwrap() {
                if t[0] != "weight_grad" {
                    continue;
                }
                let want: Vec<f64> = t[1]["hist"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_f64().unwrap())
                    .collect();
                let got = &hists[&(format!("log2_abs_weight_grad/{name}"), step)];
                assert_eq!(got, &want, "histogram of {name} at step {step}");
                n_hists += 1;
            }
        }
    }
    assert_eq!(steps, 8);
    assert!(n_hists >= 8 * 3, "{n_hists} histograms compared");
    assert!(scalars.contains_key(&("val/loss".to_string(), 8)));
}

#[test]
fn corrupted_record_is_refused() {
    let mut buf = Vec::new();
    gradscope::tensorboard::write_record(&mut buf, b"payload").unwrap();
    let last = buf.len() - 1;
    buf[last] ^= 0x40;
    let err = read_records(&buf).unwrap_err();
    assert!(err.contains("record 0") && err.contains("CRC"), "{err}");
}
