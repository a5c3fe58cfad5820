//! The checkpoints of a run directory: `RUN_DIR/checkpoints/step-000123.safetensors`,
//! written atomically, the newest `keep` kept, the newest readable one found on resume.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::atomic::{clean_temporaries, sync_dir};
use super::format::{self, TensorFile};
use super::state::progress_of;
use crate::error::{Error, Result};

/// `RUN_DIR/checkpoints`.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// The file name of the checkpoint after `step`.
pub fn file_name(step: u64) -> String {
    format!("step-{step:06}.safetensors")
}

/// The step a checkpoint file name stands for (`None` for any other file).
pub fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// Creates the checkpoint directory if needed and removes temporary files left by a killed
/// writer.
pub fn prepare(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    clean_temporaries(dir)
}

/// Removes every checkpoint of `dir` (a fresh run reusing a run directory: its old
/// checkpoints belong to another run, whose metrics log is being replaced too).
pub fn remove_all(dir: &Path) -> Result<usize> {
    let all = list(dir)?;
    for (_, path) in &all {
        fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    Ok(all.len())
}

/// Every checkpoint file of `dir`, newest (highest step) first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(step) = step_of(&entry.file_name().to_string_lossy()) {
            out.push((step, entry.path()));
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.0));
    Ok(out)
}

/// Removes all but the newest `keep` checkpoints (at least one is always kept).
pub fn prune(dir: &Path, keep: usize) -> Result<()> {
    let all = list(dir)?;
    let mut removed = false;
    for (_, path) in all.iter().skip(keep.max(1)) {
        fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        removed = true;
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The newest checkpoint of `dir` that reads back whole, with the files skipped on the way
/// (newer ones that failed to read, each with its error).
pub fn newest_valid(dir: &Path) -> Result<(TensorFile, Vec<Error>)> {
    let mut skipped = Vec::new();
    for (_, path) in list(dir)? {
        match format::read(&path).and_then(|f| progress_of(&f).map(|_| f)) {
            Ok(file) => return Ok((file, skipped)),
            Err(e) => skipped.push(e),
        }
    }
    let mut reason = format!("no readable checkpoint in {}", dir.display());
    for e in &skipped {
        reason.push_str(&format!("; {e}"));
    }
    Err(Error::checkpoint(dir, reason))
}

/// Cuts a metrics log back to what a run resumed after `step` has not yet redone: every
/// line up to the first one that is either a step after `step` or any other line (an
/// evaluation) at or after `step` — the checkpoint of a step is written before that step's
/// epoch-end evaluation, so the resumed run writes that evaluation again. A torn last line
/// (a kill in mid-write) is cut as well. Returns the number of lines kept.
pub fn truncate_metrics(path: &Path, step: u64) -> Result<usize> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut reader = BufReader::new(file);
    let (mut keep_bytes, mut kept) = (0u64, 0usize);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            break;
        };
        let s = v.get("step").and_then(|s| s.as_u64()).unwrap_or(u64::MAX);
        let is_step = v.get("kind").and_then(|k| k.as_str()) == Some("step");
        if (is_step && s > step) || (!is_step && s >= step) {
            break;
        }
        keep_bytes += n as u64;
        kept += 1;
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.set_len(keep_bytes).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(kept)
}
