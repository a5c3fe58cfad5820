//! Data loading: IDX files (MNIST format) into an in-memory [`Dataset`], and a
//! [`BatchLoader`] that hands out seeded shuffled mini-batches into preallocated buffers.
//! The Fashion-MNIST test split is bundled (assets/fashion-mnist) so a first run needs no
//! download.

pub mod dataset;
pub mod idx;
pub mod loader;

pub use dataset::{Dataset, FASHION_MNIST_CLASSES, bundled_fashion_mnist, load_dir};
pub use loader::{BatchLoader, Cursor, one_hot};
