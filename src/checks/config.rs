//! `config` and `contacts`: the file itself.

use std::sync::Arc;

use super::{CheckContext, Finding, PlannedCheck};

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    let c = ctx.clone();
    out.push(PlannedCheck {
        name: "config",
        target: None,
        critical: true,
        timeout_per_read: false,
        run: Box::pin(async move { Ok(config_file(&c)) }),
    });
    let c = ctx.clone();
    out.push(PlannedCheck {
        name: "contacts",
        target: None,
        critical: false,
        timeout_per_read: false,
        run: Box::pin(async move { Ok(contacts(&c)) }),
    });
}

fn config_file(ctx: &CheckContext) -> Finding {
    let config = &ctx.config;
    if config.postgres.is_empty() && config.redis.is_empty() {
        return Finding::fail(format!(
            "{} protects nothing: it has no [[postgres]] or [[redis]] target, so there is nothing to be ready for; hint: add a target (see dr.toml.example)",
            config.path.display()
        ));
    }
    let summary = format!(
        "{} is valid: {} PostgreSQL and {} Redis target(s)",
        config.path.display(),
        config.postgres.len(),
        config.redis.len()
    );
    // An age private key pasted into the file (a comment, say) is as secret as a password.
    let holds_age_key = std::fs::read_to_string(&config.path)
        .is_ok_and(|text| crate::secret::has_age_secret_key(&text));
    if config.has_inline_password() || holds_age_key {
        let what = if holds_age_key {
            "an age secret key (AGE-SECRET-KEY-1...)"
        } else {
            "an inline password"
        };
        if let Some((mode, readers)) = crate::secret::readers_beyond_owner(&config.path) {
            let shown = config.path.display();
            return Finding::warn(format!(
                "{shown} holds {what} and is readable by {readers} (mode {mode:o}); hint: chmod 600 {shown} (or chmod 640 and chgrp {} {shown} when the PostgreSQL server's restore_command reads it), or move the secret out: a URL into an environment variable with url_env, a key into identity_file",
                crate::secret::SERVER_GROUP
            ));
        }
    }
    Finding::pass(summary)
}

fn contacts(ctx: &CheckContext) -> Finding {
    let n = ctx.config.contacts.len();
    if n == 0 {
        return Finding::warn(
            "no emergency contact is configured; hint: add [[contacts]] with name, role and phone so the on-call engineer knows whom to call",
        );
    }
    let without_phone = ctx
        .config
        .contacts
        .iter()
        .filter(|c| c.phone.is_none() && c.email.is_none())
        .count();
    if without_phone > 0 {
        return Finding::warn(format!(
            "{without_phone} of {n} contact(s) have neither phone nor email; hint: add a phone number to every [[contacts]] entry"
        ));
    }
    Finding::pass(format!(
        "{n} contact(s), {} vendor(s) configured",
        ctx.config.vendors.len()
    ))
}
