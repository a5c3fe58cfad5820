//! Per-layer gradient statistics: the record layout, the per-layer view derived from a
//! step's records, and the console table.

pub mod layer;
pub mod record;
pub mod table;

pub use layer::{LayerStats, layer_stats, total_grad_norm};
pub use record::{HIST_BIN_WIDTH, HIST_BINS, HIST_LOG2_LO, RECORD_WORDS, RawStats, TensorStats};
