//! Data loading: the bundled Fashion-MNIST test split, the IDX reader against malformed
//! files (every one must be a `Data` error naming the file, never a panic or a huge
//! allocation), the seeded split, standardisation, and the batch loader's order and resume.
//! No GPU needed.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use gradscope::Error;
use gradscope::data::idx::{self, MAGIC_IMAGES_U8, MAGIC_LABELS_U8};
use gradscope::data::{BatchLoader, Cursor, Dataset, bundled_fashion_mnist, load_dir, one_hot};

// ---------------------------------------------------------------- helpers

fn labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut b = MAGIC_LABELS_U8.to_be_bytes().to_vec();
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

fn images_bytes(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = MAGIC_IMAGES_U8.to_be_bytes().to_vec();
    for d in [n, rows, cols] {
        b.extend(d.to_be_bytes());
    }
    b.extend(pixels);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A small valid pair: 3 images of 2×2, labels 0, 1, 2.
fn small_pair() -> (Vec<u8>, Vec<u8>) {
    (
        images_bytes(3, 2, 2, &[0, 51, 102, 255, 1, 2, 3, 4, 5, 6, 7, 8]),
        labels_bytes(&[0, 1, 2]),
    )
}

/// Loads `images`/`labels` from files in a temp dir and expects a `Data` error on the file
/// `bad` ("images" or "labels") whose reason contains every string of `want`.
fn expect_data_error(images: &[u8], labels: &[u8], classes: usize, bad: &str, want: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let ip = write(dir.path(), "images-idx3-ubyte", images);
    let lp = write(dir.path(), "labels-idx1-ubyte", labels);
    let err = Dataset::from_idx(&ip, &lp, classes).expect_err("malformed input was accepted");
    let bad_path = if bad == "images" { &ip } else { &lp };
    match &err {
        Error::Data { path, reason } => {
            assert_eq!(path, bad_path, "error names the wrong file: {err}");
            for w in want {
                assert!(reason.contains(w), "reason {reason:?} lacks {w:?}");
            }
        }
        other => panic!("expected a Data error, got {other:?}"),
    }
    // The displayed message must name the file too, since that is what a user sees.
    assert!(
        err.to_string().contains(&*bad_path.display().to_string()),
        "message does not name the file: {err}"
    );
}

/// A data set whose record `i` is `[i, i + 0.5]`, so records can be traced through splits
/// and batches.
fn traceable(n: usize, classes: usize) -> Dataset {
    let inputs = (0..n).flat_map(|i| [i as f32, i as f32 + 0.5]).collect();
    let labels = (0..n).map(|i| (i % classes) as u32).collect();
    Dataset::from_parts(inputs, labels, 2, classes, None, "traceable").unwrap()
}

fn ids(ds: &Dataset) -> Vec<usize> {
    (0..ds.n).map(|i| ds.record(i)[0] as usize).collect()
}

// ---------------------------------------------------------------- bundled set

#[test]
fn bundled_fashion_mnist_round_trip() {
    let ds = bundled_fashion_mnist().unwrap();
    assert_eq!((ds.n, ds.dim, ds.classes), (10_000, 784, 10));
    assert_eq!(ds.image, Some([1, 28, 28]));
    assert_eq!(ds.inputs.len(), 10_000 * 784);
    assert_eq!(ds.labels.len(), 10_000);
    assert_eq!(ds.class_histogram(), vec![1000; 10]);
    // First labels of t10k-labels-idx1-ubyte (`zcat … | od -j 8 -t u1`).
    assert_eq!(&ds.labels[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert!(ds.inputs.iter().all(|&x| (0.0..=1.0).contains(&x)));
    // Sum of every raw pixel byte of the file, computed with Python over the zcat output:
    // checks the whole payload, not just its shape.
    let raw_sum: u64 = ds.inputs.iter().map(|&x| (x * 255.0).round() as u64).sum();
    assert_eq!(raw_sum, 573_469_082);
    ds.check_finite().unwrap();
}

#[test]
fn gzip_and_plain_give_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = small_pair();
    let ip = write(dir.path(), "i", &images);
    let lp = write(dir.path(), "l", &labels);
    let igz = write(dir.path(), "i.gz", &gzip(&images));
    let lgz = write(dir.path(), "l.gz", &gzip(&labels));
    // Plain bytes under a .gz name: detection is by magic, so this must load too.
    let ifake = write(dir.path(), "plain-really.gz", &images);
    let plain = Dataset::from_idx(&ip, &lp, 3).unwrap();
    let zipped = Dataset::from_idx(&igz, &lgz, 3).unwrap();
    let fake = Dataset::from_idx(&ifake, &lp, 3).unwrap();
    assert_eq!(plain.inputs, zipped.inputs);
    assert_eq!(plain.labels, zipped.labels);
    assert_eq!(plain.inputs, fake.inputs);
    assert_eq!(plain.inputs[..4], [0.0, 0.2, 0.4, 1.0]);
    assert_eq!(plain.labels, vec![0, 1, 2]);
    assert_eq!(plain.image, Some([1, 2, 2]));

    // The bundled set through files, plain and compressed, equals the embedded one.
    let bundled = bundled_fashion_mnist().unwrap();
    let asset = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist");
    let img_gz = asset.join("t10k-images-idx3-ubyte.gz");
    let lab_gz = asset.join("t10k-labels-idx1-ubyte.gz");
    let img_plain = write(
        dir.path(),
        "t10k-images-idx3-ubyte",
        &idx::read_file(&img_gz).unwrap(),
    );
    let from_gz = Dataset::from_idx(&img_gz, &lab_gz, 10).unwrap();
    let from_plain = Dataset::from_idx(&img_plain, &lab_gz, 10).unwrap();
    assert_eq!(from_gz.inputs, bundled.inputs);
    assert_eq!(from_plain.inputs, bundled.inputs);
    assert_eq!(from_plain.labels, bundled.labels);

    // Multi-member gzip (what `cat a.gz b.gz` makes) decodes to the concatenation.
    let (a, b) = images.split_at(10);
    let mut two = gzip(a);
    two.extend(gzip(b));
    let imm = write(dir.path(), "multi.gz", &two);
    assert_eq!(
        Dataset::from_idx(&imm, &lp, 3).unwrap().inputs,
        plain.inputs
    );
}

// ---------------------------------------------------------------- malformed files

#[test]
fn wrong_magic_is_refused() {
    let (images, labels) = small_pair();
    // Swapped files: the message says so.
    expect_data_error(&labels, &labels, 3, "images", &["IDX3", "swapped"]);
    expect_data_error(&images, &images, 3, "labels", &["IDX1", "swapped"]);
    // A text file.
    expect_data_error(
        b"hello world, not idx",
        &labels,
        3,
        "images",
        &["not an IDX file"],
    );
    // An IDX file of f32 (type 0x0D).
    let mut f32_images = images.clone();
    f32_images[2] = 0x0D;
    expect_data_error(&f32_images, &labels, 3, "images", &["f32", "0x00000d03"]);
    // Right type, wrong number of dimensions.
    let mut two_dims = images.clone();
    two_dims[3] = 2;
    expect_data_error(&two_dims, &labels, 3, "images", &["2 dimensions"]);
}

#[test]
fn truncated_header_is_refused() {
    let (images, labels) = small_pair();
    expect_data_error(
        &images[..10],
        &labels,
        3,
        "images",
        &["truncated header", "16 bytes"],
    );
    expect_data_error(
        &images,
        &labels[..6],
        3,
        "labels",
        &["truncated header", "8 bytes"],
    );
    expect_data_error(&images[..2], &labels, 3, "images", &["truncated header"]);
    expect_data_error(
        &[],
        &labels,
        3,
        "images",
        &["truncated header", "has 0 bytes"],
    );
}

#[test]
fn truncated_payload_is_refused() {
    let (images, labels) = small_pair();
    let short = &images[..images.len() - 1];
    expect_data_error(
        short,
        &labels,
        3,
        "images",
        &["truncated: header says 3 images of 2x2 = 12 bytes, file has 11"],
    );
    expect_data_error(
        &images,
        &labels[..labels.len() - 1],
        3,
        "labels",
        &["truncated: header says 3 labels = 3 bytes, file has 2"],
    );
    // A truncated gzip stream is caught by the decoder or, failing that, by the size check.
    let dir = tempfile::tempdir().unwrap();
    let gz = gzip(&images);
    let ip = write(dir.path(), "cut.gz", &gz[..gz.len() / 2]);
    let lp = write(dir.path(), "l", &labels);
    let err = Dataset::from_idx(&ip, &lp, 3).unwrap_err();
    assert!(
        matches!(&err, Error::Data { path, .. } if *path == ip),
        "got {err}"
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let (mut images, mut labels) = small_pair();
    images.push(0);
    expect_data_error(
        &images,
        &labels,
        3,
        "images",
        &["1 trailing bytes", "= 12 bytes"],
    );
    images.pop();
    labels.extend([0, 0]);
    expect_data_error(&images, &labels, 3, "labels", &["2 trailing bytes"]);
}

#[test]
fn count_mismatch_and_label_range_are_refused() {
    let (images, _) = small_pair();
    expect_data_error(
        &images,
        &labels_bytes(&[0, 1]),
        3,
        "labels",
        &["has 2 labels", "has 3 images"],
    );
    expect_data_error(
        &images,
        &labels_bytes(&[0, 7, 1]),
        3,
        "labels",
        &["label 7 of record 1", "3 classes"],
    );
    // Only the first bad record is named.
    expect_data_error(
        &images,
        &labels_bytes(&[0, 1, 2]),
        2,
        "labels",
        &["record 2"],
    );
    expect_data_error(
        &images_bytes(0, 2, 2, &[]),
        &labels_bytes(&[]),
        3,
        "images",
        &["0 images"],
    );
    expect_data_error(
        &images_bytes(1, 0, 5, &[]),
        &labels_bytes(&[0]),
        3,
        "images",
        &["0x5"],
    );
}

#[test]
fn huge_declared_count_with_tiny_file_is_refused_without_allocating() {
    // u32::MAX images of 65535×65535 would be 1.8e19 bytes; the check must run against the
    // 4 bytes present before anything is allocated (an allocation would abort the test).
    let huge = images_bytes(u32::MAX, 65_535, 65_535, &[1, 2, 3, 4]);
    let (_, labels) = small_pair();
    expect_data_error(
        &huge,
        &labels,
        3,
        "images",
        &["truncated", "4294967295 images"],
    );
    let mut huge_labels = MAGIC_LABELS_U8.to_be_bytes().to_vec();
    huge_labels.extend(u32::MAX.to_be_bytes());
    huge_labels.extend([0, 1, 2]);
    let (images, _) = small_pair();
    expect_data_error(
        &images,
        &huge_labels,
        3,
        "labels",
        &["truncated", "4294967295 labels"],
    );
}

#[test]
fn corrupt_gzip_and_gzip_bombs_are_refused() {
    let (images, labels) = small_pair();
    let mut junk = vec![0x1f, 0x8b];
    junk.extend([0xff; 30]);
    expect_data_error(&junk, &labels, 3, "images", &["corrupt gzip"]);

    // The size limit, shown with a small limit instead of 2 GiB: 1 MiB of zeros
    // compresses to about a kilobyte.
    let bomb = gzip(&vec![0u8; 1 << 20]);
    assert!(bomb.len() < 8192);
    let p = Path::new("bomb.gz");
    let err = idx::gunzip_limited(&bomb, p, 1000).unwrap_err();
    assert!(
        matches!(&err, Error::Data { path, reason } if path == p && reason.contains("1000-byte limit")),
        "got {err}"
    );
    assert_eq!(
        idx::gunzip_limited(&bomb, p, 1 << 20).unwrap().len(),
        1 << 20
    );
    let _ = images;
}

#[test]
fn bytes_api_names_its_made_up_paths() {
    let (images, labels) = small_pair();
    let ip = Path::new("<bundled>/x-images.gz");
    let lp = Path::new("<bundled>/x-labels.gz");
    let ok = Dataset::from_idx_bytes(&gzip(&images), &labels, ip, lp, 3).unwrap();
    assert_eq!(ok.n, 3);
    let err = Dataset::from_idx_bytes(&images, &labels[..9], ip, lp, 3).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("<bundled>/x-labels.gz: truncated"),
        "got {err}"
    );
}

// ---------------------------------------------------------------- directories

#[test]
fn load_dir_finds_train_and_test() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = small_pair();
    write(dir.path(), "train-images-idx3-ubyte.gz", &gzip(&images));
    write(dir.path(), "train-labels-idx1-ubyte", &labels);
    let (train, test) = load_dir(dir.path()).unwrap();
    assert_eq!((train.n, train.classes), (3, 3));
    assert!(test.is_none());
    assert!(train.name.ends_with("/train"));

    // Test labels alone: an error naming what is missing.
    write(dir.path(), "t10k-labels-idx1-ubyte", &labels_bytes(&[4]));
    let err = load_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("t10k-images-idx3-ubyte"), "got {err}");

    // With both, classes cover the largest label of either split.
    write(
        dir.path(),
        "t10k-images-idx3-ubyte",
        &images_bytes(1, 2, 2, &[9; 4]),
    );
    let (train, test) = load_dir(dir.path()).unwrap();
    let test = test.unwrap();
    assert_eq!((train.classes, test.classes, test.n), (5, 5, 1));
    assert_eq!(test.labels, vec![4]);
}

#[test]
fn load_dir_lists_what_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Data { .. }));
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", ".gz"] {
        assert!(msg.contains(name), "{msg:?} lacks {name}");
    }
    assert!(load_dir(&dir.path().join("nope")).is_err());
}

// ---------------------------------------------------------------- split, statistics

#[test]
fn split_is_deterministic_disjoint_and_complete() {
    let ds = traceable(1000, 10);
    let (train, val) = ds.split(0.1, 42).unwrap();
    assert_eq!((train.n, val.n), (900, 100));
    let (train2, val2) = ds.split(0.1, 42).unwrap();
    assert_eq!(train, train2);
    assert_eq!(val, val2);
    let (_, val3) = ds.split(0.1, 43).unwrap();
    assert_ne!(
        ids(&val),
        ids(&val3),
        "seeds 42 and 43 chose the same validation set"
    );

    let t: HashSet<usize> = ids(&train).into_iter().collect();
    let v: HashSet<usize> = ids(&val).into_iter().collect();
    assert_eq!((t.len(), v.len()), (900, 100), "duplicate records");
    assert!(t.is_disjoint(&v));
    assert_eq!(t.union(&v).count(), 1000);
    // Labels travel with their records, and each part keeps the original order.
    for part in [&train, &val] {
        for i in 0..part.n {
            assert_eq!(part.labels[i] as usize, ids(part)[i] % 10);
            assert_eq!(part.record(i)[1], part.record(i)[0] + 0.5);
        }
        assert!(ids(part).windows(2).all(|w| w[0] < w[1]));
    }
    // Not just the first or last hundred.
    assert!(ids(&val).iter().any(|&i| i >= 100) && ids(&val).iter().any(|&i| i < 900));

    for bad in [0.0, 1.0, -0.5, f64::NAN, 0.0001] {
        assert!(ds.split(bad, 1).is_err(), "fraction {bad} accepted");
    }
}

#[test]
fn standardize_with_training_statistics() {
    let ds = bundled_fashion_mnist().unwrap();
    let (mut train, mut val) = ds.split(0.2, 7).unwrap();
    let (mean, std) = train.mean_std();
    // Fashion-MNIST pixel mean is about 0.286 and std about 0.353 (the usual constants).
    assert!(
        (mean - 0.286).abs() < 0.01 && (std - 0.353).abs() < 0.01,
        "{mean} {std}"
    );
    train.standardize(mean, std).unwrap();
    val.standardize(mean, std).unwrap();
    let (m2, s2) = train.mean_std();
    assert!(
        m2.abs() < 1e-4 && (s2 - 1.0).abs() < 1e-4,
        "train after: {m2} {s2}"
    );
    let (mv, sv) = val.mean_std();
    assert!(
        mv.abs() < 0.05 && (sv - 1.0).abs() < 0.05,
        "val after: {mv} {sv}"
    );
    assert!(train.standardize(0.0, 0.0).is_err());
    assert!(train.standardize(f32::NAN, 1.0).is_err());
}

#[test]
fn non_finite_inputs_are_refused_naming_the_record() {
    let mut inputs = vec![0.5f32; 5 * 3];
    inputs[3 * 3 + 2] = f32::NAN;
    let err = Dataset::from_parts(inputs, vec![0; 5], 3, 2, None, "synthetic").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::NonFinite(_)), "got {err:?}");
    assert!(
        msg.contains("record 3") && msg.contains("feature 2") && msg.contains("synthetic"),
        "{msg}"
    );

    let mut ds = traceable(4, 2);
    ds.inputs[5] = f32::INFINITY;
    assert!(
        ds.check_finite()
            .unwrap_err()
            .to_string()
            .contains("record 2")
    );
    assert!(Dataset::from_parts(vec![0.0; 4], vec![0, 5], 2, 2, None, "x").is_err());
    assert!(Dataset::from_parts(vec![0.0; 5], vec![0, 1], 2, 2, None, "x").is_err());
}

// ---------------------------------------------------------------- loader

/// Every batch of one epoch, as record ids.
fn epoch_ids(loader: &mut BatchLoader<&Dataset>) -> Vec<Vec<usize>> {
    let b = loader.batch_size();
    let dim = loader.dataset().dim;
    let mut x = vec![0.0; b * dim];
    let mut y = vec![0; b];
    let mut out = Vec::new();
    while loader.fill(&mut x, &mut y) {
        let batch: Vec<usize> = x.chunks(dim).map(|r| r[0] as usize).collect();
        for (r, (&id, &label)) in x.chunks(dim).zip(batch.iter().zip(&y)) {
            assert_eq!(r[1], id as f32 + 0.5);
            assert_eq!(
                label as usize,
                id % 10,
                "label travelled apart from its record"
            );
        }
        out.push(batch);
    }
    out
}

#[test]
fn loader_visits_each_record_once_per_epoch() {
    let ds = traceable(103, 10);
    let mut loader = BatchLoader::new(&ds, 10, 5).unwrap();
    assert_eq!(loader.batches_per_epoch(), 10);
    let mut orders = Vec::new();
    for e in 0..4 {
        assert_eq!(loader.epoch(), e);
        let batches = epoch_ids(&mut loader);
        assert_eq!(batches.len(), 10, "epoch {e}");
        assert!(batches.iter().all(|b| b.len() == 10));
        let flat: Vec<usize> = batches.concat();
        let set: HashSet<usize> = flat.iter().copied().collect();
        assert_eq!(set.len(), 100, "epoch {e}: a record came twice");
        assert!(flat.iter().all(|&i| i < 103));
        orders.push(flat);
    }
    assert_eq!(loader.epoch(), 4);
    for e in 1..orders.len() {
        assert_ne!(
            orders[e],
            orders[e - 1],
            "epochs {} and {e} have the same order",
            e - 1
        );
    }
    // The three dropped records are not always the same ones.
    let dropped: Vec<HashSet<usize>> = orders
        .iter()
        .map(|o| (0..103).filter(|i| !o.contains(i)).collect())
        .collect();
    assert!(dropped.windows(2).any(|w| w[0] != w[1]));

    // Same seed, same order; another seed, another order.
    let mut again = BatchLoader::new(&ds, 10, 5).unwrap();
    assert_eq!(epoch_ids(&mut again).concat(), orders[0]);
    let mut other = BatchLoader::new(&ds, 10, 6).unwrap();
    assert_ne!(epoch_ids(&mut other).concat(), orders[0]);
}

#[test]
fn loader_resumes_from_a_saved_cursor() {
    let ds = traceable(57, 10);
    let b = 8;
    let mut x = vec![0.0; b * ds.dim];
    let mut y = vec![0; b];
    let mut a = BatchLoader::new(&ds, b, 99).unwrap();
    // Run into epoch 1 and save the cursor mid-epoch, as a checkpoint would.
    for _ in 0..(7 + 1 + 3) {
        a.fill(&mut x, &mut y);
    }
    let saved = a.cursor();
    assert_eq!(
        saved,
        Cursor {
            epoch: 1,
            position: 24
        }
    );
    let json = serde_json::to_string(&saved).unwrap();

    // Continue `a` and record what it yields for the next two and a half epochs.
    let mut rest_a = Vec::new();
    for _ in 0..20 {
        let more = a.fill(&mut x, &mut y);
        rest_a.push((more, a.cursor(), x.clone(), y.clone()));
    }

    let mut r = BatchLoader::new(&ds, b, 99).unwrap();
    r.set_cursor(serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(r.cursor(), saved);
    for (k, (more, cursor, xs, ys)) in rest_a.into_iter().enumerate() {
        let more_r = r.fill(&mut x, &mut y);
        assert_eq!(
            (more_r, r.cursor()),
            (more, cursor),
            "step {k} after resume"
        );
        if more {
            assert_eq!((&x, &y), (&xs, &ys), "step {k} after resume");
        }
    }

    // Cursors that cannot come from this loader are refused.
    assert!(
        r.set_cursor(Cursor {
            epoch: 0,
            position: 3
        })
        .is_err()
    );
    assert!(
        r.set_cursor(Cursor {
            epoch: 0,
            position: 64
        })
        .is_err()
    );
    assert!(
        r.set_cursor(Cursor {
            epoch: 9,
            position: 56
        })
        .is_ok()
    );
    assert!(!r.fill(&mut x, &mut y));
    assert_eq!(
        r.cursor(),
        Cursor {
            epoch: 10,
            position: 0
        }
    );
}

#[test]
fn loader_rejects_impossible_batch_sizes() {
    let ds = traceable(5, 10);
    assert!(BatchLoader::new(&ds, 0, 1).is_err());
    assert!(BatchLoader::new(&ds, 6, 1).is_err());
    let l = BatchLoader::new(std::sync::Arc::new(ds), 5, 1).unwrap();
    assert_eq!(l.batches_per_epoch(), 1);
}

#[test]
fn one_hot_targets() {
    let mut out = vec![7.0; 3 * 4];
    one_hot(&[2, 0, 3], 4, &mut out).unwrap();
    assert_eq!(out, vec![0., 0., 1., 0., 1., 0., 0., 0., 0., 0., 0., 1.]);
    assert!(one_hot(&[2, 0], 4, &mut out).is_err());
    assert!(one_hot(&[2, 0, 4], 4, &mut out).is_err());
}
