//! `dr`: parse, set up logging, run the command, map the outcome to an exit code.

mod backup;
mod checks;
mod cli;
mod codec;
mod commands;
mod config;
mod demo;
mod drill;
mod encryption;
mod error;
mod leftovers;
mod metrics;
mod notify;
mod output;
mod pg;
mod process;
mod prune;
mod redis_backup;
mod redis_client;
mod report;
mod restore;
mod runbook;
mod sandbox;
mod scorecard;
mod secret;
mod storage;
mod units;
mod version;
mod wal;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    output::stderr::init(cli.verbose, cli.quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        // A file-size limit (SIGXFSZ) must fail the write, not kill dr before it cleans up:
        // listening for the signal replaces its default action.
        let _file_size_limit = tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::from_raw(nix::libc::SIGXFSZ),
        );
        tokio::select! {
            result = commands::dispatch(cli) => result,
            // Dropping the command's future kills its children and removes temporary data.
            () = shutdown_signal() => Err(anyhow::Error::new(error::Interrupted::now())),
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    let code = match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "error: {}",
                error::tidy_message(&secret::redact_url(&format!("{e:#}")))
            );
            error::exit_code(&e)
        }
    };
    std::process::exit(code);
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::warn!("interrupted: stopping children and removing temporary data");
}
