//! `dr`: parse the command line, set up logging, run it, exit with its code.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;

fn main() {
    let cli = match dr::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let asked = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            if !asked && dr::json_requested() {
                let message = e
                    .kind()
                    .as_str()
                    .unwrap_or("invalid command line")
                    .to_string();
                let detail = e.to_string();
                let first = detail
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                eprint!("{e}");
                dr::output::emit(&dr::output::error_document(
                    &format!("{first}; hint: `dr --help` lists the commands and flags ({message})"),
                    2,
                ));
                std::process::exit(2);
            }
            e.exit();
        }
    };
    dr::output::stderr::init(cli.verbose, cli.quiet);
    std::process::exit(dr::run(cli));
}
