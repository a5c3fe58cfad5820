//! `gradscope export RUN_DIR [--out FILE]`: the trained parameters of a run, without the
//! optimizer state, as a safetensors file that PyTorch loads with
//! `model.load_state_dict(safetensors.torch.load_file(FILE))`.

use std::path::PathBuf;

use clap::Args;

use gradscope::Result;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The run directory (its newest valid checkpoint is exported).
    run_dir: PathBuf,
    /// Output file (default RUN_DIR/model.safetensors).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let path = gradscope::checkpoint::export(&args.run_dir, args.out.as_deref())?;
    println!("wrote {}", path.display());
    Ok(())
}
