//! A config file: TOML parse, validation, building the model it describes and compiling
//! its plan (sizes only; nothing is allocated for the tensors).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use gradscope::config::TrainConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = TrainConfig::from_toml(text, Path::new("fuzz.toml")) else {
        return;
    };
    if config.validate().is_ok() {
        if let Ok(model) = config.model(784, 10) {
            let _ = model.param_count();
            if let Ok(optimizer) = config.optimizer() {
                let _ = gradscope::plan::compile(&model, config.batch_size, optimizer);
            }
        }
        let _ = config.to_toml();
    }
});
