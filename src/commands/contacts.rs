//! `dr contacts`: who to call, straight from dr.toml (nothing invented).

use anyhow::Result;
use comfy_table::Cell;
use serde::Serialize;

use crate::cli::{Format, FormatArgs};
use crate::config::{Config, Contact, Vendor};
use crate::output::{self, table::new_table};

#[derive(Serialize)]
struct ContactsReport<'a> {
    format_version: u32,
    contacts: &'a [Contact],
    vendors: &'a [Vendor],
}

pub fn run(config: &Config, args: FormatArgs) -> Result<i32> {
    let report = ContactsReport {
        format_version: 1,
        contacts: &config.contacts,
        vendors: &config.vendors,
    };
    match args.format {
        Format::Json => output::emit(&output::json(&report)),
        Format::Table => {
            let dash = |v: &Option<String>| Cell::new(v.as_deref().unwrap_or("-"));
            let mut t = new_table(&["name", "role", "phone", "email", "hours"]);
            for c in &config.contacts {
                t.add_row(vec![
                    Cell::new(&c.name),
                    dash(&c.role),
                    dash(&c.phone),
                    dash(&c.email),
                    dash(&c.hours),
                ]);
            }
            let mut text = if config.contacts.is_empty() {
                format!(
                    "no contacts configured; add [[contacts]] to {}\n",
                    config.path.display()
                )
            } else {
                format!("{t}\n")
            };
            if !config.vendors.is_empty() {
                let mut v = new_table(&["vendor", "service", "support", "contract"]);
                for x in &config.vendors {
                    let support = [x.support_phone.as_deref(), x.support_url.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", ");
                    v.add_row(vec![
                        Cell::new(&x.name),
                        dash(&x.service),
                        Cell::new(support),
                        dash(&x.contract),
                    ]);
                }
                text.push_str(&format!("{v}\n"));
            }
            output::emit(&text);
        }
    }
    Ok(0)
}
