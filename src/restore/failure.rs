//! What a restore that failed or was interrupted after the destination changed leaves
//! behind, and the commands that finish it or go back.

use anyhow::anyhow;

use super::{Before, RestoreRequest};
use crate::pg;

/// A failure after the destination changed: what failed, the state it left, then one
/// hint: the fix for the cause, then the retry or the way back.
pub(super) fn restore_failed(e: anyhow::Error, note: String) -> anyhow::Error {
    if crate::error::exit_code(&e) != crate::error::EXIT_FAILED {
        return e.context(note);
    }
    let cause = format!("{e:#}");
    let (head, cause_hint) = cause.split_once("; hint: ").unwrap_or((&cause, ""));
    let head = head.trim_end_matches([';', ' ']);
    let (state, next) = note.split_once("; hint: ").unwrap_or((&note, ""));
    let hints: Vec<&str> = [cause_hint, next]
        .into_iter()
        .filter(|h| !h.is_empty())
        .collect();
    anyhow!("{head}; {state}; hint: {}", hints.join("; then "))
}

/// `dr restore --backup-id ... --target ...` with the destination named as the command
/// named it.
fn restore_command(req: &RestoreRequest<'_>, backup_id: &str) -> String {
    let mut cmd = format!(
        "dr restore --backup-id {backup_id} --target {}",
        req.target.name
    );
    if let Some(flag) = &req.destination_flag {
        cmd.push(' ');
        cmd.push_str(flag);
    }
    cmd
}

/// The exact command that restores the safety backup into the same destination.
pub(super) fn go_back_command(req: &RestoreRequest<'_>, safety_id: &str) -> String {
    format!(
        "{} --yes --no-safety-backup",
        restore_command(req, safety_id)
    )
}

/// The same restore again, over what the failed one left: `--clean` drops the backup's
/// objects first; the previous contents are already safe (or were empty), so no new
/// safety copy.
fn retry_command(req: &RestoreRequest<'_>, before: &Before, fixes: &[&str]) -> String {
    let mut cmd = restore_command(req, &before.backup_id);
    let scope = &req.scope;
    if scope.with_globals || fixes.contains(&"--with-globals") {
        cmd.push_str(" --with-globals");
    }
    if scope.no_owner || fixes.contains(&"--no-owner") {
        cmd.push_str(" --no-owner");
    }
    if scope.create {
        cmd.push_str(" --create");
    }
    if !scope.selection.is_empty() {
        cmd.push(' ');
        cmd.push_str(&scope.selection.flags());
    }
    cmd.push_str(" --clean --yes --no-safety-backup");
    cmd
}

/// What an interruption or failure leaves while the destination changes, and how to go
/// on: the retry (`--clean`, or drop and `--create`) and the safety backup.
pub(super) fn failure_note(
    req: &RestoreRequest<'_>,
    before: &Before,
    fixes: &[&str],
    created: Option<bool>,
) -> String {
    let dest = &req.destination.public_url;
    let db = &req.destination.database;
    let retry = retry_command(req, before, fixes);
    let drop = format!("DROP DATABASE {}", pg::quote_ident(db));
    match (before.existed, created) {
        (false, Some(true)) => {
            return format!(
                "database {db} was created by this restore and is now partly restored; hint: drop it ({drop}) and run the restore again with --create, or finish it over what is there with `{retry}`"
            )
        }
        (false, Some(false)) => {
            return format!(
                "database {db} was not created{}; hint: fix the cause and run `{retry}`",
                if req.scope.with_globals {
                    " (the backup's roles may have been)"
                } else {
                    ""
                }
            )
        }
        (false, None) => {
            return format!(
                "database {db} did not exist and was being created and restored, and is now partly restored or missing; hint: drop it if it exists ({drop}) and run the restore again with --create, or finish it with `{retry}`"
            )
        }
        _ => {}
    }
    if !before.destructive {
        return format!(
            "the destination {dest} was empty and is now partly restored; hint: run `{retry}` (it drops what was restored and restores again), or drop the database and restore with --create"
        );
    }
    match &before.safety_id {
        Some(id) => format!(
            "the destination {dest} was being overwritten and is now INCOMPLETE (objects the backup holds were dropped and only partly recreated); hint: finish it with `{retry}`, or go back to what it held before with `{}` (safety backup {id})",
            go_back_command(req, id)
        ),
        None => format!(
            "the destination {dest} was being overwritten without a safety backup (--no-safety-backup) and is now INCOMPLETE; hint: finish it with `{retry}`"
        ),
    }
}
