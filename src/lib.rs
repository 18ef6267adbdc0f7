//! `dr` as a library: every module of the binary, and [`run`], which takes a parsed
//! command line to its exit code. `src/main.rs` only parses and calls it; integration
//! tests and other programs may use the modules directly.

// A recovery tool must not die on a surprise: outside tests, what can fail returns an
// error; an invariant that cannot fail says why in an `allow` where it stands.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod backup;
pub mod checks;
pub mod cli;
pub mod codec;
pub mod commands;
pub mod config;
pub mod demo;
pub mod drill;
pub mod encryption;
pub mod error;
pub mod evidence;
pub mod fleet;
pub mod leftovers;
pub mod metrics;
pub mod notify;
pub mod operations;
pub mod output;
pub mod pg;
pub mod process;
pub mod prune;
pub mod redis_client;
pub mod report;
pub mod restore;
pub mod runbook;
pub mod sandbox;
pub mod scorecard;
pub mod secret;
pub mod storage;
pub mod units;
pub mod version;
pub mod wal;

/// Runs one command line: the command on a tokio runtime, Ctrl-C and SIGTERM as an
/// interruption (exit 130), any error printed once, redacted, with its exit code.
pub fn run(cli: cli::Cli) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return error::EXIT_FAILED;
        }
    };
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
    match outcome {
        Ok(code) => code,
        Err(e) => {
            let message = error::tidy_message(&secret::redact_url(&format!("{e:#}")));
            eprintln!("error: {message}");
            let code = error::exit_code(&e);
            if json_requested() && !output::emitted() {
                output::emit(&output::error_document(&message, code));
            }
            code
        }
    }
}

/// `--format json` on the command line: then every exit prints exactly one JSON document.
pub fn json_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .any(|w| w[0] == "--format" && w[1] == "json")
        || args.iter().any(|a| a == "--format=json")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        // Without a SIGTERM handler, Ctrl-C still interrupts cleanly.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::warn!("interrupted: stopping children and removing temporary data");
}
