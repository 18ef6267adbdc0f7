//! The few error kinds whose exit code differs from the default.
//!
//! Everything that fails is exit 1 unless it is wrapped in one of these kinds:
//! usage and configuration mistakes are exit 2 (nothing was attempted), Ctrl-C is 130.

use std::fmt;

/// Exit code: the operation failed or a critical check failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: usage or configuration error; nothing was changed.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: interrupted by SIGINT or SIGTERM; temporary data was removed.
pub const EXIT_INTERRUPTED: i32 = 130;

/// An error the user fixes by changing how `dr` is called or configured (exit 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The run was interrupted by a signal (exit 130). It says what state the run left things
/// in: by default nothing was committed; an operation that changes something registers a
/// truer description while it does ([`set_interrupt_note`]).
#[derive(Debug)]
pub struct Interrupted(Option<String>);

impl Interrupted {
    /// The interruption, with the note registered at this moment.
    pub fn now() -> Interrupted {
        Interrupted(INTERRUPT_NOTE.lock().ok().and_then(|n| n.clone()))
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(note) => write!(f, "interrupted by signal: {note}"),
            None => {
                f.write_str("interrupted by signal; temporary data removed, nothing was committed")
            }
        }
    }
}

/// What an interruption would leave behind right now. Signals are process-wide, so this
/// is too: the restore pipeline sets it while it changes the destination and clears it
/// when it is done.
static INTERRUPT_NOTE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

pub fn set_interrupt_note(note: Option<String>) {
    if let Ok(mut slot) = INTERRUPT_NOTE.lock() {
        *slot = note;
    }
}

/// Joins several `hint:` parts of an error chain into one, and drops empty clauses, so a
/// message reads as one sentence with one fix.
pub fn tidy_message(message: &str) -> String {
    let mut parts = message.split("; hint: ");
    let head = parts.next().unwrap_or("").trim_end_matches([':', ';', ' ']);
    let hints: Vec<&str> = parts
        .map(|h| h.trim().trim_end_matches([':', ';', ' ']))
        .filter(|h| !h.is_empty())
        .collect();
    let mut out = head.replace(": ;", ";").replace("; ;", ";");
    if !hints.is_empty() {
        out.push_str("; hint: ");
        out.push_str(&hints.join("; then "));
    }
    out
}

impl std::error::Error for Interrupted {}

/// A usage error as an `anyhow::Error`, for `return Err(usage(...))`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Maps any error chain to the documented exit code.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return EXIT_USAGE;
        }
        if cause.downcast_ref::<Interrupted>().is_some() {
            return EXIT_INTERRUPTED;
        }
    }
    EXIT_FAILED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hint_and_no_empty_clause() {
        assert_eq!(
            tidy_message(
                "step x failed: cannot connect; hint: start it: ; hint: raise the timeout"
            ),
            "step x failed: cannot connect; hint: start it; then raise the timeout"
        );
        assert_eq!(tidy_message("pg_dump failed: "), "pg_dump failed");
        assert_eq!(tidy_message("a; hint: "), "a");
        assert_eq!(tidy_message("plain"), "plain");
    }

    #[test]
    fn interruption_says_what_state_things_are_in() {
        assert!(Interrupted(None)
            .to_string()
            .contains("nothing was committed"));
        let e = Interrupted(Some("the destination is half restored".into()));
        assert_eq!(
            e.to_string(),
            "interrupted by signal: the destination is half restored"
        );
    }
}
