//! The checkpoint load path: safetensors decode, then the progress metadata, then restoring
//! into the executor of a tiny model (every name, shape and dtype checked against its plan).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use gradscope::checkpoint::{self, format};
use gradscope::config::TrainConfig;
use gradscope::cpu::executor::CpuExecutor;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    let Ok(file) = format::decode(path, data) else {
        return;
    };
    let _ = checkpoint::state::progress_of(&file);
    // The model of the committed seeds (fuzz/corpus/checkpoint_decode): 4-2-3, batch 2.
    let config = TrainConfig {
        hidden: vec![2],
        optimizer: "adam".into(),
        ..TrainConfig::default()
    };
    let model = config.model(4, 3).unwrap();
    let plan = gradscope::plan::compile(&model, 2, config.optimizer().unwrap()).unwrap();
    let mut exec = CpuExecutor::<f32>::new(plan);
    let _ = checkpoint::restore(&mut exec, &file);
});
