//! `dr`: parse the command line, set up logging, run it, exit with its code.

use clap::Parser;

fn main() {
    let cli = dr::cli::Cli::parse();
    dr::output::stderr::init(cli.verbose, cli.quiet);
    std::process::exit(dr::run(cli));
}
