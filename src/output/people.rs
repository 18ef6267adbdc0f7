//! `dr contacts` and `dr runbook`: what people read during an incident.

use serde::Serialize;

use super::table::{cell, new_table, or_dash, Fit};
use crate::config::{Contact, Vendor};
use crate::report::FORMAT_VERSION;
use crate::runbook::{RenderedRunbook, Runbook};

#[derive(Serialize)]
pub struct ContactsReport<'a> {
    pub format_version: u32,
    pub ok: bool,
    pub contacts: &'a [Contact],
    pub vendors: &'a [Vendor],
}

impl<'a> ContactsReport<'a> {
    pub fn new(contacts: &'a [Contact], vendors: &'a [Vendor]) -> Self {
        ContactsReport {
            format_version: FORMAT_VERSION,
            ok: true,
            contacts,
            vendors,
        }
    }
}

#[derive(Serialize)]
pub struct RunbookList<'a> {
    pub format_version: u32,
    pub ok: bool,
    pub runbooks: &'a [Runbook],
}

#[derive(Serialize)]
pub struct RunbookDocument<'a> {
    pub format_version: u32,
    pub ok: bool,
    #[serde(flatten)]
    pub runbook: &'a RenderedRunbook,
}

pub fn contacts_table(report: &ContactsReport, config_path: &str) -> String {
    let mut text = String::new();
    if report.contacts.is_empty() {
        text.push_str(&format!(
            "no contacts configured; add [[contacts]] to {config_path}\n"
        ));
    } else {
        let mut t = new_table(&["name", "role", "phone", "email", "hours"])
            .heading("Contacts")
            .fit(Fit::Wrap, &["role", "hours"]);
        for c in report.contacts {
            t.add_row(vec![
                cell(&c.name),
                or_dash(c.role.as_deref()),
                or_dash(c.phone.as_deref()),
                or_dash(c.email.as_deref()),
                or_dash(c.hours.as_deref()),
            ]);
        }
        text.push_str(&t.render());
    }
    if !report.vendors.is_empty() {
        let mut v = new_table(&["vendor", "service", "support", "contract"])
            .heading("Vendors")
            .fit(Fit::Wrap, &["service", "support", "contract"]);
        for x in report.vendors {
            let support = [x.support_phone.as_deref(), x.support_url.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
            v.add_row(vec![
                cell(&x.name),
                or_dash(x.service.as_deref()),
                cell(support),
                or_dash(x.contract.as_deref()),
            ]);
        }
        text.push('\n');
        text.push_str(&v.render());
    }
    text
}

pub fn runbook_list_table(runbooks: &[Runbook]) -> String {
    let mut t = new_table(&["name", "title", "summary", "source"])
        .fit(Fit::Wrap, &["title", "summary"])
        .fit(Fit::Detail, &["source"]);
    for r in runbooks {
        t.add_row(vec![
            cell(&r.name),
            cell(&r.title),
            cell(&r.summary),
            cell(&r.source),
        ]);
    }
    t.render() + "show one with: dr runbook show NAME\n"
}

/// Plain Markdown when piped; bold headings and highlighted commands on a terminal.
pub fn runbook_text(markdown: &str) -> String {
    if !super::styled() {
        return markdown.to_string();
    }
    markdown
        .lines()
        .map(|line| {
            if let Some(h) = line.strip_prefix("# ").or_else(|| line.strip_prefix("## ")) {
                format!("\x1b[1m{h}\x1b[0m")
            } else {
                let mut out = String::new();
                for (i, part) in line.split('`').enumerate() {
                    if i % 2 == 1 {
                        out.push_str(&format!("\x1b[36m{part}\x1b[0m"));
                    } else {
                        out.push_str(part);
                    }
                }
                out
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
