//! The built-in studies, one file each: how its grid is built at each size, and the
//! sentences its summary says. They share the settings below so that their runs are
//! comparable: a few steps (quick) or a few hundred (full), statistics
//! every step (quick) or every tenth step (full), a checkpoint every 50 steps (full) so a
//! stopped study resumes mid-run, no TensorBoard files.

pub mod clipping;
pub mod depth_activation;
pub mod initialization;
pub mod normalization;
pub mod optimizers;
pub mod recurrent;
pub mod shortcuts;

use toml::Value;

use super::spec::{Axis, Level, Size};

/// A TOML table from (key, value) pairs.
pub fn table(pairs: &[(&str, Value)]) -> toml::Table {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Strings as TOML values.
pub fn strings(values: &[&str]) -> Vec<Value> {
    values.iter().map(|s| Value::from(*s)).collect()
}

/// Integers as TOML values.
pub fn ints(values: &[i64]) -> Vec<Value> {
    values.iter().map(|&i| Value::from(i)).collect()
}

/// A level with a label and settings.
pub fn level(label: &str, settings: &[(&str, Value)]) -> Level {
    Level {
        label: label.to_string(),
        settings: table(settings),
    }
}

/// An axis of labelled levels.
pub fn axis(name: &str, levels: Vec<Level>) -> Axis {
    Axis {
        name: name.to_string(),
        levels,
    }
}

/// What every built-in run shares at `size`: `steps` = (quick, full) training steps,
/// `batch` = (quick, full) batch size.
pub fn common(size: Size, steps: (i64, i64), batch: (i64, i64)) -> toml::Table {
    let (steps, batch, stats_every, checkpoint_every) = match size {
        Size::Quick => (steps.0, batch.0, 1, 0),
        Size::Full => (steps.1, batch.1, 10, 50),
    };
    table(&[
        // Enough epochs that `max_steps` ends every run (the bundled set has 70 batches of
        // 128 an epoch).
        ("epochs", Value::from(1000)),
        ("max_steps", Value::from(steps)),
        ("batch_size", Value::from(batch)),
        ("stats_every", Value::from(stats_every)),
        ("checkpoint_every", Value::from(checkpoint_every)),
        ("keep_checkpoints", Value::from(1)),
        ("tensorboard", Value::from(false)),
        ("seed", Value::from(0)),
    ])
}

/// Adds `pairs` to `t`.
pub fn with(mut t: toml::Table, pairs: &[(&str, Value)]) -> toml::Table {
    for (k, v) in pairs {
        t.insert(k.to_string(), v.clone());
    }
    t
}
