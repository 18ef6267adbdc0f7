//! `wal.fetch`: the server's OS user can fetch and open the newest archived segment, as
//! `restore_command` will have to at 3 a.m. A key or directory that user cannot read is
//! named here, with the `chgrp`/`chmod` that fixes it.

use anyhow::{anyhow, Context, Result};

use super::wal_server::live_server;
use super::CheckContext;
use crate::config::PostgresTarget;
use crate::pg::slots::SharedClient;
use crate::process::ChildCommand;
use crate::report::Finding;
use crate::storage::Storage;
use crate::wal::{self, WalKind};

/// Who runs `restore_command`: the OS user owning the live data directory when dr runs
/// as root on the server's host (the directory is here and holds this cluster), else the
/// user dr runs as.
struct FetchUser {
    /// `None`: the current user.
    name: Option<String>,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
    groups: Vec<nix::unistd::Gid>,
    group_name: String,
}

async fn fetch_user(shared: &SharedClient, system_id: Option<u64>) -> Result<FetchUser> {
    use nix::unistd::{Group, Uid, User};
    let current = Uid::effective();
    let mut owner = current;
    if current.is_root() {
        let data_dir = match shared.client().await {
            Ok(client) => client
                .query_one("SELECT current_setting('data_directory')", &[])
                .await
                .ok()
                .and_then(|r| r.try_get::<_, String>(0).ok()),
            Err(_) => None,
        };
        if let Some(dir) = data_dir.map(std::path::PathBuf::from) {
            let same_cluster = wal::read_control_system_id(&dir)
                .ok()
                .is_some_and(|id| system_id.is_none_or(|s| s == id));
            if same_cluster {
                if let Ok(meta) = std::fs::metadata(&dir) {
                    owner = Uid::from_raw(std::os::unix::fs::MetadataExt::uid(&meta));
                }
            }
        }
    }
    let user = User::from_uid(owner)?
        .ok_or_else(|| anyhow!("no user has uid {owner} (the owner of the data directory)"))?;
    let groups = std::ffi::CString::new(user.name.clone())
        .ok()
        .and_then(|n| nix::unistd::getgrouplist(&n, user.gid).ok())
        .unwrap_or_else(|| vec![user.gid]);
    let group_name = Group::from_gid(user.gid)
        .ok()
        .flatten()
        .map_or_else(|| user.gid.to_string(), |g| g.name);
    Ok(FetchUser {
        name: (owner != current).then(|| user.name.clone()),
        uid: user.uid,
        gid: user.gid,
        groups,
        group_name,
    })
}

impl FetchUser {
    fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("OS user {n} (owner of the data directory)"),
            None if self.uid.is_root() => format!(
                "OS user {} (dr's own: the server's data directory is not on this host, or the role may not see data_directory)",
                self.user_name()
            ),
            None => format!("OS user {} (dr's own)", self.user_name()),
        }
    }

    fn user_name(&self) -> String {
        nix::unistd::User::from_uid(self.uid)
            .ok()
            .flatten()
            .map_or_else(|| self.uid.to_string(), |u| u.name)
    }

    /// Whether this user may read `path` (permission bits only; root reads everything).
    fn may_read(&self, path: &std::path::Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        if self.uid.is_root() {
            return true;
        }
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        let mode = meta.mode();
        if meta.uid() == self.uid.as_raw() {
            mode & 0o400 != 0
        } else if self.groups.iter().any(|g| g.as_raw() == meta.gid()) {
            mode & 0o040 != 0
        } else {
            mode & 0o004 != 0
        }
    }

    /// The directory nearest the root, on the way to `path`, that this user may not
    /// enter, if any.
    fn blocked_on_the_way(&self, path: &std::path::Path) -> Option<std::path::PathBuf> {
        use std::os::unix::fs::MetadataExt;
        if self.uid.is_root() {
            return None;
        }
        let above: Vec<&std::path::Path> = path.ancestors().skip(1).collect();
        above.into_iter().rev().find_map(|dir| {
            let meta = std::fs::metadata(dir).ok()?;
            let mode = meta.mode();
            let may = if meta.uid() == self.uid.as_raw() {
                mode & 0o100 != 0
            } else if self.groups.iter().any(|g| g.as_raw() == meta.gid()) {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            (!may).then(|| dir.to_path_buf())
        })
    }
}

/// `wal.fetch`: the newest archived segment comes back through the target's restore path
/// (`dr wal-fetch`, as `restore_command` runs it) as the OS user the server runs as, into
/// a private directory. A permission only root has (the identity file, storage, dr.toml)
/// otherwise shows first at 3 a.m., when recovery stops at the first segment.
pub(super) async fn fetch(
    ctx: &CheckContext,
    storage: &dyn Storage,
    target: &PostgresTarget,
    shared: &SharedClient,
) -> Result<Finding> {
    let name = &target.name;
    let config = &ctx.config;
    let server = live_server(shared).await.ok();
    let system_id = match server.as_ref().map(|s| s.system_id) {
        Some(id) => id,
        None => match wal::archived_systems(storage, name).await?.as_slice() {
            [only] => *only,
            [] => {
                return Ok(Finding::warn(format!(
                    "nothing of target {name} is archived yet, so no segment can be fetched; hint: see pg.archiving"
                )))
            }
            _ => {
                return Ok(Finding::fail(
                    "cannot connect (see pg.connect), and several clusters archive under this target, so which one to fetch from is unknown",
                ))
            }
        },
    };
    let files = wal::list_archive(storage, &wal::cluster_prefix(name, system_id)).await?;
    let Some(newest) = files
        .iter()
        .filter(|f| f.wal.kind == WalKind::Segment)
        .max_by_key(|f| (f.wal.timeline, f.wal.name.clone()))
    else {
        return Ok(Finding::warn(format!(
            "no segment of cluster {system_id} is archived under wal/{name} yet, so none can be fetched; hint: SELECT pg_switch_wal(); then check again (see pg.archiving)"
        )));
    };
    let user = fetch_user(shared, Some(system_id)).await?;
    let exe = std::env::current_exe().context("cannot find the dr executable")?;
    let config_path = std::fs::canonicalize(&config.path).unwrap_or_else(|_| config.path.clone());
    let identity = config
        .encryption
        .as_ref()
        .and_then(|e| e.identity_file.as_ref())
        .map(|f| {
            let f = config.dir().join(f);
            std::fs::canonicalize(&f).unwrap_or(f)
        });
    let identity_env = config
        .encryption
        .as_ref()
        .and_then(|e| e.identity_env.as_ref())
        .filter(|v| std::env::var_os(v).is_some());
    if newest.encrypted && identity.is_none() && identity_env.is_none() {
        return Ok(Finding::warn(format!(
            "{} is encrypted and no identity is configured on this host ([encryption] identity_file or identity_env), so whether the restore path opens it is unproven here; hint: prove it where the key is kept: `dr drill --pitr --target {name} --identity KEYFILE`",
            newest.wal.name
        )));
    }
    let dir = tempfile::Builder::new()
        .prefix("dr-check-fetch-")
        .tempdir()
        .context("cannot create a private temporary directory for wal.fetch")?;
    if user.name.is_some() {
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid))
            .with_context(|| format!("cannot hand {} to {}", dir.path().display(), user.label()))?;
    }
    let dest = dir.path().join("x");
    let mut cmd = ChildCommand::new(&exe, "dr wal-fetch")
        .arg("--config")
        .arg(&config_path)
        .args(["wal-fetch", "--target", name.as_str(), "--system-id"])
        .arg(system_id.to_string());
    if let Some(identity) = &identity {
        cmd = cmd.arg("--identity").arg(identity);
    }
    // What dr reads from its environment (storage credentials, the identity variable).
    let passed: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("DR_")
                || k.starts_with("AWS_")
                || config
                    .encryption
                    .as_ref()
                    .and_then(|e| e.identity_env.as_ref())
                    .is_some_and(|v| v == k)
        })
        .collect();
    let cmd = cmd
        .arg(&newest.wal.name)
        .arg(&dest)
        .envs(&passed)
        .run_as(user.name.as_deref())
        .current_dir(dir.path());
    let who = user.label();
    match cmd.output().await {
        Ok(_) => {
            let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
            if size == 0 {
                return Ok(Finding::fail(format!(
                    "dr wal-fetch of {} as {who} exited 0 but wrote nothing to {}; hint: run it by hand: {}",
                    newest.wal.name,
                    dest.display(),
                    exe.display()
                )));
            }
            Ok(Finding::pass(format!(
                "{who} fetched and opened {} (the newest archived segment, {}) with `dr wal-fetch --target {name}`, as restore_command runs it{}",
                newest.wal.name,
                crate::units::bytes(size),
                if identity.is_some() { " with the identity file" } else { "" }
            )))
        }
        Err(e) => {
            let mut fixes = Vec::new();
            let user_name = user.user_name();
            let group = &user.group_name;
            for (what, path) in [
                Some(("the identity file", identity.clone())),
                Some(("dr.toml", Some(config_path.clone()))),
            ]
            .into_iter()
            .flatten()
            {
                let Some(path) = path else { continue };
                if let Some(dir) = user.blocked_on_the_way(&path) {
                    fixes.push(format!(
                        "{user_name} cannot enter {} (on the way to {what} {}): chmod o+x {} (or chgrp {group} and chmod g+x)",
                        dir.display(),
                        path.display(),
                        dir.display()
                    ));
                } else if !user.may_read(&path) {
                    fixes.push(format!(
                        "{user_name} cannot read {what} {p}: chgrp {group} {p}; chmod 640 {p}",
                        p = path.display()
                    ));
                }
            }
            let local_root = match config.storage.as_ref().map(|s| &s.url) {
                Some(crate::config::StorageUrl::Local(root)) => Some(root),
                _ => None,
            };
            if let Some(root) = local_root {
                let object = root.join(&newest.key);
                if let Some(dir) = user.blocked_on_the_way(&object) {
                    fixes.push(format!(
                        "{user_name} cannot enter the storage directory {}: chgrp -R {group} {}; chmod -R g+rX {}",
                        dir.display(),
                        root.display(),
                        root.display()
                    ));
                } else if !user.may_read(&object) {
                    fixes.push(format!(
                        "{user_name} cannot read the archived segment {}: chgrp -R {group} {}; chmod -R g+rX {}",
                        object.display(),
                        root.display(),
                        root.display()
                    ));
                }
            }
            let hint = if fixes.is_empty() {
                format!(
                    "run it by hand as {user_name} to see why: {} --config {} wal-fetch --target {name} --system-id {system_id}{} {} /tmp/x",
                    exe.display(),
                    config_path.display(),
                    identity
                        .as_ref()
                        .map(|i| format!(" --identity {}", i.display()))
                        .unwrap_or_default(),
                    newest.wal.name
                )
            } else {
                fixes.join("; ")
            };
            // One hint per message: wal-fetch's own gives way to the one for this user.
            let error = format!("{e:#}");
            let error = error
                .split("hint:")
                .next()
                .unwrap_or_default()
                .trim_end_matches([' ', ';', '|']);
            Ok(Finding::fail(format!(
                "{who} cannot fetch the newest archived segment {} through the restore path, so a point-in-time restore would stop at its first segment: {error}; hint: {hint}",
                newest.wal.name
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readability_for_the_servers_user_follows_owner_group_and_other_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("team.key");
        std::fs::write(&key, "AGE-SECRET-KEY-1").unwrap();
        let gid = nix::unistd::Gid::from_raw(std::os::unix::fs::MetadataExt::gid(
            &std::fs::metadata(&key).unwrap(),
        ));
        // A user that owns nothing here; in the file's group or not.
        let stranger = |groups: Vec<nix::unistd::Gid>| FetchUser {
            name: Some("nobody".into()),
            uid: nix::unistd::Uid::from_raw(65534),
            gid: nix::unistd::Gid::from_raw(65534),
            groups,
            group_name: "nogroup".into(),
        };
        let set = |mode: u32| {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(0o600);
        assert!(!stranger(vec![gid]).may_read(&key));
        set(0o640);
        assert!(stranger(vec![gid]).may_read(&key));
        assert!(!stranger(vec![]).may_read(&key));
        set(0o644);
        assert!(stranger(vec![]).may_read(&key));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            stranger(vec![]).blocked_on_the_way(&key).as_deref(),
            Some(dir.path())
        );
    }
}
