//! `gradscope study [NAME]`: a built-in study or a TOML grid, run (or continued) in one
//! directory, with a line per run and the report's path at the end.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use gradscope::study::sentences::{num, power_of_ten, ratio};
use gradscope::study::{
    self, BUILTINS, Context, RunOptions, RunPlan, RunResult, RunStatus, Size, Study, StudyObserver,
};
use gradscope::{Error, Result};

#[derive(Args, Debug)]
pub struct StudyArgs {
    /// depth-and-activation, initialization, normalization, shortcuts, clipping or
    /// optimizers (see --list).
    name: Option<String>,
    /// A study file instead: a base and axes over any `gradscope train` setting.
    #[arg(long, value_name = "STUDY.toml")]
    file: Option<PathBuf>,
    /// The small version: a few steps of small networks, seconds on a CPU.
    #[arg(long)]
    quick: bool,
    /// Where the runs and the report go (default runs/study-NAME[-quick]); running the
    /// same study into the same directory again continues it, skipping finished runs.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// auto, gpu or cpu, for every run.
    #[arg(long)]
    device: Option<String>,
    /// Data for every run (CIFAR-10 batches for the shortcuts study); default: bundled.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Any `gradscope train` setting for every run, as KEY=VALUE (repeatable), e.g.
    /// --set max_steps=50 --set lr=0.01.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Train at most this many runs now, then write the report (continue later).
    #[arg(long)]
    max_runs: Option<usize>,
    /// List the built-in studies.
    #[arg(long)]
    list: bool,
}

/// A KEY=VALUE setting as TOML: the value as TOML if it parses (numbers, booleans,
/// arrays), else as a string.
fn setting(text: &str) -> Result<(String, toml::Value)> {
    let (k, v) = text.split_once('=').ok_or_else(|| {
        Error::config(format!(
            "--set `{text}`: write KEY=VALUE, e.g. --set lr=0.01"
        ))
    })?;
    let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::from(v));
    Ok((k.trim().replace('-', "_"), value))
}

struct Console {
    started: Option<Instant>,
}

impl StudyObserver for Console {
    fn run_starting(&mut self, i: usize, n: usize, plan: &RunPlan, resuming: bool) {
        self.started = Some(Instant::now());
        eprintln!(
            "[{}/{n}] {} … {}",
            i + 1,
            plan.label(),
            if resuming { "continuing" } else { "training" }
        );
    }

    fn run_done(&mut self, i: usize, n: usize, r: &RunResult, status: &RunStatus) {
        let how = match status {
            RunStatus::Skipped => "finished earlier, skipped".to_string(),
            _ => format!(
                "{:.1} s",
                self.started.map_or(0.0, |t| t.elapsed().as_secs_f64())
            ),
        };
        let what = match &r.error {
            Some(e) => format!("stopped: {e}"),
            // A recurrent net's story is the gradient through time, not across layers.
            None if r.init_hidden_ratio.is_finite() => format!(
                "‖∂L/∂h_0‖/‖∂L/∂h_T‖ {} at init; loss {} → {}",
                power_of_ten(r.init_hidden_ratio),
                num(r.first_loss),
                num(r.final_loss)
            ),
            None => format!(
                "first layer's gradient {} at init; loss {} → {}",
                ratio(r.init_ratio),
                num(r.first_loss),
                num(r.final_loss)
            ),
        };
        eprintln!("[{}/{n}] {}: {what} ({how})", i + 1, r.label());
    }
}

pub fn run(args: &StudyArgs) -> Result<()> {
    if args.list || (args.name.is_none() && args.file.is_none()) {
        println!("Built-in studies (gradscope study NAME [--quick]):");
        for b in BUILTINS {
            println!("  {:<22} {}", b.name, b.about);
        }
        println!("Or a grid of your own: gradscope study --file STUDY.toml");
        return Ok(());
    }
    let size = if args.quick { Size::Quick } else { Size::Full };
    let name = match (&args.name, &args.file) {
        (Some(_), Some(_)) => {
            return Err(Error::config("give a study NAME or --file, not both"));
        }
        (Some(n), None) => n.clone(),
        (None, Some(f)) => f
            .file_stem()
            .map_or("study".into(), |s| s.to_string_lossy().into_owned()),
        (None, None) => unreachable!("handled above"),
    };
    let dir = args.dir.clone().unwrap_or_else(|| {
        study::grid::default_dir(&if args.quick {
            format!("{name}-quick")
        } else {
            name.clone()
        })
    });
    let ctx = Context {
        dir: dir.clone(),
        data: args.data.clone(),
    };
    let study = match &args.file {
        Some(f) => Study::from_file(f)?,
        None => Study::builtin(&name, size, &ctx)?,
    };
    let mut overrides = toml::Table::new();
    for s in &args.set {
        let (k, v) = setting(s)?;
        overrides.insert(k, v);
    }
    if let Some(d) = &args.device {
        overrides.insert("device".into(), toml::Value::from(d.as_str()));
    }
    if let Some(d) = &args.data {
        overrides.insert(
            "data".into(),
            toml::Value::from(d.to_string_lossy().as_ref()),
        );
    }
    let options = RunOptions {
        stop_after: args.max_runs,
    };
    let outcome = study::run(
        &study,
        &dir,
        &overrides,
        &options,
        &mut Console { started: None },
    )?;
    println!("{}", study.spec.title);
    for line in &outcome.summary {
        println!("  {line}");
    }
    if outcome.results.len() < outcome.plans.len() {
        println!(
            "{} of {} runs finished; run the same command again to continue.",
            outcome.results.len(),
            outcome.plans.len()
        );
    }
    println!("{}", outcome.report.html.display());
    Ok(())
}
