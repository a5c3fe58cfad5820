//! IDX3 image parsing (after gunzip, if the bytes are gzip): Ok or a typed error, no panic,
//! no allocation beyond the (bounded) input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz-images-idx3-ubyte");
    if let Ok(plain) = gradscope::data::idx::maybe_gunzip(data, path) {
        let _ = gradscope::data::idx::parse_images(&plain, path);
    }
});
