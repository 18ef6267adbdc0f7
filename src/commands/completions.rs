//! `dr completions SHELL`: a completion script for the shell, generated from the CLI
//! definition itself, so it never lags behind a new flag.

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::output;

pub fn run(args: CompletionsArgs) -> Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "dr", &mut script);
    output::emit(&String::from_utf8_lossy(&script));
    Ok(0)
}
