//! `dr demo`: the whole job on a throwaway cluster (the README's first command).

use anyhow::Result;

use crate::cli::DemoArgs;

pub async fn run(args: DemoArgs) -> Result<i32> {
    crate::demo::run(args.keep).await
}
