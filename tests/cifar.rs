//! CIFAR-10 binary reader on synthetic files (channel order, labels, batch order, every
//! malformed case a `Data` error naming the file), `load_any`'s format detection,
//! per-channel standardization, and the seeded crop/flip augmentation. No GPU needed.

use std::path::{Path, PathBuf};

use gradscope::Error;
use gradscope::data::cifar::{PIXELS, RECORD_BYTES};
use gradscope::data::{Augment, Dataset, load_any, load_cifar_dir};

// ---------------------------------------------------------------- helpers

/// A record whose pixel bytes encode (record tag, channel, position), so that any mix-up
/// of channels, pixels or records shows: R plane = tag, G plane = tag + 1, B plane varies
/// with the pixel index.
fn record(label: u8, tag: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend(std::iter::repeat_n(tag, 1024));
    r.extend(std::iter::repeat_n(tag.wrapping_add(1), 1024));
    r.extend((0..1024).map(|i| (i % 251) as u8));
    r
}

fn batch(records: &[(u8, u8)]) -> Vec<u8> {
    records.iter().flat_map(|&(l, t)| record(l, t)).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Asserts `r` is a `Data` error whose path ends with `file` and whose text contains every
/// one of `words`.
fn assert_data_err<T: std::fmt::Debug>(r: gradscope::Result<T>, file: &str, words: &[&str]) {
    match r {
        Err(e @ Error::Data { .. }) => {
            let Error::Data { path, .. } = &e else {
                unreachable!()
            };
            assert!(
                path.ends_with(file),
                "error should name {file}, names {}: {e}",
                path.display()
            );
            let msg = e.to_string();
            for w in words {
                assert!(msg.contains(w), "error `{msg}` should mention `{w}`");
            }
        }
        other => panic!("expected a Data error naming {file}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- reader

#[test]
fn reads_channels_labels_and_batches_in_numeric_order() {
    let dir = tempfile::tempdir().unwrap();
    // Written out of order, and with 10 after 2 to catch a lexicographic sort.
    write(dir.path(), "data_batch_10.bin", &batch(&[(9, 100)]));
    write(dir.path(), "data_batch_2.bin", &batch(&[(3, 30), (4, 40)]));
    write(dir.path(), "data_batch_1.bin", &batch(&[(0, 10), (7, 20)]));
    write(dir.path(), "test_batch.bin", &batch(&[(5, 200)]));
    write(dir.path(), "batches.meta.txt", b"airplane\n");
    write(
        dir.path(),
        "data_batch_x.bin",
        b"not a batch, must be ignored",
    );

    let (train, test) = load_cifar_dir(dir.path()).unwrap();
    assert_eq!(train.n, 5);
    assert_eq!(train.labels, vec![0, 7, 3, 4, 9]);
    assert_eq!(train.dim, 3072);
    assert_eq!(train.classes, 10);
    assert_eq!(train.image, Some([3, 32, 32]));
    assert_eq!(train.name, format!("{}/train", dir.path().display()));
    for (i, tag) in [10u8, 20, 30, 40, 100].into_iter().enumerate() {
        let rec = train.record(i);
        assert!(
            rec[..1024].iter().all(|&x| x == tag as f32 / 255.0),
            "R of {i}"
        );
        assert!(
            rec[1024..2048]
                .iter()
                .all(|&x| x == (tag + 1) as f32 / 255.0),
            "G of {i}"
        );
        for p in [0, 1, 31, 32, 250, 251, 1023] {
            assert_eq!(
                rec[2048 + p],
                (p % 251) as f32 / 255.0,
                "B pixel {p} of {i}"
            );
        }
    }
    let test = test.expect("test_batch.bin is present");
    assert_eq!(test.labels, vec![5]);
    assert_eq!(test.record(0)[0], 200.0 / 255.0);
    assert_eq!(test.name, format!("{}/test", dir.path().display()));
}

#[test]
fn pixel_scale_is_exact_at_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = vec![1u8];
    r.extend((0..PIXELS).map(|i| if i % 2 == 0 { 0 } else { 255 }));
    let f = write(dir.path(), "one.bin", &r);
    let (ds, test) = load_cifar_dir(&f).unwrap();
    assert!(test.is_none());
    assert_eq!(ds.name, f.display().to_string());
    assert_eq!(ds.labels, vec![1]);
    assert_eq!(&ds.inputs[..4], &[0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn no_test_batch_gives_none() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data_batch_1.bin", &batch(&[(2, 0)]));
    let (train, test) = load_cifar_dir(dir.path()).unwrap();
    assert_eq!(train.n, 1);
    assert!(test.is_none());
}

#[test]
fn size_not_a_multiple_of_the_record_names_file_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data_batch_1.bin", &batch(&[(0, 0)]));
    let mut bad = batch(&[(1, 1), (2, 2)]);
    bad.truncate(2 * RECORD_BYTES - 100);
    write(dir.path(), "data_batch_2.bin", &bad);
    let len = (2 * RECORD_BYTES - 100).to_string();
    assert_data_err(
        load_cifar_dir(dir.path()),
        "data_batch_2.bin",
        &[
            &len,
            "3073",
            "1 whole record",
            "2973 byte(s) over",
            "100 byte(s) short",
        ],
    );
    // Also through load_any and as a single file.
    assert_data_err(load_any(dir.path()), "data_batch_2.bin", &["3073"]);
    assert_data_err(
        load_cifar_dir(&dir.path().join("data_batch_2.bin")),
        "data_batch_2.bin",
        &["3073"],
    );
}

#[test]
fn cifar100_sized_file_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "train.bin", &vec![0u8; 3074 * 3]);
    assert_data_err(load_cifar_dir(&f), "train.bin", &["CIFAR-100"]);
}

#[test]
fn empty_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data_batch_1.bin", &batch(&[(0, 0)]));
    write(dir.path(), "test_batch.bin", &[]);
    assert_data_err(load_cifar_dir(dir.path()), "test_batch.bin", &["empty"]);
}

#[test]
fn label_out_of_range_names_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data_batch_1.bin", &batch(&[(0, 0)]));
    write(
        dir.path(),
        "data_batch_2.bin",
        &batch(&[(1, 0), (9, 0), (10, 0)]),
    );
    assert_data_err(
        load_cifar_dir(dir.path()),
        "data_batch_2.bin",
        &["label 10", "record 2", "0..=9"],
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data_batch_1.bin", &batch(&[(255, 0)]));
    assert_data_err(
        load_cifar_dir(dir.path()),
        "data_batch_1.bin",
        &["label 255", "record 0"],
    );
}

#[test]
fn gzip_file_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0x1f, 0x8b];
    bytes.resize(RECORD_BYTES, 0);
    let f = write(dir.path(), "data_batch_1.bin", &bytes);
    assert_data_err(load_cifar_dir(&f), "data_batch_1.bin", &["gzip", "tar"]);
}

#[test]
fn missing_directory_and_files_say_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert_data_err(load_cifar_dir(&missing), "nope", &["data_batch_1.bin"]);
    assert_data_err(load_any(&missing), "nope", &["data_batch_1.bin", "idx"]);

    // Only a test batch: the training set is required.
    let only_test = dir.path().join("only_test");
    std::fs::create_dir(&only_test).unwrap();
    write(&only_test, "test_batch.bin", &batch(&[(0, 0)]));
    assert_data_err(
        load_cifar_dir(&only_test),
        "only_test",
        &["data_batch_<N>.bin", "found test_batch.bin"],
    );
    assert_data_err(load_any(&only_test), "only_test", &["data_batch_<N>.bin"]);

    // An empty directory: load_any names both formats.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_data_err(
        load_cifar_dir(&empty),
        "empty",
        &["data_batch_<N>.bin", "test_batch.bin"],
    );
    assert_data_err(
        load_any(&empty),
        "empty",
        &["train-images-idx3-ubyte", "data_batch_<N>.bin"],
    );

    // A file that is not .bin.
    let txt = write(dir.path(), "notes.txt", b"hello");
    assert_data_err(load_any(&txt), "notes.txt", &[".bin"]);
}

#[test]
fn load_any_reads_cifar_dir_and_bin_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data_batch_1.bin", &batch(&[(4, 1), (6, 2)]));
    write(dir.path(), "test_batch.bin", &batch(&[(8, 3)]));
    let (train, test) = load_any(dir.path()).unwrap();
    assert_eq!(train.labels, vec![4, 6]);
    assert_eq!(test.unwrap().labels, vec![8]);
    let (single, none) = load_any(&dir.path().join("test_batch.bin")).unwrap();
    assert_eq!(single.labels, vec![8]);
    assert!(none.is_none());
}

// ---------------------------------------------------------------- channel statistics

fn image_ds(n: usize, image: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Dataset {
    let [c, h, w] = image;
    let hw = h * w;
    let mut inputs = Vec::new();
    for i in 0..n {
        for ch in 0..c {
            for p in 0..hw {
                inputs.push(f(i, ch, p));
            }
        }
    }
    Dataset::from_parts(inputs, vec![0; n], c * hw, 1, Some(image), "synthetic").unwrap()
}

#[test]
fn channel_standardization_gives_zero_mean_unit_std() {
    // Channels with different offsets and scales, plus a pseudo-random texture. The mean is
    // rounded to f32, an error of up to ulp(10)/2 ≈ 5e-7 for channel 1, which divided by
    // its std (≈ 0.14) leaves ≈ 4e-6 in the standardized mean: hence the 1e-5 bound.
    let ds0 = image_ds(7, [3, 5, 4], |i, ch, p| {
        let noise = ((i * 131 + p * 17 + ch * 7) % 23) as f32 / 23.0;
        [0.1, 10.0, -3.0][ch] + [1.0, 0.5, 5.0][ch] * noise
    });
    let (mean, std) = ds0.channel_mean_std().unwrap();
    assert_eq!(mean.len(), 3);
    for ch in 0..3 {
        assert!((mean[ch] - [0.1, 10.0, -3.0][ch]).abs() < [1.0, 0.5, 5.0][ch]);
    }
    let mut ds = ds0.clone();
    ds.standardize_channels(&mean, &std).unwrap();
    let (m2, s2) = ds.channel_mean_std().unwrap();
    for ch in 0..3 {
        assert!(m2[ch].abs() < 1e-5, "channel {ch} mean {}", m2[ch]);
        assert!((s2[ch] - 1.0).abs() < 1e-4, "channel {ch} std {}", s2[ch]);
    }
    // One value checked by hand: record 2, channel 1, pixel 3.
    let at = 2 * ds.dim + 20 + 3;
    let want = (ds0.inputs[at] - mean[1]) / std[1];
    assert!((ds.inputs[at] - want).abs() <= 1e-5 * want.abs().max(1.0));
}

#[test]
fn channel_statistics_refuse_bad_input() {
    let flat = Dataset::from_parts(vec![1.0, 2.0], vec![0, 0], 1, 1, None, "flat").unwrap();
    assert!(matches!(flat.channel_mean_std(), Err(Error::Config(_))));
    let mut flat2 = flat.clone();
    assert!(flat2.standardize_channels(&[0.0], &[1.0]).is_err());

    // Channel 1 is constant: its std is 0 and standardizing must refuse it.
    let mut ds = image_ds(
        3,
        [2, 2, 2],
        |i, ch, p| if ch == 1 { 0.5 } else { (i + p) as f32 },
    );
    let (mean, std) = ds.channel_mean_std().unwrap();
    assert_eq!(std[1], 0.0);
    let err = ds
        .standardize_channels(&mean, &std)
        .unwrap_err()
        .to_string();
    assert!(err.contains("channel 1"), "{err}");
    assert!(
        ds.standardize_channels(&[0.0], &[1.0]).is_err(),
        "wrong channel count"
    );
    assert!(
        ds.standardize_channels(&[0.0, 0.0], &[1.0, f32::NAN])
            .is_err()
    );
}

// ---------------------------------------------------------------- augmentation

const IMG: [usize; 3] = [3, 8, 8];

/// A batch whose values are all distinct and non-zero, so shifted-in zeros and moved
/// pixels are both visible.
fn distinct_batch(b: usize) -> Vec<f32> {
    (0..b * 3 * 64).map(|i| 1.0 + i as f32).collect()
}

#[test]
fn same_seed_and_step_gives_identical_results() {
    let aug = Augment {
        crop_pad: 2,
        flip: true,
    };
    let b = 16;
    let mut x = distinct_batch(b);
    let mut y = distinct_batch(b);
    aug.apply(&mut x, b, IMG, 42, 7).unwrap();
    aug.apply(&mut y, b, IMG, 42, 7).unwrap();
    assert_eq!(x, y);
    assert_ne!(
        x,
        distinct_batch(b),
        "16 images should not all be left alone"
    );

    let mut z = distinct_batch(b);
    aug.apply(&mut z, b, IMG, 42, 8).unwrap();
    assert_ne!(x, z, "a different step must draw differently");
    let mut s = distinct_batch(b);
    aug.apply(&mut s, b, IMG, 43, 7).unwrap();
    assert_ne!(x, s, "a different seed must draw differently");

    // Rows are independent of one another: row 3 of a batch of 16 is augmented exactly as
    // the draw for row 3 says, whatever the batch size.
    let mut one = distinct_batch(16)[3 * 192..4 * 192].to_vec();
    let d = aug.draw(42, 7, 3);
    shift_flip_reference(&mut one, d.dy, d.dx, d.flip);
    assert_eq!(&x[3 * 192..4 * 192], &one[..]);
}

/// Straightforward reference: out[y][x] = in[y + dy][x' + dx] with x' the flipped column.
fn shift_flip_reference(img: &mut [f32], dy: isize, dx: isize, flip: bool) {
    let [c, h, w] = IMG;
    let src = img.to_vec();
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let xc = if flip { w - 1 - x } else { x } as isize;
                let (sy, sx) = (y as isize + dy, xc + dx);
                let v = if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                    src[ch * h * w + sy as usize * w + sx as usize]
                } else {
                    0.0
                };
                img[ch * h * w + y * w + x] = v;
            }
        }
    }
}

#[test]
fn every_draw_matches_the_reference_and_covers_the_range() {
    let aug = Augment {
        crop_pad: 3,
        flip: true,
    };
    let b = 64;
    let mut x = distinct_batch(b);
    aug.apply(&mut x, b, IMG, 5, 0).unwrap();
    let orig = distinct_batch(b);
    let mut seen_dy = std::collections::HashSet::new();
    let mut flips = 0;
    for r in 0..b {
        let d = aug.draw(5, 0, r as u64);
        assert!(d.dy.abs() <= 3 && d.dx.abs() <= 3, "{d:?}");
        seen_dy.insert(d.dy);
        flips += d.flip as usize;
        let mut want = orig[r * 192..(r + 1) * 192].to_vec();
        shift_flip_reference(&mut want, d.dy, d.dx, d.flip);
        assert_eq!(&x[r * 192..(r + 1) * 192], &want[..], "row {r}, draw {d:?}");
    }
    assert!(
        seen_dy.len() >= 5,
        "64 draws should cover most of -3..=3: {seen_dy:?}"
    );
    assert!((16..=48).contains(&flips), "{flips} flips of 64");
}

#[test]
fn flip_twice_is_identity() {
    let aug = Augment {
        crop_pad: 0,
        flip: true,
    };
    let b = 8;
    let mut x = distinct_batch(b);
    aug.apply(&mut x, b, IMG, 1, 2).unwrap();
    assert_ne!(x, distinct_batch(b), "8 coin flips should flip something");
    aug.apply(&mut x, b, IMG, 1, 2).unwrap();
    assert_eq!(x, distinct_batch(b));
}

#[test]
fn crop_with_pad_zero_is_identity() {
    let aug = Augment {
        crop_pad: 0,
        flip: false,
    };
    let b = 4;
    let mut x = distinct_batch(b);
    for step in 0..5 {
        aug.apply(&mut x, b, IMG, 9, step).unwrap();
    }
    assert_eq!(x, distinct_batch(b));
}

#[test]
fn crop_shifts_a_hand_made_image() {
    // One 1×4×4 image with a single bright pixel at (1, 2). A draw (dy, dx) reads
    // out[y][x] = in[y + dy][x + dx], so the pixel lands at (1 − dy, 2 − dx), or leaves
    // the image, and every other value is 0.
    let aug = Augment {
        crop_pad: 2,
        flip: false,
    };
    let mut found_inside = false;
    let mut found_outside = false;
    for step in 0..40 {
        let mut img = vec![0.0f32; 16];
        img[4 + 2] = 7.0;
        aug.apply(&mut img, 1, [1, 4, 4], 11, step).unwrap();
        let d = aug.draw(11, step, 0);
        let (y, x) = (1 - d.dy, 2 - d.dx);
        let mut want = vec![0.0f32; 16];
        if (0..4).contains(&y) && (0..4).contains(&x) {
            want[y as usize * 4 + x as usize] = 7.0;
            found_inside = true;
        } else {
            found_outside = true;
        }
        assert_eq!(img, want, "step {step} draw {d:?}");
    }
    assert!(found_inside && found_outside);

    // A 2-row image shifted by the whole border: a 1-row image and pad 3 can shift by
    // more than its size, which must zero it rather than panic.
    let big = Augment {
        crop_pad: 3,
        flip: true,
    };
    for step in 0..20 {
        let mut img = vec![1.0f32; 2];
        big.apply(&mut img, 1, [1, 1, 2], 0, step).unwrap();
        let d = big.draw(0, step, 0);
        if d.dy != 0 || d.dx.abs() >= 2 {
            assert_eq!(img, vec![0.0, 0.0], "{d:?}");
        }
    }
}

#[test]
fn apply_refuses_wrong_sizes() {
    let aug = Augment {
        crop_pad: 1,
        flip: true,
    };
    let mut x = vec![0.0; 100];
    assert!(matches!(
        aug.apply(&mut x, 2, IMG, 0, 0),
        Err(Error::Shape { .. })
    ));
    assert!(aug.apply(&mut x, 0, [0, 8, 8], 0, 0).is_err());
}
