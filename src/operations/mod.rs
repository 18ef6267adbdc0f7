//! What the commands do, as a library: each function takes a request and returns a report
//! (with what the notification sinks were told); `src/commands/` parses the command line
//! into the request and renders the report. The domain modules below do the work; this
//! layer sets up (configuration, storage, identities) and puts the steps of one command
//! together.

pub mod backup;
pub mod outcomes;
pub mod prune;
pub mod redis;
pub mod setup;
