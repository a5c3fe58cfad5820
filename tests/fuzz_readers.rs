//! A deterministic, in-tree "mini-fuzz" of every reader of untrusted input: IDX images and
//! labels (plain and gzip), a whole IDX data set, the checkpoint load path (safetensors
//! decode, progress metadata, restore into a plan) and the TOML config. Each reader gets
//! 20 000 seeded mutations of a valid input — bit flips, special bytes, truncations,
//! insertions and deletions, and edits of the length fields (IDX dimensions, the safetensors
//! header length and data offsets, numbers in the TOML) — and must return Ok or a typed
//! error, never panic. A panicking input is written to the temp dir and named in the
//! failure so it can be replayed (and added to `fuzz/corpus/`).
//!
//! The coverage-guided targets for the same readers live in `fuzz/` (cargo fuzz); the
//! valid inputs below are their corpus seeds, written by
//! `cargo test --test fuzz_readers -- --ignored write_corpus_seeds`.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use gradscope::checkpoint::{self, Progress, format};
use gradscope::config::TrainConfig;
use gradscope::cpu::executor::CpuExecutor;
use gradscope::data::dataset::Dataset;
use gradscope::data::idx;
use gradscope::executor::Executor;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROUNDS: usize = 20_000;

// ---------------------------------------------------------------------------------------
// Valid inputs (the corpus seeds)

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, 0x01];
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, 0x03];
    for d in [n, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend((0..n * rows * cols).map(|i| (i * 37 % 256) as u8));
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The tiny model of the checkpoint seeds: 4-2-3 with Adam, batch 2.
fn tiny_config() -> TrainConfig {
    TrainConfig {
        hidden: vec![2],
        optimizer: "adam".into(),
        ..TrainConfig::default()
    }
}

fn tiny_exec() -> CpuExecutor {
    let c = tiny_config();
    let model = c.model(4, 3).unwrap();
    let plan = gradscope::plan::compile(&model, 2, c.optimizer().unwrap()).unwrap();
    let mut exec = CpuExecutor::<f32>::new(plan);
    gradscope::train::initialize(&mut exec, 5).unwrap();
    exec
}

fn tiny_checkpoint() -> Vec<u8> {
    let mut exec = tiny_exec();
    let tensors = checkpoint::state::capture(&mut exec).unwrap();
    let progress = Progress {
        step: 12,
        ..Progress::start()
    };
    let meta = checkpoint::state::metadata(exec.plan(), &tiny_config(), &progress);
    format::encode(Path::new("seed.safetensors"), &tensors, &meta).unwrap()
}

fn config_text() -> String {
    let c = TrainConfig {
        hidden: vec![64, 32],
        ..TrainConfig::default()
    };
    c.to_toml()
}

/// (fuzz target, seed name, bytes) for every committed seed.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let labels = idx_labels(&[3, 1, 4, 1, 5, 9, 2, 6]);
    let images = idx_images(3, 4, 5);
    let mut dataset = vec![0u8; 2];
    let images8 = idx_images(8, 2, 2);
    dataset[..2].copy_from_slice(&(images8.len() as u16).to_le_bytes());
    dataset.extend_from_slice(&images8);
    dataset.extend_from_slice(&labels);
    vec![
        ("idx_labels", "plain", labels.clone()),
        ("idx_labels", "gzip", gzip(&labels)),
        ("idx_images", "plain", images.clone()),
        ("idx_images", "gzip", gzip(&images)),
        ("idx_dataset", "pair", dataset),
        ("checkpoint_decode", "tiny", tiny_checkpoint()),
        ("config_toml", "default", config_text().into_bytes()),
    ]
}

// ---------------------------------------------------------------------------------------
// Mutations

/// Big-endian u32 fields worth aiming at, and values a hostile file would put there.
const NASTY_U32: [u32; 8] = [
    0,
    1,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0xffff_fffe,
    60_000,
    0x0001_0000,
];

/// One random mutation of `input`; `fields` are byte offsets of 4-byte big-endian length
/// fields (IDX dimensions), `le64` of 8-byte little-endian ones (the safetensors header
/// length).
fn mutate(rng: &mut ChaCha8Rng, input: &[u8], fields: &[usize], le64: &[usize]) -> Vec<u8> {
    let mut v = input.to_vec();
    let edits = rng.random_range(1..4);
    for _ in 0..edits {
        let len = v.len();
        match rng.random_range(0..10) {
            0 | 1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            2 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = [0, 0xff, 0x7f, 0x80, b'"', b'{', b'9', b'-'][rng.random_range(0..8)];
            }
            3 => {
                let cut = rng.random_range(0..=len);
                v.truncate(cut);
            }
            4 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=len - i);
                v.drain(i..i + n.min(16));
            }
            5 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..32);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(i..i, bytes);
            }
            6 | 7 if !fields.is_empty() => {
                let at = fields[rng.random_range(0..fields.len())];
                if at + 4 <= v.len() {
                    let x = if rng.random_range(0..2) == 0 {
                        NASTY_U32[rng.random_range(0..NASTY_U32.len())]
                    } else {
                        let old = u32::from_be_bytes(v[at..at + 4].try_into().unwrap());
                        old.wrapping_add(rng.random_range(0..5)).wrapping_sub(2)
                    };
                    v[at..at + 4].copy_from_slice(&x.to_be_bytes());
                }
            }
            8 if !le64.is_empty() => {
                let at = le64[rng.random_range(0..le64.len())];
                if at + 8 <= v.len() {
                    let old = u64::from_le_bytes(v[at..at + 8].try_into().unwrap());
                    let x = match rng.random_range(0..4) {
                        0 => u64::MAX,
                        1 => 1 << rng.random_range(0..64),
                        2 => old.wrapping_add(rng.random_range(0..17)).wrapping_sub(8),
                        _ => rng.random_range(0..v.len() as u64 + 16),
                    };
                    v[at..at + 8].copy_from_slice(&x.to_le_bytes());
                }
            }
            _ => edit_number(rng, &mut v),
        }
    }
    v
}

/// Replaces one run of ASCII digits (a length, offset, shape or setting in JSON or TOML)
/// by another number: huge, zero, negative, off by a little or with a fraction.
fn edit_number(rng: &mut ChaCha8Rng, v: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..v.len())
        .filter(|&i| v[i].is_ascii_digit() && (i == 0 || !v[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let s = starts[rng.random_range(0..starts.len())];
    let mut e = s;
    while e < v.len() && v[e].is_ascii_digit() {
        e += 1;
    }
    let old: u128 = std::str::from_utf8(&v[s..e])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let new = match rng.random_range(0..7) {
        0 => "18446744073709551615".to_string(),
        1 => "99999999999999999999999".to_string(),
        2 => "0".to_string(),
        3 => format!("-{old}"),
        4 => (old + rng.random_range(1..9)).to_string(),
        5 => old.saturating_sub(rng.random_range(1..9)).to_string(),
        _ => format!("{old}.5e300"),
    };
    v.splice(s..e, new.into_bytes());
}

/// Runs `read` on `rounds` mutations of `input`; any panic fails the test naming the round
/// and a file holding the input that caused it.
fn fuzz(
    what: &str,
    seed: u64,
    input: &[u8],
    fields: &[usize],
    le64: &[usize],
    mut read: impl FnMut(&[u8]) -> Outcome,
) -> (usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut ok, mut err) = (0, 0);
    // The valid input itself first: it must read.
    assert_eq!(
        read(input),
        Outcome::Ok,
        "{what}: the unmutated seed does not read"
    );
    for round in 0..ROUNDS {
        let case = mutate(&mut rng, input, fields, le64);
        match catch_unwind(AssertUnwindSafe(|| read(&case))) {
            Ok(Outcome::Ok) => ok += 1,
            Ok(Outcome::Err) => err += 1,
            Err(_) => {
                let path = crash_path(what, round);
                std::fs::write(&path, &case).unwrap();
                panic!(
                    "{what}: round {round} (seed {seed}) panicked; input saved to {}",
                    path.display()
                );
            }
        }
    }
    // The mutations must actually reach the error paths (else the test proves nothing).
    assert!(err > ROUNDS / 4, "{what}: only {err} of {ROUNDS} rejected");
    (ok, err)
}

fn crash_path(what: &str, round: usize) -> PathBuf {
    std::env::temp_dir().join(format!("gradscope-fuzz-{what}-{round}.bin"))
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok,
    Err,
}

fn outcome<T>(r: gradscope::Result<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        // Every refusal is one of our typed errors, naming the source.
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            Outcome::Err
        }
    }
}

// ---------------------------------------------------------------------------------------
// The readers

#[test]
fn idx_labels_survive_mutation() {
    let path = Path::new("fuzz-labels");
    let read =
        |b: &[u8]| outcome(idx::maybe_gunzip(b, path).and_then(|p| idx::parse_labels(&p, path)));
    let plain = idx_labels(&[3, 1, 4, 1, 5, 9, 2, 6]);
    fuzz("idx_labels", 1, &plain, &[0, 4], &[], read);
    fuzz("idx_labels.gz", 2, &gzip(&plain), &[4], &[], read);
}

#[test]
fn idx_images_survive_mutation() {
    let path = Path::new("fuzz-images");
    let read =
        |b: &[u8]| outcome(idx::maybe_gunzip(b, path).and_then(|p| idx::parse_images(&p, path)));
    let plain = idx_images(3, 4, 5);
    fuzz("idx_images", 3, &plain, &[0, 4, 8, 12], &[], read);
    fuzz("idx_images.gz", 4, &gzip(&plain), &[4], &[], read);
}

#[test]
fn idx_datasets_survive_mutation() {
    let images = idx_images(8, 2, 2);
    let labels = idx_labels(&[3, 1, 4, 1, 5, 9, 2, 6]);
    let (ip, lp) = (Path::new("fuzz-images"), Path::new("fuzz-labels"));
    // Mutate the two files separately, each against the valid other.
    fuzz("dataset.images", 5, &images, &[0, 4, 8, 12], &[], |b| {
        outcome(Dataset::from_idx_bytes(b, &labels, ip, lp, 10))
    });
    fuzz("dataset.labels", 6, &labels, &[0, 4], &[], |b| {
        outcome(Dataset::from_idx_bytes(&images, b, ip, lp, 10))
    });
}

#[test]
fn checkpoints_survive_mutation() {
    let bytes = tiny_checkpoint();
    let mut exec = tiny_exec();
    let path = Path::new("fuzz.safetensors");
    fuzz("checkpoint", 7, &bytes, &[], &[0], |b| {
        outcome(format::decode(path, b).and_then(|file| {
            checkpoint::state::progress_of(&file)?;
            checkpoint::restore(&mut exec, &file)
        }))
    });
}

#[test]
fn configs_survive_mutation() {
    let text = config_text();
    let path = Path::new("fuzz.toml");
    fuzz("config", 8, text.as_bytes(), &[], &[], |b| {
        let Ok(text) = std::str::from_utf8(b) else {
            return Outcome::Err;
        };
        outcome(TrainConfig::from_toml(text, path).and_then(|c| {
            c.validate()?;
            let model = c.model(784, 10)?;
            let _ = model.param_count();
            gradscope::plan::compile(&model, c.batch_size, c.optimizer()?)?;
            Ok(())
        }))
    });
}

/// Writes the valid inputs above as the corpus seeds of the cargo-fuzz targets.
#[test]
#[ignore = "writes fuzz/corpus; run by hand when the formats change"]
fn write_corpus_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus");
    for (target, name, bytes) in seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}
