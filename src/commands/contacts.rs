//! `dr contacts`: who to call, straight from dr.toml (nothing invented).

use anyhow::Result;

use crate::cli::{Format, FormatArgs};
use crate::config::Config;
use crate::output::{self, people::ContactsReport};

pub fn run(config: &Config, args: FormatArgs) -> Result<i32> {
    let report = ContactsReport::new(&config.contacts, &config.vendors);
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => {
            output::people::contacts_table(&report, &config.path.display().to_string())
        }
    });
    Ok(0)
}
