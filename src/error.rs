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

/// The run was interrupted by a signal (exit 130).
#[derive(Debug)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted by signal; temporary data removed, nothing was committed")
    }
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
