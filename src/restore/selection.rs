//! Table- and schema-level restores (`--only-table SCHEMA.TABLE`, `--only-schema SCHEMA`):
//! which tables a partial restore brings back, and the `pg_restore --use-list` that does it.
//!
//! A partial restore goes into an empty database: it recreates the backup's whole schema
//! (types, functions, sequences and every table's definition, so the chosen tables have
//! what they depend on) and loads the rows of the chosen tables only. Foreign keys are left
//! out, since the tables they point at stay empty; large objects and materialized view
//! contents too. The copy is for reading the lost rows back into production.

use anyhow::Result;

use crate::backup::manifest::BackupManifest;
use crate::error::usage;

/// `SCHEMA.TABLE` as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    /// Parses `schema.table` or `"Odd Schema"."Odd.Table"` (double quotes keep dots).
    pub fn parse(text: &str) -> Result<TableName, String> {
        let mut parts = Vec::new();
        let mut current = String::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    chars.next();
                    current.push('"');
                }
                '"' => quoted = !quoted,
                '.' if !quoted => parts.push(std::mem::take(&mut current)),
                c => current.push(c),
            }
        }
        parts.push(current);
        match parts.as_slice() {
            [schema, name] if !schema.is_empty() && !name.is_empty() && !quoted => Ok(TableName {
                schema: schema.clone(),
                name: name.clone(),
            }),
            _ => Err(format!(
                "{text:?} is not SCHEMA.TABLE; write it like public.orders (double-quote names that hold a dot)"
            )),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// What a partial restore brings back; empty means everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub tables: Vec<TableName>,
    pub schemas: Vec<String>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.schemas.is_empty()
    }

    /// Whether the rows of `schema.name` are restored.
    pub fn includes(&self, schema: &str, name: &str) -> bool {
        self.is_empty()
            || self.schemas.iter().any(|s| s == schema)
            || self
                .tables
                .iter()
                .any(|t| t.schema == schema && t.name == name)
    }

    /// The flags that ask for this selection again (`--only-table shop.orders`).
    pub fn flags(&self) -> String {
        let quote = |s: &str| {
            if s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                s.to_string()
            } else {
                format!("'{}'", s.replace('\'', "'\\''"))
            }
        };
        self.tables
            .iter()
            .map(|t| format!("--only-table {}", quote(&t.to_string())))
            .chain(
                self.schemas
                    .iter()
                    .map(|s| format!("--only-schema {}", quote(s))),
            )
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Every chosen table and schema must be in the backup (a typo is a usage error,
    /// exit 2, found before anything is fetched).
    pub fn check_against(&self, manifest: &BackupManifest) -> Result<()> {
        for t in &self.tables {
            if !manifest
                .tables
                .iter()
                .any(|m| m.schema == t.schema && m.name == t.name)
            {
                let mut near: Vec<String> = manifest
                    .tables
                    .iter()
                    .filter(|m| m.name == t.name || m.schema == t.schema)
                    .map(|m| m.qualified())
                    .collect();
                near.truncate(8);
                return Err(usage(format!(
                    "backup {} holds no table {t}{}; hint: name a table of the backup as SCHEMA.TABLE (a partitioned table's rows live in its partitions)",
                    manifest.id,
                    if near.is_empty() {
                        String::new()
                    } else {
                        format!(" (it has {})", near.join(", "))
                    }
                )));
            }
        }
        for s in &self.schemas {
            if !manifest.schemas.contains(s) {
                return Err(usage(format!(
                    "backup {} holds no schema {s:?} (it has {}); hint: name one of those with --only-schema",
                    manifest.id,
                    manifest.schemas.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The tables of the manifest whose rows this selection restores.
    pub fn tables_of<'m>(
        &self,
        manifest: &'m BackupManifest,
    ) -> Vec<&'m crate::backup::manifest::TableCount> {
        manifest
            .tables
            .iter()
            .filter(|t| self.includes(&t.schema, &t.name))
            .collect()
    }

    /// The `pg_restore --use-list` for this selection, from `pg_restore --list` output:
    /// every definition, the rows of the chosen tables, no foreign keys, no large objects,
    /// no materialized view contents.
    pub fn use_list(&self, listing: &str) -> String {
        let mut out = String::new();
        for line in listing.lines() {
            let Some(entry) = TocEntry::parse(line) else {
                continue;
            };
            let keep = match entry.desc_and_rest {
                r if r.starts_with("TABLE DATA ") => {
                    let rest = &r["TABLE DATA ".len()..];
                    self.tables
                        .iter()
                        .any(|t| names_table(rest, &t.schema, &t.name))
                        || self
                            .schemas
                            .iter()
                            .any(|s| rest.starts_with(&format!("{s} ")))
                }
                r if r.starts_with("FK CONSTRAINT ")
                    || r.starts_with("MATERIALIZED VIEW DATA ")
                    || r.starts_with("BLOB")
                    || r.starts_with("LARGE OBJECT ") =>
                {
                    false
                }
                _ => true,
            };
            if keep {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// `rest` (`SCHEMA TABLE OWNER`) names exactly this table.
fn names_table(rest: &str, schema: &str, name: &str) -> bool {
    rest.strip_prefix(&format!("{schema} {name} "))
        .is_some_and(|owner| !owner.contains(' '))
        || rest == format!("{schema} {name}")
}

/// One line of `pg_restore --list`: `ID; TABLEOID OID DESC SCHEMA NAME OWNER`.
pub struct TocEntry<'a> {
    /// `DESC SCHEMA NAME OWNER`: the description may have several words, names spaces.
    pub desc_and_rest: &'a str,
    /// The last word: the owner, `None` when the entry has none.
    pub owner: Option<&'a str>,
}

impl<'a> TocEntry<'a> {
    pub fn parse(line: &'a str) -> Option<TocEntry<'a>> {
        if line.starts_with(';') {
            return None;
        }
        let (_, after) = line.split_once("; ")?;
        let mut rest = after;
        for _ in 0..2 {
            let (number, tail) = rest.split_once(' ')?;
            if !number.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            rest = tail;
        }
        let owner = if rest.ends_with(' ') {
            None
        } else {
            rest.rsplit(' ').next().filter(|o| !o.is_empty())
        };
        Some(TocEntry {
            desc_and_rest: rest,
            owner,
        })
    }
}

/// The roles that own the archive's objects (pg_restore gives each object back to its
/// owner unless `--no-owner`).
pub fn owners(listing: &str) -> Vec<String> {
    let mut out: Vec<String> = listing
        .lines()
        .filter_map(TocEntry::parse)
        .filter_map(|e| e.owner.map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = ";\n; Archive created at 2026-11-25 15:33:11 UTC\n;\n\
6; 2615 16389 SCHEMA - shop app\n\
841; 1247 16391 TYPE shop st app\n\
216; 1259 16396 TABLE shop customers app\n\
215; 1259 16395 SEQUENCE shop customers_id_seq app\n\
218; 1259 16405 TABLE shop orders app\n\
3366; 0 0 ACL shop TABLE orders app\n\
3356; 0 16396 TABLE DATA shop customers app\n\
3358; 0 16405 TABLE DATA shop orders app\n\
3359; 0 16406 TABLE DATA shop orders x app\n\
3360; 0 16407 TABLE DATA Mixed Case Quoted Table postgres\n\
3367; 0 0 SEQUENCE SET shop customers_id_seq app\n\
3211; 2606 16409 CONSTRAINT shop orders orders_pkey app\n\
3209; 1259 16415 INDEX shop orders_c app\n\
3212; 2606 16410 FK CONSTRAINT shop orders orders_customer_id_fkey app\n\
3213; 0 0 MATERIALIZED VIEW DATA shop totals app\n\
3214; 2613 4242 BLOB - 4242 postgres\n";

    #[test]
    fn table_names_parse_with_quotes() {
        assert_eq!(
            TableName::parse("shop.orders").unwrap(),
            TableName {
                schema: "shop".into(),
                name: "orders".into()
            }
        );
        assert_eq!(
            TableName::parse("\"Mixed Case\".\"Quoted.Table\"").unwrap(),
            TableName {
                schema: "Mixed Case".into(),
                name: "Quoted.Table".into()
            }
        );
        assert!(TableName::parse("orders").is_err());
        assert!(TableName::parse("a.b.c").is_err());
        assert!(TableName::parse(".orders").is_err());
        assert!(TableName::parse("\"open.x").is_err());
    }

    #[test]
    fn use_list_keeps_definitions_and_only_the_chosen_rows() {
        let selection = Selection {
            tables: vec![TableName::parse("shop.orders").unwrap()],
            schemas: vec![],
        };
        let list = selection.use_list(LISTING);
        assert!(list.contains("TABLE DATA shop orders app"));
        assert!(!list.contains("TABLE DATA shop customers"));
        assert!(!list.contains("TABLE DATA shop orders x"), "{list}");
        assert!(!list.contains("Quoted Table"));
        for kept in [
            "SCHEMA - shop",
            "TYPE shop st",
            "TABLE shop customers",
            "CONSTRAINT shop orders orders_pkey",
            "INDEX shop orders_c",
            "SEQUENCE SET",
            "ACL shop TABLE orders",
        ] {
            assert!(list.contains(kept), "{kept}: {list}");
        }
        for dropped in ["FK CONSTRAINT", "MATERIALIZED VIEW DATA", "BLOB", "Archive"] {
            assert!(!list.contains(dropped), "{dropped}: {list}");
        }
        let by_schema = Selection {
            tables: vec![],
            schemas: vec!["Mixed Case".into()],
        };
        let list = by_schema.use_list(LISTING);
        assert!(list.contains("Quoted Table"));
        assert!(!list.contains("TABLE DATA shop"));
    }

    #[test]
    fn owners_come_from_the_last_word() {
        assert_eq!(owners(LISTING), vec!["app", "postgres"]);
        assert!(TocEntry::parse("3; 0 0 ENCODING - ENCODING ")
            .unwrap()
            .owner
            .is_none());
    }

    #[test]
    fn flags_repeat_the_selection() {
        let s = Selection {
            tables: vec![TableName::parse("shop.orders").unwrap()],
            schemas: vec!["Mixed Case".into()],
        };
        assert_eq!(
            s.flags(),
            "--only-table shop.orders --only-schema 'Mixed Case'"
        );
        assert!(s.includes("shop", "orders"));
        assert!(s.includes("Mixed Case", "anything"));
        assert!(!s.includes("shop", "customers"));
        assert!(Selection::default().includes("x", "y"));
    }
}
