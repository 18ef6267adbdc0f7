//! `encryption.keys`: the recipients parse, the identity on this host (if any) opens the
//! newest backup, and a drill has proven recently that someone still holds a key.

use std::sync::Arc;

use anyhow::Result;
use chrono::Utc;
use futures::StreamExt;

use super::{CheckContext, Finding, PlannedCheck};
use crate::backup::catalog;
use crate::encryption::Identities;
use crate::report::Status;
use crate::units::age as age_text;

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    if ctx.config.encryption.is_none() {
        return;
    }
    let c = ctx.clone();
    out.push(PlannedCheck {
        name: "encryption.keys",
        target: None,
        critical: true,
        timeout_per_read: false,
        run: Box::pin(async move { keys(&c).await }),
    });
}

async fn keys(ctx: &CheckContext) -> Result<Finding> {
    let config = &ctx.config;
    // An identity file others can read opens every backup. It is still tried here (the
    // commands that decrypt refuse it); the finding is at least a warning naming it.
    let exposed = config
        .encryption
        .as_ref()
        .and_then(|e| crate::encryption::configured_identity_file(e, config.dir()))
        .and_then(|path| crate::encryption::identity_file_exposure(&path));
    let finding = keys_and_proof(ctx).await?;
    Ok(match exposed {
        Some(problem) => {
            // One message, one hint: the two causes first, then both fixes.
            let (what, fix) = problem.split_once("; hint: ").unwrap_or((&problem, ""));
            let (head, then) = match finding.message.split_once("; hint: ") {
                Some((head, hint)) => (head, format!("; then {hint}")),
                None => (finding.message.as_str(), String::new()),
            };
            Finding {
                status: finding.status.max(Status::Warn),
                message: format!("{what}; {head}; hint: {fix}{then}"),
            }
        }
        None => finding,
    })
}

async fn keys_and_proof(ctx: &CheckContext) -> Result<Finding> {
    let config = &ctx.config;
    let recipients = crate::encryption::configured_recipients(config)?
        .map(|r| r.public_keys())
        .unwrap_or_default();
    let mut notes = vec![format!("{} recipient(s) configured", recipients.len())];
    let identities =
        match Identities::load_allowing_exposed(config.encryption.as_ref(), config.dir()) {
            Ok(ids) => ids,
            Err(e) => return Ok(Finding::fail(format!("{e:#}"))),
        };
    let Some(storage) = ctx.storage.as_ref() else {
        return Ok(Finding::pass(notes.join("; ")));
    };
    if let Some(ids) = &identities {
        for target in &config.postgres {
            let (all, _) = catalog::list_complete(storage.as_ref(), Some(&target.name)).await?;
            let Some(newest) = catalog::newest_trusted(&all, Utc::now()).0 else {
                continue;
            };
            if newest.encryption.is_none() {
                continue;
            }
            let key = catalog::object_key(newest, &newest.dump().file);
            let mut stream = storage.get(&key).await?;
            let mut head = Vec::new();
            while head.len() < 4096 {
                match stream.next().await {
                    Some(chunk) => head.extend_from_slice(&chunk?),
                    None => break,
                }
            }
            if let Err(e) = ids.decrypt(&head[..], &newest.recipients) {
                return Ok(Finding::fail(format!("backup {}: {e:#}", newest.id)));
            }
            notes.push(format!("{} opens backup {}", ids.source, newest.id));
        }
    }
    let every = config.objectives.drill_every();
    for target in &config.postgres {
        let reports = crate::drill::list_reports(storage.as_ref(), &target.name).await?;
        let proof = reports.iter().find(|r| r.decrypted);
        match proof {
            Some(r) if (Utc::now() - r.started_at).to_std().unwrap_or_default() <= every => {
                notes.push(format!(
                    "drill {} decrypted a backup {} ago",
                    r.id,
                    age_text(Utc::now() - r.started_at)
                ));
            }
            _ => {
                // Where the identity is configured here, the drill finds it by itself.
                let identity_here = config
                    .encryption
                    .as_ref()
                    .is_some_and(|e| e.identity_file.is_some() || e.identity_env.is_some());
                let drill = if identity_here {
                    format!("`dr drill --target {}`", target.name)
                } else {
                    format!(
                        "`dr drill --target {} --identity KEYFILE` where the key is kept",
                        target.name
                    )
                };
                return Ok(Finding::warn(format!(
                    "{}; no drill of {} decrypted a backup within {}: the key may be lost and nobody would know; hint: run {drill}",
                    notes.join("; "),
                    target.name,
                    crate::units::duration(every),
                )));
            }
        }
    }
    Ok(Finding::pass(notes.join("; ")))
}
