//! IDX1 label parsing (after gunzip, if the bytes are gzip).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz-labels-idx1-ubyte");
    if let Ok(plain) = gradscope::data::idx::maybe_gunzip(data, path) {
        let _ = gradscope::data::idx::parse_labels(&plain, path);
    }
});
