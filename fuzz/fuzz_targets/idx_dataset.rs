//! A whole IDX data set from an image and a label file: the input is split at a position
//! given by its first two bytes, so counts, labels and classes are checked against each
//! other too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cut = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (images, labels) = data[2..].split_at(cut);
    let _ = gradscope::data::dataset::Dataset::from_idx_bytes(
        images,
        labels,
        Path::new("fuzz-images"),
        Path::new("fuzz-labels"),
        10,
    );
});
