//! The summary of a user's study, which has no built-in reading: for every run the
//! first/last gradient ratio at initialization and at the end, and which run reached the
//! lowest training loss.

use super::measure::RunResult;
use super::sentences::{num, ratio};
use super::spec::StudySpec;

pub fn summarize(_: &StudySpec, runs: &[RunResult]) -> Vec<String> {
    let mut out: Vec<String> = runs
        .iter()
        .map(|r| match &r.error {
            Some(e) => format!("{}: stopped at a non-finite value ({e}).", r.label()),
            None => format!(
                "{}: the first layer's gradient is {} at initialization and {} after {} steps \
                 (loss {} → {}).",
                r.label(),
                ratio(r.init_ratio),
                ratio(r.end_ratio),
                r.steps,
                num(r.first_loss),
                num(r.final_loss)
            ),
        })
        .collect();
    if let Some(best) = runs
        .iter()
        .filter(|r| r.final_loss.is_finite())
        .min_by(|a, b| a.final_loss.total_cmp(&b.final_loss))
        && runs.len() > 1
    {
        out.insert(
            0,
            format!(
                "{} reached the lowest training loss ({}).",
                best.label(),
                num(best.final_loss)
            ),
        );
    }
    out
}
