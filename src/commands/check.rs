//! `dr check`: the readiness gate.

use std::sync::Arc;

use anyhow::Result;

use crate::checks::{self, CheckContext, CheckReport};
use crate::cli::{CheckArgs, CheckFormat};
use crate::config::Config;
use crate::error::usage;
use crate::output;

pub async fn run(
    config: &Config,
    args: CheckArgs,
    leftovers: Vec<crate::leftovers::Leftover>,
) -> Result<i32> {
    // An unset url_env is a configuration error (exit 2), as at every other command.
    for t in &config.postgres {
        t.resolve_url()?;
    }
    for t in &config.redis {
        t.resolve_url()?;
    }
    let notifier =
        crate::notify::OperationRun::start_check(config, args.notify, args.metrics_file.clone())?;
    let storage = match &config.storage {
        Some(s) => Some(Arc::from(crate::storage::open(s)?)),
        None => None,
    };
    let ctx = Arc::new(CheckContext {
        config: config.clone(),
        storage,
        secrets: config.secrets(),
        timeout: args.timeout,
        leftovers,
        clients: crate::pg::slots::SharedClients::new(crate::fleet::server_slots(config)),
        tools: Default::default(),
    });
    let mut planned = checks::plan(&ctx);
    if !args.only.is_empty() {
        let known: Vec<&str> = planned.iter().map(|c| c.name).collect();
        for wanted in &args.only {
            if !known.iter().any(|k| selects(wanted, k)) {
                let mut names = known.clone();
                names.dedup();
                return Err(usage(format!(
                    "--only {wanted:?} matches no configured check; checks: {}",
                    names.join(", ")
                )));
            }
        }
        planned.retain(|c| args.only.iter().any(|w| selects(w, c.name)));
    }
    let results = checks::run(planned, args.timeout, &ctx.secrets).await;
    let report = CheckReport::new(results, args.strict);
    let sent = notifier
        .finish_check(&report, output::prometheus::check_report(&report))
        .await;
    output::emit(&match args.format {
        CheckFormat::Table => output::check::table(&report, args.problems_only),
        CheckFormat::Json => output::notify::json_with(&report, &sent),
        CheckFormat::Junit => output::junit::check_report(&report),
        CheckFormat::Prometheus => output::prometheus::check_report(&report),
    });
    Ok(if report.ready { 0 } else { 1 })
}

/// `pg` selects `pg.connect`, `pg.tools`...; `pg.connect` selects itself.
fn selects(wanted: &str, name: &str) -> bool {
    name == wanted
        || name
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_matches_names_and_families() {
        assert!(super::selects("pg", "pg.connect"));
        assert!(super::selects("pg.connect", "pg.connect"));
        assert!(!super::selects("pg.conn", "pg.connect"));
        assert!(!super::selects("p", "pg.connect"));
    }
}
