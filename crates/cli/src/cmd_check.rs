//! `stepforge check`: owned by the checker work (issue 3); wired here so the CLI builds.

use std::path::PathBuf;

use crate::{Format, Status, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub task: PathBuf,
    #[arg(long = "impl")]
    pub impl_file: Option<PathBuf>,
    #[arg(long)]
    pub fix: bool,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(_args: &Args) -> Status {
    output::error("`check` is not built yet");
    Status::Usage
}
