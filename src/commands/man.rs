//! `dr man`: the manual page dr(1) on stdout, or every page into `--dir`.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};
use crate::output::{self, manpage};

pub fn run(args: ManArgs) -> Result<i32> {
    let pages = manpage::pages(Cli::command());
    match args.dir {
        None => output::emit(&pages[0].1),
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| {
                format!(
                    "cannot create {}; hint: choose a writable directory (or run with sudo for /usr/local/share/man/man1)",
                    dir.display()
                )
            })?;
            for (file, text) in &pages {
                let path = dir.join(file);
                std::fs::write(&path, text).with_context(|| {
                    format!(
                        "cannot write {}; hint: choose a writable --dir",
                        path.display()
                    )
                })?;
            }
            output::emit(&format!(
                "wrote {} manual pages to {}; read one with `man -l {}`\n",
                pages.len(),
                dir.display(),
                dir.join(&pages[0].0).display()
            ));
        }
    }
    Ok(0)
}
