//! Data loading: IDX files (MNIST format) and CIFAR-10 binary batches into an in-memory
//! [`Dataset`] ([`load_any`] tells them apart), a [`BatchLoader`] that hands out seeded
//! shuffled mini-batches into preallocated buffers, and seeded in-place image
//! augmentation ([`Augment`]).
//! The Fashion-MNIST test split is bundled (assets/fashion-mnist) so a first run needs no
//! download.

pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod idx;
pub mod loader;
pub mod sequence;

pub use augment::Augment;
pub use cifar::{CIFAR10_CLASSES, load_cifar_dir};
pub use dataset::{Dataset, FASHION_MNIST_CLASSES, bundled_fashion_mnist, load_dir};
pub use loader::{BatchLoader, Cursor, one_hot};

use std::path::Path;

use crate::{Error, Result};

/// Loads `--data PATH` in whichever format it holds: a `.bin` file, or a directory with
/// `data_batch_<N>.bin` / `test_batch.bin`, is CIFAR-10 ([`load_cifar_dir`]); any other
/// directory is read as MNIST-layout IDX files ([`load_dir`]).
pub fn load_any(path: &Path) -> Result<(Dataset, Option<Dataset>)> {
    if path.is_file() {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("bin"))
        {
            return load_cifar_dir(path);
        }
        return Err(Error::data(
            path,
            "is a file, but not a CIFAR-10 .bin batch: give a directory of IDX files \
             (train-images-idx3-ubyte, ...) or of CIFAR-10 batches (data_batch_1.bin, ...), \
             or one CIFAR-10 .bin file",
        ));
    }
    if !path.is_dir() {
        return Err(Error::data(
            path,
            "not found: expected a directory of IDX files (train-images-idx3-ubyte, ...) or \
             of CIFAR-10 batches (data_batch_1.bin, ...), or one CIFAR-10 .bin file",
        ));
    }
    if cifar::is_cifar_dir(path) {
        return load_cifar_dir(path);
    }
    load_dir(path).map_err(|e| match e {
        // Nothing of either format: say that CIFAR-10 was looked for too.
        Error::Data { path: p, reason } if p == path => Error::data(
            p,
            format!("{reason}; nor CIFAR-10 batches data_batch_<N>.bin or test_batch.bin"),
        ),
        e => e,
    })
}
