//! TensorBoard event files, written without TensorFlow: the TFRecord framing (`record.rs`),
//! a hand-written encoder for the few protobuf messages an event needs (`proto.rs`), and a
//! writer that turns the run's step and eval logs into scalars and histograms (`writer.rs`).
//!
//! No maintained crate writes these cleanly, and the format is small: every record is
//! `u64 length | masked CRC32C(length) | Event bytes | masked CRC32C(Event bytes)`.

pub mod proto;
pub mod record;
pub mod writer;

pub use proto::{Histogram, Value};
pub use record::{masked_crc32c, read_records, write_record};
pub use writer::EventWriter;
