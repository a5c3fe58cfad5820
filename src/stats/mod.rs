//! Per-layer gradient statistics: the record layout, and what is derived from it.

pub mod record;

pub use record::{HIST_BINS, RECORD_WORDS, RawStats, TensorStats};
