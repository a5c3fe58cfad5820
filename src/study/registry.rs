//! The built-in studies by name. Each entry builds its grid for a size and says in words
//! what its results show; adding a study is one more file in `builtin/` and one more
//! entry in `BUILTINS`.

use std::path::PathBuf;

use super::builtin::{
    clipping, depth_activation, initialization, normalization, optimizers, recurrent, shortcuts,
};
use super::measure::RunResult;
use super::spec::{Size, StudySpec};
use crate::error::Result;

/// What a study may need from the invocation to build its grid.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// The study's directory (a study may write model files there).
    pub dir: PathBuf,
    /// `--data`, when given (the shortcuts study trains on CIFAR-10 batches if so).
    pub data: Option<PathBuf>,
}

/// One built-in study.
pub struct Builtin {
    pub name: &'static str,
    /// One line for `gradscope study --list`.
    pub about: &'static str,
    pub build: fn(Size, &Context) -> Result<StudySpec>,
    /// Plain sentences from the numbers, for the top of the report.
    pub summarize: fn(&StudySpec, &[RunResult]) -> Vec<String>,
}

pub const BUILTINS: &[Builtin] = &[
    depth_activation::STUDY,
    initialization::STUDY,
    normalization::STUDY,
    shortcuts::STUDY,
    clipping::STUDY,
    optimizers::STUDY,
    recurrent::STUDY,
];

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}
