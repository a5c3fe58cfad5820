//! Reader for the binary version of CIFAR-10 (Krizhevsky 2009,
//! <https://www.cs.toronto.edu/~kriz/cifar.html>, "cifar-10-binary.tar.gz").
//!
//! The archive unpacks to `cifar-10-batches-bin/` with `data_batch_1.bin` …
//! `data_batch_5.bin` (10 000 training images each) and `test_batch.bin`. Each file is a
//! plain sequence of 3073-byte records with no header: one label byte (0..=9), then the
//! 3072 pixel bytes of a 32×32 colour image as three planes, 1024 red, 1024 green, 1024
//! blue, each row-major. That is already channel-major (CHW), the layout our convolutions
//! take, so a record becomes an input row by scaling each byte to [0, 1] in place.
//!
//! Input is treated as hostile, as in [`super::idx`]: a file must be a whole number of
//! records (with no header there is nothing else to check a truncation against), every
//! label must be below 10, and no buffer is sized from anything but the file's real size
//! (bounded by [`MAX_CIFAR_BYTES`]). Every error is [`Error::Data`] naming the file.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::dataset::Dataset;
use crate::{Error, Result};

/// Bytes per record: one label, then 3 × 32 × 32 pixels.
pub const RECORD_BYTES: usize = 1 + PIXELS;
/// Pixel bytes per record.
pub const PIXELS: usize = 3 * 32 * 32;
/// Image shape of a record: channels, height, width.
pub const IMAGE: [usize; 3] = [3, 32, 32];
/// CIFAR-10 class names, in label order (batches.meta.txt).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
/// Largest batch file we read: 1 GiB. A real one is 30 730 000 bytes, so this only stops
/// a wrong path (a disk image, say) from being read into memory.
pub const MAX_CIFAR_BYTES: u64 = 1 << 30;
/// The test split's file name.
pub const TEST_FILE: &str = "test_batch.bin";

/// The two leading bytes of a gzip stream. A CIFAR file starts with a label byte (0..=9),
/// so a file starting with 0x1f is certainly not one.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Loads CIFAR-10 from `path`, which is either a directory holding `data_batch_<N>.bin`
/// (at least one; all of them are concatenated in increasing N) and optionally
/// `test_batch.bin`, or a single `.bin` batch file (returned as the training set, with no
/// test set). Names are `<dir>/train` and `<dir>/test`, or the file's path.
pub fn load_cifar_dir(path: &Path) -> Result<(Dataset, Option<Dataset>)> {
    if path.is_file() {
        let ds = read_batches(&[path.to_path_buf()], path.display().to_string())?;
        return Ok((ds, None));
    }
    if !path.is_dir() {
        return Err(Error::data(
            path,
            "not found: expected a directory of CIFAR-10 batches (data_batch_1.bin … \
             data_batch_5.bin, test_batch.bin) or one .bin batch file",
        ));
    }
    let train_files = train_batches(path)?;
    if train_files.is_empty() {
        let test_note = if path.join(TEST_FILE).is_file() {
            format!(" (found {TEST_FILE}, but a training set is required)")
        } else {
            format!(", nor {TEST_FILE}")
        };
        return Err(Error::data(
            path,
            format!(
                "no CIFAR-10 training batches found: looked for data_batch_<N>.bin \
                 (data_batch_1.bin … data_batch_5.bin){test_note}"
            ),
        ));
    }
    let train = read_batches(&train_files, format!("{}/train", path.display()))?;
    let test_path = path.join(TEST_FILE);
    let test = if test_path.is_file() {
        Some(read_batches(
            &[test_path],
            format!("{}/test", path.display()),
        )?)
    } else {
        None
    };
    Ok((train, test))
}

/// Whether `dir` holds any file of the CIFAR-10 binary layout (`data_batch_<N>.bin` or
/// `test_batch.bin`); used to tell it from an IDX directory.
pub fn is_cifar_dir(dir: &Path) -> bool {
    dir.join(TEST_FILE).is_file() || train_batches(dir).is_ok_and(|f| !f.is_empty())
}

/// The `data_batch_<N>.bin` files in `dir`, sorted by N as a number (so `data_batch_10`
/// comes after `data_batch_9`), ties broken by name.
fn train_batches(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found: Vec<(u64, String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix("data_batch_")
            .and_then(|s| s.strip_suffix(".bin"))
        else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Digits only, so the parse fails only on overflow; such a name is not a batch.
        let Ok(num) = num.parse::<u64>() else {
            continue;
        };
        let path = entry.path();
        if path.is_file() {
            found.push((num, name.to_string(), path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, _, p)| p).collect())
}

/// Reads and concatenates the batch files in order into one data set named `name`.
fn read_batches(files: &[PathBuf], name: String) -> Result<Dataset> {
    let mut inputs: Vec<f32> = Vec::new();
    let mut labels: Vec<u32> = Vec::new();
    for file in files {
        let bytes = read_file(file)?;
        let records = check_records(&bytes, file)?;
        inputs.reserve_exact(records * PIXELS);
        labels.reserve_exact(records);
        for record in bytes.chunks_exact(RECORD_BYTES) {
            labels.push(u32::from(record[0]));
            // 1/255 maps 0..=255 onto [0, 1] exactly at both ends.
            inputs.extend(record[1..].iter().map(|&p| p as f32 / 255.0));
        }
    }
    let n = labels.len();
    Ok(Dataset {
        inputs,
        labels,
        n,
        dim: PIXELS,
        classes: CIFAR10_CLASSES.len(),
        image: Some(IMAGE),
        name,
        targets: Vec::new(),
    })
}

/// Checks that `bytes` is a non-empty whole number of records with labels below 10, and
/// returns the number of records.
fn check_records(bytes: &[u8], path: &Path) -> Result<usize> {
    let len = bytes.len();
    if len == 0 {
        return Err(Error::data(
            path,
            format!("file is empty; a CIFAR-10 batch is a sequence of {RECORD_BYTES}-byte records"),
        ));
    }
    if bytes.starts_with(&GZIP_MAGIC) {
        return Err(Error::data(
            path,
            "file is gzip-compressed; CIFAR-10 ships as cifar-10-binary.tar.gz: unpack it \
             (tar xzf) and give the cifar-10-batches-bin directory",
        ));
    }
    if !len.is_multiple_of(RECORD_BYTES) {
        let whole = len / RECORD_BYTES;
        let over = len % RECORD_BYTES;
        let mut reason = format!(
            "file is {len} bytes, not a multiple of the {RECORD_BYTES}-byte CIFAR-10 record: \
             that is {whole} whole record(s) and {over} byte(s) over, or {} byte(s) short of \
             {} records (truncated download?)",
            RECORD_BYTES - over,
            whole + 1
        );
        // CIFAR-100 records carry a coarse and a fine label: 3074 bytes.
        if len.is_multiple_of(RECORD_BYTES + 1) {
            reason.push_str(
                "; its size is a multiple of 3074, the record of CIFAR-100, which is not supported",
            );
        }
        return Err(Error::data(path, reason));
    }
    let classes = CIFAR10_CLASSES.len();
    if let Some((i, r)) = bytes
        .chunks_exact(RECORD_BYTES)
        .enumerate()
        .find(|(_, r)| r[0] as usize >= classes)
    {
        return Err(Error::data(
            path,
            format!(
                "label {} of record {i} (byte offset {}) is out of range for CIFAR-10's \
                 {classes} classes (labels must be 0..={})",
                r[0],
                i * RECORD_BYTES,
                classes - 1
            ),
        ));
    }
    Ok(len / RECORD_BYTES)
}

/// Reads a whole file, refusing one larger than [`MAX_CIFAR_BYTES`]. The buffer's capacity
/// comes from the file system's size, bounded first.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::data(path, "not a regular file"));
    }
    let len = meta.len();
    if len > MAX_CIFAR_BYTES {
        return Err(Error::data(
            path,
            format!(
                "file is {len} bytes, more than the {MAX_CIFAR_BYTES}-byte limit for a \
                 CIFAR-10 batch (a real one is 30 730 000 bytes)"
            ),
        ));
    }
    let mut raw = Vec::with_capacity(len as usize);
    // `take` guards against the file growing between `metadata` and the read.
    file.take(MAX_CIFAR_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::io(path, e))?;
    if raw.len() as u64 > MAX_CIFAR_BYTES {
        return Err(Error::data(
            path,
            format!("file grew past the {MAX_CIFAR_BYTES}-byte limit while being read"),
        ));
    }
    Ok(raw)
}
