//! Which targets a command works on: `--target` as a name, a fleet or a glob.

use anyhow::Result;

use super::{
    glob_matches, is_glob, BackupTarget, Config, PostgresTarget, RedisTarget, MEMBER_SEPARATOR,
};
use crate::error::usage;

impl Config {
    pub fn postgres_target(&self, name: &str) -> Result<&PostgresTarget> {
        if is_glob(name) {
            let found: Vec<&PostgresTarget> = self
                .postgres
                .iter()
                .filter(|t| glob_matches(name, &t.name))
                .collect();
            return match found.as_slice() {
                [one] => Ok(one),
                [] => Err(self.no_match(name)),
                many => Err(usage(format!(
                    "--target {name:?} matches {} targets ({}); hint: this command works on one target: name it",
                    many.len(),
                    shorten(many.iter().map(|t| t.name.as_str()))
                ))),
            };
        }
        let members = self.members_of(name);
        if !members.is_empty() && !self.postgres.iter().any(|t| t.name == name) {
            return Err(usage(format!(
                "--target {name:?} is a fleet of {} databases and this command works on one; hint: name one, e.g. --target {} (members: {})",
                members.len(),
                members[0].name,
                shorten(members.iter().map(|t| t.name.as_str()))
            )));
        }
        self.postgres
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.postgres.iter().map(|t| t.name.as_str()).collect();
                usage(format!(
                    "unknown PostgreSQL target {name:?}; known targets: {}",
                    if known.is_empty() {
                        "none configured".to_string()
                    } else {
                        shorten(known.into_iter())
                    }
                ))
            })
    }

    /// Replaces the fleet target `fleet` by one member per database it takes (all of
    /// `databases` when they were named on the command line).
    pub fn expand_fleet(&mut self, fleet: &str, databases: &[String], named: bool) {
        let Some(at) = self
            .postgres
            .iter()
            .position(|t| t.name == fleet && t.is_fleet())
        else {
            return;
        };
        let target = self.postgres.remove(at);
        let members: Vec<PostgresTarget> = databases
            .iter()
            .filter(|d| named || target.takes_database(d))
            .map(|d| target.member(d))
            .collect();
        self.postgres.splice(at..at, members);
    }

    /// The fleet `fleet` could not list its databases: it is left out, and commands
    /// report it as failed.
    pub fn fleet_failed(&mut self, fleet: &str, error: String) {
        self.postgres.retain(|t| !(t.name == fleet && t.is_fleet()));
        self.discovery_failures.push((fleet.to_string(), error));
    }

    /// A fleet member that cannot be backed up as it is (its name does not fit in storage):
    /// it is left out, and commands report it as failed with `error`.
    pub fn member_refused(&mut self, member: &str, error: String) {
        self.postgres.retain(|t| t.name != member);
        self.discovery_failures.push((member.to_string(), error));
    }

    /// The `[[postgres]]` targets with `databases = ...` not expanded yet.
    pub fn fleets(&self) -> Vec<PostgresTarget> {
        self.postgres
            .iter()
            .filter(|t| t.is_fleet())
            .cloned()
            .collect()
    }

    /// The names `--target` selects among every target, PostgreSQL and Redis: the name
    /// itself, the members of a fleet, or every match of a glob (none is a usage error).
    pub fn selected_names(&self, wanted: &str) -> Result<Vec<String>> {
        let all = self
            .postgres
            .iter()
            .map(|t| t.name.as_str())
            .chain(self.redis.iter().map(|t| t.name.as_str()));
        let found: Vec<String> = if is_glob(wanted) {
            all.filter(|n| glob_matches(wanted, n))
                .map(str::to_string)
                .collect()
        } else {
            all.filter(|n| {
                *n == wanted
                    || n.strip_prefix(wanted)
                        .is_some_and(|rest| rest.starts_with(MEMBER_SEPARATOR))
            })
            .map(str::to_string)
            .collect()
        };
        if found.is_empty() {
            return Err(self.no_match(wanted));
        }
        Ok(found)
    }

    /// The usage error of a `--target` glob that matches nothing, listing the targets.
    pub fn no_match(&self, pattern: &str) -> anyhow::Error {
        let names = self
            .postgres
            .iter()
            .map(|t| t.name.as_str())
            .chain(self.redis.iter().map(|t| t.name.as_str()));
        usage(format!(
            "--target {pattern:?} matches no target; hint: choose among {} (globs: * any characters, ? one)",
            shorten(names)
        ))
    }

    /// The targets a command works on: the named one (a glob: every match; the name of
    /// a fleet: its databases), or all of them.
    pub fn select_postgres(&self, name: Option<&str>) -> Result<Vec<&PostgresTarget>> {
        match name {
            Some(n) if is_glob(n) => {
                let found: Vec<&PostgresTarget> = self
                    .postgres
                    .iter()
                    .filter(|t| glob_matches(n, &t.name))
                    .collect();
                if found.is_empty() {
                    return Err(self.no_match(n));
                }
                Ok(found)
            }
            Some(n) => {
                let members = self.members_of(n);
                if !members.is_empty() && !self.postgres.iter().any(|t| t.name == n) {
                    return Ok(members);
                }
                Ok(vec![self.postgres_target(n)?])
            }
            None if self.postgres.is_empty() => Err(usage(format!(
                "{}: no [[postgres]] target is configured; hint: add one (see dr.toml.example)",
                self.path.display()
            ))),
            None => Ok(self.postgres.iter().collect()),
        }
    }

    /// The members (`fleet/<database>`) of a fleet target, once its databases are known.
    fn members_of(&self, fleet: &str) -> Vec<&PostgresTarget> {
        self.postgres
            .iter()
            .filter(|t| {
                t.name
                    .strip_prefix(fleet)
                    .is_some_and(|rest| rest.starts_with(MEMBER_SEPARATOR))
            })
            .collect()
    }

    /// The member `fleet/database` of a `[[postgres]]` fleet target, made without asking
    /// the server (the database may still be missing there).
    pub fn fleet_member(&self, name: &str) -> Option<PostgresTarget> {
        let (fleet, database) = name.split_once(MEMBER_SEPARATOR)?;
        let t = self
            .postgres
            .iter()
            .find(|t| t.name == fleet && t.databases.is_some())?;
        (!database.is_empty()).then(|| t.member(database))
    }

    /// The `[[redis]]` target of that name, if there is one.
    pub fn redis_target(&self, name: &str) -> Option<&RedisTarget> {
        self.redis.iter().find(|t| t.name == name)
    }

    /// A Redis target named explicitly for a data command (restore, verify, drill): it
    /// must have `backup = true`, since only then does it have backups.
    pub fn redis_backup_target(&self, name: Option<&str>) -> Option<Result<&RedisTarget>> {
        let name = name?;
        let target = if is_glob(name) {
            let redis: Vec<&RedisTarget> = self
                .redis
                .iter()
                .filter(|t| glob_matches(name, &t.name))
                .collect();
            let postgres = self.postgres.iter().any(|t| glob_matches(name, &t.name));
            match redis.as_slice() {
                [one] if !postgres => *one,
                _ => return None,
            }
        } else {
            self.redis_target(name)?
        };
        if target.backup {
            Some(Ok(target))
        } else {
            Some(Err(usage(format!(
                "{}: Redis target {:?} is not backed up by dr (backup = false); hint: add backup = true to its [[redis]] table",
                self.path.display(),
                target.name
            ))))
        }
    }

    /// The targets `dr backup` works on: the named one, or every PostgreSQL target and
    /// every Redis target with `backup = true`.
    pub fn select_backup_targets(&self, name: Option<&str>) -> Result<Vec<BackupTarget<'_>>> {
        if let Some(pattern) = name.filter(|n| is_glob(n)) {
            let out: Vec<BackupTarget<'_>> = self
                .postgres
                .iter()
                .filter(|t| glob_matches(pattern, &t.name))
                .map(BackupTarget::Postgres)
                .chain(
                    self.redis
                        .iter()
                        .filter(|t| t.backup && glob_matches(pattern, &t.name))
                        .map(BackupTarget::Redis),
                )
                .collect();
            if out.is_empty() {
                return Err(self.no_match(pattern));
            }
            return Ok(out);
        }
        if let Some(result) = self.redis_backup_target(name) {
            return Ok(vec![BackupTarget::Redis(result?)]);
        }
        if name.is_none() && self.postgres.is_empty() {
            let redis: Vec<BackupTarget<'_>> = self
                .redis
                .iter()
                .filter(|t| t.backup)
                .map(BackupTarget::Redis)
                .collect();
            if !redis.is_empty() {
                return Ok(redis);
            }
        }
        let mut out: Vec<BackupTarget<'_>> = self
            .select_postgres(name)?
            .into_iter()
            .map(BackupTarget::Postgres)
            .collect();
        if name.is_none() {
            out.extend(
                self.redis
                    .iter()
                    .filter(|t| t.backup)
                    .map(BackupTarget::Redis),
            );
        }
        Ok(out)
    }

    /// Checks that `name` is a configured target of either kind (for list and prune).
    pub fn known_target(&self, name: &str) -> Result<()> {
        if self.redis_target(name).is_some() || self.fleet_member(name).is_some() {
            return Ok(());
        }
        self.postgres_target(name).map(|_| ())
    }
}

/// Names for a message: all of them up to 12, else the first 10 and how many more.
fn shorten<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.len() <= 12 {
        return names.join(", ");
    }
    format!("{} and {} more", names[..10].join(", "), names.len() - 10)
}
