//! The one channel for everything `dr` says on stderr besides a prompt: warnings, notices
//! and logs all go through `tracing`, so `-q` silences every warning and notice, `-v` adds
//! debug detail and `-vv` trace detail (also from the libraries underneath). `RUST_LOG`
//! overrides both.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::{format::Writer, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Lines as an operator reads them: `warning: ...`, `error: ...`, notices bare; logs at
/// debug and trace keep their level and origin.
struct OperatorFormat;

impl<S, N> FormatEvent<S, N> for OperatorFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        match *meta.level() {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            Level::INFO if meta.target() == "notice" => {}
            level => write!(
                writer,
                "{} {}: ",
                level.as_str().to_lowercase(),
                meta.target()
            )?,
        }
        // The last defence for logs: an age secret key that reached a message (a
        // library's error, a debug dump of a setting) is hidden here too.
        let mut fields = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut fields), event)?;
        writeln!(writer, "{}", crate::secret::redact_age_keys(&fields))
    }
}

/// The filter for `-q` / `-v` / `-vv`.
pub fn filter_directives(verbose: u8, quiet: bool) -> String {
    match (quiet, verbose) {
        (true, _) => "dr=error,notice=error,error".into(),
        (false, 0) => "dr=warn,notice=info,warn".into(),
        (false, 1) => "dr=debug,notice=info,info".into(),
        (false, _) => "dr=trace,notice=info,debug".into(),
    }
}

pub fn init(verbose: u8, quiet: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter_directives(verbose, quiet)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(OperatorFormat)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_silences_warnings_and_notices() {
        let quiet = filter_directives(0, true);
        assert!(quiet.contains("dr=error") && quiet.contains("notice=error"));
        assert!(filter_directives(2, false).contains("dr=trace"));
        assert!(filter_directives(0, false).contains("notice=info"));
    }
}
