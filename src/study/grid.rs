//! From a study to its runs: every combination of the axes' levels, each turned into a
//! `TrainConfig` through the same layers `gradscope train` uses (defaults, then a preset,
//! then settings), so an axis can be any flag of `gradscope train`, and a key that is not
//! one is refused with the axis that names it.

use std::path::{Path, PathBuf};

use super::spec::StudySpec;
use crate::config::{TrainConfig, presets};
use crate::error::{Error, Result};

/// One run of a study.
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// Directory name inside the study directory, built from the labels.
    pub id: String,
    /// (axis name, level label) for every axis, in axis order.
    pub labels: Vec<(String, String)>,
    /// The run's full configuration, its run directory included.
    pub config: TrainConfig,
}

impl RunPlan {
    /// "sigmoid, depth 10": the labels joined, for legends and tables.
    pub fn label(&self) -> String {
        self.labels
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The label of axis `name`.
    pub fn level(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(a, _)| a == name)
            .map(|(_, l)| l.as_str())
    }
}

/// Keys a study sets itself: a run's directory is the study's to choose.
const RESERVED: &[&str] = &["run_dir"];

/// `gradscope train` flags are spelled with dashes, config keys with underscores.
fn key_of(flag: &str) -> String {
    flag.replace('-', "_")
}

/// Lays `table` over `config`, naming `what` (an axis, or the base) in every error.
fn overlay(config: &TrainConfig, table: &toml::Table, what: &str) -> Result<TrainConfig> {
    let mut table: toml::Table = table.iter().map(|(k, v)| (key_of(k), v.clone())).collect();
    let mut config = config.clone();
    if let Some(preset) = table.remove("preset") {
        let name = preset
            .as_str()
            .ok_or_else(|| Error::config(format!("{what}: `preset` must be a preset's name")))?;
        let text = presets::find(name).ok_or_else(|| {
            Error::config(format!(
                "{what}: unknown preset `{name}`; use one of {}",
                presets::names().join(", ")
            ))
        })?;
        config = config.overlay_toml(text, Path::new("<preset>"))?;
    }
    for key in table.keys() {
        if RESERVED.contains(&key.as_str()) {
            return Err(Error::config(format!(
                "{what}: `{key}` is chosen by the study (each run gets its own directory inside \
                 the study's); remove it"
            )));
        }
        // Each key alone first, so an unknown one is named with the axis that holds it.
        let mut base = toml::Table::try_from(TrainConfig::default())
            .map_err(|e| Error::config(e.to_string()))?;
        base.insert(key.clone(), table[key].clone());
        let merged = toml::to_string(&base).map_err(|e| Error::config(e.to_string()))?;
        if let Err(e) = toml::from_str::<TrainConfig>(&merged) {
            let msg = e.message().to_string();
            return Err(Error::config(if msg.contains("unknown field") {
                format!(
                    "{what}: `{key}` is not a setting of `gradscope train` ({msg}, or `preset`)"
                )
            } else {
                format!("{what}: bad value for `{key}`: {msg}")
            }));
        }
    }
    let text = toml::to_string(&table).map_err(|e| Error::config(e.to_string()))?;
    config.overlay_toml(&text, Path::new(what))
}

/// A directory name from labels: letters, digits, '.', '-' and '_' only.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// Every run of `spec`, in row-major order of the axes (the last axis varies fastest),
/// each with its directory under `dir`. `overrides` (the command line's settings, e.g.
/// `device`) are laid over every run last.
pub fn expand(spec: &StudySpec, dir: &Path, overrides: &toml::Table) -> Result<Vec<RunPlan>> {
    let base = overlay(
        &TrainConfig::default(),
        &spec.base,
        &format!("study `{}`, base", spec.name),
    )?;
    let mut runs = vec![(Vec::<(String, String)>::new(), base)];
    for axis in &spec.axes {
        let mut next = Vec::with_capacity(runs.len() * axis.levels.len());
        for (labels, config) in &runs {
            for level in &axis.levels {
                let what = format!("study `{}`, axis `{}`", spec.name, axis.name);
                let c = overlay(config, &level.settings, &what)?;
                let mut l = labels.clone();
                l.push((axis.name.clone(), level.label.clone()));
                next.push((l, c));
            }
        }
        runs = next;
    }
    let mut plans = Vec::with_capacity(runs.len());
    for (labels, config) in runs {
        let what = format!("study `{}`, command line", spec.name);
        let mut config = overlay(&config, overrides, &what)?;
        let id = slug(
            &labels
                .iter()
                .map(|(a, l)| format!("{a}-{l}"))
                .collect::<Vec<_>>()
                .join("_"),
        );
        let id = if id.is_empty() { "run".to_string() } else { id };
        if plans.iter().any(|p: &RunPlan| p.id == id) {
            return Err(Error::config(format!(
                "study `{}`: two runs would share the directory `{id}`; give the levels \
                 distinct labels",
                spec.name
            )));
        }
        config.run_dir = Some(dir.join(&id));
        config
            .validate()
            .map_err(|e| Error::config(format!("study `{}`, run `{id}`: {e}", spec.name)))?;
        plans.push(RunPlan { id, labels, config });
    }
    Ok(plans)
}

/// The directory a study writes into by default: runs/study-<name>.
pub fn default_dir(name: &str) -> PathBuf {
    PathBuf::from("runs").join(format!("study-{}", slug(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::spec::{Axis, Level};

    fn spec(base: toml::Table, axes: Vec<Axis>) -> StudySpec {
        StudySpec {
            name: "t".into(),
            title: "t".into(),
            question: String::new(),
            base,
            axes,
            x_axis: None,
        }
    }

    #[test]
    fn presets_flags_with_dashes_and_compound_levels_expand() {
        let mut base = toml::Table::new();
        base.insert("preset".into(), "deep-sigmoid".into());
        base.insert("max-steps".into(), 7.into());
        let clip = Axis {
            name: "clipping".into(),
            levels: vec![
                Level {
                    label: "none".into(),
                    settings: toml::Table::new(),
                },
                Level {
                    label: "norm 1".into(),
                    settings: [("clip-norm".to_string(), toml::Value::from(1.0))]
                        .into_iter()
                        .collect(),
                },
            ],
        };
        let widths = Axis::over("width", [8.into(), 16.into()]);
        let runs = expand(
            &spec(base, vec![widths, clip]),
            Path::new("d"),
            &toml::Table::new(),
        )
        .unwrap();
        assert_eq!(runs.len(), 4);
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "width-8_clipping-none",
                "width-8_clipping-norm_1",
                "width-16_clipping-none",
                "width-16_clipping-norm_1"
            ]
        );
        for r in &runs {
            // The preset's settings, under the base's and the levels'.
            assert_eq!(r.config.activation, "sigmoid");
            assert_eq!(r.config.depth, 10);
            assert_eq!(r.config.max_steps, 7);
            assert_eq!(
                r.config.run_dir.as_deref(),
                Some(Path::new("d").join(&r.id).as_path())
            );
        }
        assert_eq!(runs[1].config.clip_norm, Some(1.0));
        assert_eq!(runs[0].config.clip_norm, None);
        assert_eq!(runs[2].config.width, 16);
        assert_eq!(runs[3].label(), "16, norm 1");
    }

    #[test]
    fn overrides_come_last_and_duplicate_directories_are_refused() {
        let axis = Axis::over("lr", [0.1.into(), 0.2.into()]);
        let mut over = toml::Table::new();
        over.insert("lr".into(), 0.5.into());
        let runs = expand(&spec(toml::Table::new(), vec![axis]), Path::new("d"), &over).unwrap();
        assert!(runs.iter().all(|r| r.config.lr == 0.5));
        let twice = Axis::over("depth", [2.into(), 2.into()]);
        let err = expand(
            &spec(toml::Table::new(), vec![twice]),
            Path::new("d"),
            &over,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("share the directory `depth-2`"), "{err}");
        let mut bad = toml::Table::new();
        bad.insert("preset".into(), "deep".into());
        let err = expand(&spec(bad, vec![]), Path::new("d"), &toml::Table::new())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown preset `deep`"), "{err}");
    }
}
