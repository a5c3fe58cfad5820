//! The one error type of the crate. Every variant names what went wrong and, where there is
//! one, what to change. Library code returns these; only `main` prints them.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched, or none exists.
    #[error(
        "no GPU adapter found{detail}; run `gradscope devices` to list adapters, or use `--device cpu`"
    )]
    NoAdapter { detail: String },

    /// The adapter was found but refused to give us a device.
    #[error("could not open a device on adapter `{adapter}`: {reason}")]
    DeviceRequest { adapter: String, reason: String },

    /// A wgpu validation or out-of-memory error, caught by our handler instead of a panic.
    #[error("GPU error during {during}: {message}")]
    Gpu { during: String, message: String },

    /// The device was lost (driver reset, GPU removed, timeout).
    #[error(
        "the GPU device was lost ({reason}); the last checkpoint is intact: continue with `gradscope train --resume RUN_DIR`"
    )]
    DeviceLost { reason: String },

    /// A tensor would not fit the device's limits.
    #[error(
        "tensor `{tensor}` needs {bytes} bytes but the adapter allows at most {limit} bytes per {what}; \
         reduce the batch size or the layer width"
    )]
    TooLarge {
        tensor: String,
        bytes: u64,
        limit: u64,
        what: &'static str,
    },

    /// More host memory than the machine has available.
    #[error(
        "{what} needs {} of memory but this machine has {} available; {fix}",
        crate::host_memory::readable(*needs),
        crate::host_memory::readable(*available)
    )]
    HostMemory {
        what: String,
        needs: u64,
        available: u64,
        fix: String,
    },

    /// Two shapes that must agree do not.
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: String, detail: String },

    /// A WGSL shader failed to compile (a bug of ours, reported with the shader's name).
    #[error("shader `{shader}` failed to compile: {message}")]
    Shader { shader: String, message: String },

    /// An invalid setting in a config file or on the command line.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A malformed data file.
    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },

    /// A checkpoint or weights file that cannot be used: unreadable, malformed, or not
    /// matching the model. `reason` names the fault (and the tensor, with expected vs found).
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },

    /// Non-finite values where finite ones are required.
    #[error("non-finite value: {0}")]
    NonFinite(String),

    /// GPU kernels whose results disagree with their CPU twins beyond the tolerance
    /// (`gradscope bench`'s correctness check), one line per kernel.
    #[error("{count} GPU result(s) disagree with the CPU twin:\n{details}")]
    Disagreement { count: usize, details: String },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    pub fn shape(op: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Shape {
            op: op.into(),
            detail: detail.into(),
        }
    }

    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The error of reading `file`, which every run directory holds, from `run_dir`: a
    /// missing file says that `run_dir` is no run directory and what to give instead.
    pub fn run_dir_file(run_dir: &std::path::Path, file: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::config(format!(
                "{} is not a run directory: it has no {file} (give a directory that \
                 `gradscope train` wrote: runs/<time>-<name>, or its --run-dir)",
                run_dir.display()
            ))
        } else {
            Error::io(run_dir.join(file), source)
        }
    }
}
