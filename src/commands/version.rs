//! `dr version` (and `dr --version`): what this binary is and which client tools it finds.

use anyhow::Result;

use crate::cli::{TextFormat, VersionArgs};
use crate::output;

pub async fn run(args: VersionArgs) -> Result<i32> {
    let report = crate::version::report(None).await;
    output::emit(&match args.format {
        TextFormat::Json => output::json(&report),
        TextFormat::Text => output::version::text(&report),
    });
    Ok(0)
}
