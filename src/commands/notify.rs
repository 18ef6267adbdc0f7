//! `dr notify test`: one test event to each sink; here sending is the outcome.

use anyhow::Result;

use crate::cli::{Format, NotifyAction, NotifyArgs};
use crate::config::Config;
use crate::{notify, output};

pub async fn run(config: &Config, args: NotifyArgs) -> Result<i32> {
    let NotifyAction::Test { sink, format } = args.action;
    let deliveries = notify::send_test(config, sink.as_deref()).await?;
    output::emit(&match format {
        Format::Json => output::notify::test_json(&deliveries),
        Format::Table => output::notify::test_table(&deliveries),
    });
    let failed = deliveries.iter().filter(|d| !d.delivered).count();
    if failed == 0 {
        Ok(0)
    } else {
        Err(anyhow::anyhow!(
            "{failed} of {} test notification(s) were not delivered; hint: see the sink's message above, fix the sink's URL or key, and run `dr notify test` again",
            deliveries.len()
        ))
    }
}
