//! `gradscope report RUN_DIR`: pictures of a run's gradient flow and one HTML page.

use std::path::PathBuf;

use clap::Args;

use gradscope::Result;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run directory written by `gradscope train` (holds metrics.jsonl).
    run_dir: PathBuf,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let report = gradscope::report::generate(&args.run_dir)?;
    for p in &report.pictures {
        println!("{}", p.png.display());
        println!("{}", p.svg.display());
    }
    println!("{}", report.html.display());
    if report.findings > 0 {
        println!(
            "{} finding(s) from summary.json shown on the page",
            report.findings
        );
    }
    Ok(())
}
