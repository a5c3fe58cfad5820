//! A labelled data set held in memory as f32 rows, and the ways to get one: IDX files on
//! disk ([`Dataset::from_idx`], [`load_dir`]), IDX bytes in memory
//! ([`Dataset::from_idx_bytes`]), or the Fashion-MNIST test split compiled into the binary
//! ([`bundled_fashion_mnist`]).
//!
//! Pixels are scaled from 0..=255 to [0, 1]. Standardisation is a separate step because
//! its statistics must come from the training split only ([`Dataset::mean_std`] on train,
//! then [`Dataset::standardize`] on train, validation and test alike); otherwise the
//! validation score would have seen the validation data.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::idx::{self, IdxImages};
use crate::{Error, Result};

/// The bundled Fashion-MNIST test images (see assets/fashion-mnist/README.md).
const BUNDLED_IMAGES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/fashion-mnist/t10k-images-idx3-ubyte.gz"
));
/// The bundled Fashion-MNIST test labels.
const BUNDLED_LABELS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/fashion-mnist/t10k-labels-idx1-ubyte.gz"
));

/// Fashion-MNIST class names, in label order (Zalando's README).
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// `n` records of `dim` features each, with one class label per record.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// n × dim, row-major: record `i` is `inputs[i*dim .. (i+1)*dim]`.
    pub inputs: Vec<f32>,
    /// One label per record, each `< classes`.
    pub labels: Vec<u32>,
    pub n: usize,
    pub dim: usize,
    pub classes: usize,
    /// `[channels, height, width]` when the records are images (`c·h·w == dim`).
    pub image: Option<[usize; 3]>,
    /// Shown in logs and errors: a path, or `fashion-mnist/test` and the like.
    pub name: String,
    /// Real-valued regression targets, `targets_per_record` per record (empty for
    /// classification): the adding problem's sums. An MSE plan takes them in place of the
    /// one-hot labels.
    pub targets: Vec<f32>,
}

impl Dataset {
    /// Builds a data set from its parts, checking that the lengths agree, that every label
    /// is below `classes` and that every input is finite.
    pub fn from_parts(
        inputs: Vec<f32>,
        labels: Vec<u32>,
        dim: usize,
        classes: usize,
        image: Option<[usize; 3]>,
        name: impl Into<String>,
    ) -> Result<Self> {
        let name = name.into();
        let n = labels.len();
        if dim == 0 || classes == 0 {
            return Err(Error::data(
                &name,
                format!("dim ({dim}) and classes ({classes}) must both be at least 1"),
            ));
        }
        if n.checked_mul(dim) != Some(inputs.len()) {
            return Err(Error::data(
                &name,
                format!(
                    "{} input values do not make {n} records of {dim} features",
                    inputs.len()
                ),
            ));
        }
        if let Some([c, h, w]) = image
            && c * h * w != dim
        {
            return Err(Error::data(
                &name,
                format!("image shape {c}x{h}x{w} does not have {dim} values"),
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(Error::data(&name, label_out_of_range(i, l, classes)));
        }
        let ds = Dataset {
            inputs,
            labels,
            n,
            dim,
            classes,
            image,
            name,
            targets: Vec::new(),
        };
        ds.check_finite()?;
        Ok(ds)
    }

    /// Reads a pair of IDX files (plain or gzip): images (IDX3, u8) and labels (IDX1, u8).
    /// Pixels are scaled to [0, 1]; labels must be below `classes`.
    pub fn from_idx(images_path: &Path, labels_path: &Path, classes: usize) -> Result<Self> {
        let images = idx::read_images(images_path)?;
        let labels = idx::read_labels(labels_path)?;
        Self::from_idx_parts(images, labels, images_path, labels_path, Some(classes))
    }

    /// As [`Dataset::from_idx`] for bytes already in memory (plain or gzip). The paths only
    /// name the sources in errors and in [`Dataset::name`], e.g.
    /// `<bundled>/t10k-images-idx3-ubyte.gz`.
    pub fn from_idx_bytes(
        images: &[u8],
        labels: &[u8],
        images_path: &Path,
        labels_path: &Path,
        classes: usize,
    ) -> Result<Self> {
        let images = idx::parse_images(&idx::maybe_gunzip(images, images_path)?, images_path)?;
        let labels = idx::parse_labels(&idx::maybe_gunzip(labels, labels_path)?, labels_path)?;
        Self::from_idx_parts(images, labels, images_path, labels_path, Some(classes))
    }

    /// Checks counts and labels, then converts pixels to f32 in [0, 1]. `classes: None`
    /// takes the largest label plus one.
    fn from_idx_parts(
        images: IdxImages,
        labels: Vec<u8>,
        images_path: &Path,
        labels_path: &Path,
        classes: Option<usize>,
    ) -> Result<Self> {
        if images.n != labels.len() {
            return Err(Error::data(
                labels_path,
                format!(
                    "has {} labels but {} has {} images; they must be one label per image",
                    labels.len(),
                    images_path.display(),
                    images.n
                ),
            ));
        }
        if images.n == 0 {
            return Err(Error::data(
                images_path,
                "header says 0 images; nothing to train on",
            ));
        }
        let classes =
            classes.unwrap_or_else(|| labels.iter().copied().max().unwrap_or(0) as usize + 1);
        if classes == 0 {
            return Err(Error::config("the number of classes must be at least 1"));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(Error::data(
                labels_path,
                label_out_of_range(i, l as u32, classes),
            ));
        }
        // 1/255 maps 0..=255 onto [0, 1] exactly at both ends.
        let inputs = images.pixels.iter().map(|&p| p as f32 / 255.0).collect();
        Ok(Dataset {
            inputs,
            labels: labels.into_iter().map(u32::from).collect(),
            n: images.n,
            dim: images.rows * images.cols,
            classes,
            image: Some([1, images.rows, images.cols]),
            name: images_path.display().to_string(),
            targets: Vec::new(),
        })
    }

    /// Regression targets per record (0 for classification data).
    pub fn targets_per_record(&self) -> usize {
        self.targets.len().checked_div(self.n).unwrap_or(0)
    }

    /// Record `i`'s features.
    pub fn record(&self, i: usize) -> &[f32] {
        &self.inputs[i * self.dim..(i + 1) * self.dim]
    }

    /// Counts the records of each class.
    pub fn class_histogram(&self) -> Vec<usize> {
        let mut h = vec![0; self.classes];
        for &l in &self.labels {
            h[l as usize] += 1;
        }
        h
    }

    /// The records at `indices`, in that order, as a new data set named `name`.
    pub fn subset(&self, indices: &[usize], name: impl Into<String>) -> Result<Dataset> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.n) {
            return Err(Error::data(
                &self.name,
                format!("subset index {bad} is past the last record ({})", self.n),
            ));
        }
        let mut inputs = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            inputs.extend_from_slice(self.record(i));
        }
        let per = self.targets_per_record();
        let targets = indices
            .iter()
            .flat_map(|&i| &self.targets[i * per..(i + 1) * per])
            .copied()
            .collect();
        Ok(Dataset {
            inputs,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            n: indices.len(),
            dim: self.dim,
            classes: self.classes,
            image: self.image,
            name: name.into(),
            targets,
        })
    }

    /// Splits into (train, validation) with `round(n · val_fraction)` records in validation,
    /// chosen by a permutation seeded with `seed`: the same seed gives the same split on any
    /// machine. Both parts keep the records in their original order, and both must be
    /// non-empty.
    pub fn split(&self, val_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(val_fraction > 0.0 && val_fraction < 1.0) {
            return Err(Error::config(format!(
                "validation fraction must be strictly between 0 and 1, got {val_fraction}"
            )));
        }
        let n_val = (self.n as f64 * val_fraction).round() as usize;
        if n_val == 0 || n_val >= self.n {
            return Err(Error::config(format!(
                "a validation fraction of {val_fraction} of {} records leaves {n_val} for \
                 validation and {} for training; both must be at least 1",
                self.n,
                self.n.saturating_sub(n_val)
            )));
        }
        let mut perm: Vec<usize> = (0..self.n).collect();
        shuffle(&mut perm, &mut seeded_rng(b"gs-split", seed, 0));
        let (val, train) = perm.split_at_mut(n_val);
        val.sort_unstable();
        train.sort_unstable();
        Ok((
            self.subset(train, format!("{}/train", self.name))?,
            self.subset(val, format!("{}/val", self.name))?,
        ))
    }

    /// Mean and (population) standard deviation over every input value, accumulated in
    /// f64 so that 60 000 × 784 values do not lose the small terms.
    pub fn mean_std(&self) -> (f32, f32) {
        if self.inputs.is_empty() {
            return (0.0, 1.0);
        }
        let count = self.inputs.len() as f64;
        let mean = self.inputs.iter().map(|&x| x as f64).sum::<f64>() / count;
        // Two passes: the one-pass Σx² − n·mean² cancels badly when the mean dominates.
        let var = self
            .inputs
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / count;
        (mean as f32, var.sqrt() as f32)
    }

    /// Replaces every input x by (x − mean) / std. Use the training split's statistics for
    /// every split.
    pub fn standardize(&mut self, mean: f32, std: f32) -> Result<()> {
        if !mean.is_finite() || !std.is_finite() || std <= 0.0 {
            return Err(Error::config(format!(
                "cannot standardize `{}` with mean {mean} and std {std}: the std must be \
                 finite and positive (a data set whose inputs are all equal has std 0)",
                self.name
            )));
        }
        let inv = 1.0 / std;
        for x in &mut self.inputs {
            *x = (*x - mean) * inv;
        }
        Ok(())
    }

    /// Per-channel mean and (population) standard deviation of an image data set, over
    /// every record and pixel of each channel, accumulated in f64 in two passes (as
    /// [`Dataset::mean_std`]). Fails for a data set without an image shape or records.
    pub fn channel_mean_std(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let [c, h, w] = self.image_shape("compute per-channel statistics of")?;
        let hw = h * w;
        let count = (self.n * hw) as f64;
        let channel = |ch: usize| {
            self.inputs
                .chunks_exact(self.dim)
                .flat_map(move |rec| &rec[ch * hw..(ch + 1) * hw])
        };
        let mut means = Vec::with_capacity(c);
        let mut stds = Vec::with_capacity(c);
        for ch in 0..c {
            let mean = channel(ch).map(|&x| x as f64).sum::<f64>() / count;
            let var = channel(ch).map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / count;
            means.push(mean as f32);
            stds.push(var.sqrt() as f32);
        }
        Ok((means, stds))
    }

    /// Replaces every input x of channel c by (x − mean[c]) / std[c]. Use the training
    /// split's statistics for every split. Fails for a data set without an image shape, a
    /// wrong number of channels, or a std that is not finite and positive.
    pub fn standardize_channels(&mut self, mean: &[f32], std: &[f32]) -> Result<()> {
        let [c, h, w] = self.image_shape("standardize the channels of")?;
        if mean.len() != c || std.len() != c {
            return Err(Error::config(format!(
                "cannot standardize `{}` per channel with {} means and {} stds: its images \
                 have {c} channels",
                self.name,
                mean.len(),
                std.len()
            )));
        }
        if let Some(ch) =
            (0..c).find(|&i| !mean[i].is_finite() || !std[i].is_finite() || std[i] <= 0.0)
        {
            return Err(Error::config(format!(
                "cannot standardize channel {ch} of `{}` with mean {} and std {}: the std \
                 must be finite and positive (a channel whose values are all equal has std 0)",
                self.name, mean[ch], std[ch]
            )));
        }
        let hw = h * w;
        let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
        for rec in self.inputs.chunks_exact_mut(self.dim) {
            for (ch, plane) in rec.chunks_exact_mut(hw).enumerate() {
                for x in plane {
                    *x = (*x - mean[ch]) * inv[ch];
                }
            }
        }
        Ok(())
    }

    /// The image shape, or a configuration error saying that `what` needs one.
    fn image_shape(&self, what: &str) -> Result<[usize; 3]> {
        match self.image {
            Some(shape @ [c, h, w]) if c * h * w == self.dim && self.dim > 0 && self.n > 0 => {
                Ok(shape)
            }
            Some(_) | None => Err(Error::config(format!(
                "cannot {what} `{}`: it needs images (a [channels, height, width] shape matching \
                 the {} features) and at least one record; it has shape {:?} and {} records",
                self.name, self.dim, self.image, self.n
            ))),
        }
    }

    /// Fails on the first NaN or infinite input, naming the record and feature.
    pub fn check_finite(&self) -> Result<()> {
        match self.inputs.iter().position(|x| !x.is_finite()) {
            None => Ok(()),
            Some(at) => Err(Error::NonFinite(format!(
                "data set `{}`: record {} feature {} is {}",
                self.name,
                at / self.dim.max(1),
                at % self.dim.max(1),
                self.inputs[at]
            ))),
        }
    }
}

fn label_out_of_range(record: usize, label: u32, classes: usize) -> String {
    format!(
        "label {label} of record {record} is out of range for {classes} classes \
         (labels must be 0..={})",
        classes - 1
    )
}

/// The Fashion-MNIST test split compiled into the binary: 10 000 images of 28×28, 10
/// classes. Named `fashion-mnist/test`.
pub fn bundled_fashion_mnist() -> Result<Dataset> {
    let mut ds = Dataset::from_idx_bytes(
        BUNDLED_IMAGES,
        BUNDLED_LABELS,
        Path::new("<bundled>/t10k-images-idx3-ubyte.gz"),
        Path::new("<bundled>/t10k-labels-idx1-ubyte.gz"),
        FASHION_MNIST_CLASSES.len(),
    )?;
    ds.name = "fashion-mnist/test".into();
    Ok(ds)
}

/// File stems `load_dir` looks for; each is tried as is and with `.gz`. The second
/// spelling (a dot before `idx`) is the one of some mirrors of MNIST.
const TRAIN_IMAGES: [&str; 2] = ["train-images-idx3-ubyte", "train-images.idx3-ubyte"];
const TRAIN_LABELS: [&str; 2] = ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"];
const TEST_IMAGES: [&str; 2] = ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"];
const TEST_LABELS: [&str; 2] = ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"];

/// Loads an MNIST-layout directory: the training pair `train-images-idx3-ubyte[.gz]` and
/// `train-labels-idx1-ubyte[.gz]` (required) and the test pair `t10k-…` (optional, but
/// both files or neither). The number of classes is the largest label in either split
/// plus one. Names are `<dir>/train` and `<dir>/test`.
pub fn load_dir(dir: &Path) -> Result<(Dataset, Option<Dataset>)> {
    if !dir.is_dir() {
        return Err(Error::data(dir, "not a directory"));
    }
    let train_images = find(dir, &TRAIN_IMAGES);
    let train_labels = find(dir, &TRAIN_LABELS);
    let (Some(train_images), Some(train_labels)) = (train_images.clone(), train_labels.clone())
    else {
        let missing: Vec<String> = [(train_images, &TRAIN_IMAGES), (train_labels, &TRAIN_LABELS)]
            .iter()
            .filter(|(found, _)| found.is_none())
            .map(|(_, stems)| looked_for(&stems[..]))
            .collect();
        return Err(Error::data(
            dir,
            format!(
                "no training set found: looked for {} (each also with .gz)",
                missing.join(" and ")
            ),
        ));
    };
    let test = match (find(dir, &TEST_IMAGES), find(dir, &TEST_LABELS)) {
        (Some(i), Some(l)) => Some((i, l)),
        (None, None) => None,
        (Some(i), None) => {
            return Err(Error::data(
                &i,
                format!(
                    "test images found but no test labels: looked for {} (each also with .gz)",
                    looked_for(&TEST_LABELS)
                ),
            ));
        }
        (None, Some(l)) => {
            return Err(Error::data(
                &l,
                format!(
                    "test labels found but no test images: looked for {} (each also with .gz)",
                    looked_for(&TEST_IMAGES)
                ),
            ));
        }
    };

    let tr_images = idx::read_images(&train_images)?;
    let tr_labels = idx::read_labels(&train_labels)?;
    let test_raw = match &test {
        Some((i, l)) => Some((idx::read_images(i)?, idx::read_labels(l)?)),
        None => None,
    };
    // One class count for both splits, so that a model built for train fits test.
    let max_label = tr_labels
        .iter()
        .chain(test_raw.iter().flat_map(|(_, l)| l.iter()))
        .copied()
        .max()
        .unwrap_or(0);
    let classes = Some(max_label as usize + 1);

    let mut train =
        Dataset::from_idx_parts(tr_images, tr_labels, &train_images, &train_labels, classes)?;
    train.name = format!("{}/train", dir.display());
    let test = match (test, test_raw) {
        (Some((ip, lp)), Some((images, labels))) => {
            let mut ds = Dataset::from_idx_parts(images, labels, &ip, &lp, classes)?;
            ds.name = format!("{}/test", dir.display());
            if ds.dim != train.dim || ds.image != train.image {
                return Err(Error::data(
                    &ip,
                    format!(
                        "test images are {:?} but training images are {:?} (channels, height, width)",
                        ds.image.unwrap_or_default(),
                        train.image.unwrap_or_default()
                    ),
                ));
            }
            Some(ds)
        }
        _ => None,
    };
    Ok((train, test))
}

/// The first of `stem` or `stem.gz` that exists in `dir`, for each stem in order.
fn find(dir: &Path, stems: &[&str]) -> Option<PathBuf> {
    stems
        .iter()
        .flat_map(|s| [dir.join(s), dir.join(format!("{s}.gz"))])
        .find(|p| p.is_file())
}

fn looked_for(stems: &[&str]) -> String {
    stems.join(" or ")
}

/// A ChaCha8 generator keyed by a domain tag, the user's seed and a stream number, so that
/// the split and each epoch's shuffle draw from independent streams of the same seed.
pub(crate) fn seeded_rng(tag: &[u8; 8], seed: u64, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(tag);
    key[8..16].copy_from_slice(&seed.to_le_bytes());
    key[16..24].copy_from_slice(&stream.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// Fisher–Yates shuffle. Written out rather than taken from `rand::seq` so that the order
/// for a given seed cannot change with a `rand` upgrade: saved loader cursors and splits
/// of old runs stay valid.
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// Uniform integer in `0..bound` (bound ≥ 1) by Lemire's multiply-and-reject method,
/// which has no modulo bias.
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = rng.next_u64() as u128 * bound as u128;
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}
