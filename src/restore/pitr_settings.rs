//! The data directory of a point-in-time restore and what dr writes into it: the checks of
//! the directory, the restore_command (and its probe as the server's OS user), the
//! recovery settings, and how the server is started.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::pitr_request::PitrRequest;
use super::pitr_target::RecoveryTarget;
use super::recovery;
use crate::config::{Config, PostgresTarget};
use crate::error::usage;
use crate::pg::tools;
use crate::process::ChildCommand;
use crate::wal::continuity::Chain;

/// `Ok(true)` when dr creates the directory; refuses a non-empty one (exit 2).
pub(super) fn check_pgdata(pgdata: &Path) -> Result<bool> {
    if !pgdata.is_absolute() {
        return Err(usage(format!(
            "--pgdata {} is relative; hint: pass an absolute path (restore_command and pg_ctl run elsewhere)",
            pgdata.display()
        )));
    }
    // Inside another cluster's data directory (a live one, most likely): its files and
    // backups would carry the restored copy along, and a slip of one path component would
    // point at the cluster itself.
    if let Some(cluster) = pgdata
        .ancestors()
        .skip(1)
        .find(|a| a.join("PG_VERSION").is_file() && a.join("global").join("pg_control").is_file())
    {
        return Err(usage(format!(
            "--pgdata {} lies inside the data directory of another cluster ({}); nothing was changed; hint: restore beside it, never inside it",
            pgdata.display(),
            cluster.display()
        )));
    }
    match std::fs::read_dir(pgdata) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(usage(format!(
                    "--pgdata {} is not empty; nothing was changed; hint: restore into a new or empty directory (a point-in-time restore never overwrites a data directory)",
                    pgdata.display()
                )));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = pgdata.parent().unwrap_or(Path::new("/"));
            if !parent.is_dir() {
                return Err(usage(format!(
                    "--pgdata {}: its parent {} does not exist; hint: create it first",
                    pgdata.display(),
                    parent.display()
                )));
            }
            Ok(true)
        }
        Err(e) => Err(usage(format!(
            "--pgdata {} cannot be read ({e}); hint: pass a directory dr may create or use",
            pgdata.display()
        ))),
    }
}

pub(super) fn existing_parent(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        match p.parent() {
            Some(parent) => p = parent.to_path_buf(),
            None => break,
        }
    }
    p
}

/// Removes what dr unpacked unless the restore got far enough to keep it.
pub(super) struct DataDirectory {
    pub(super) path: PathBuf,
    pub(super) created: bool,
    pub(super) keep: bool,
}

impl Drop for DataDirectory {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if self.created {
            let _ = std::fs::remove_dir_all(&self.path);
        } else if let Ok(entries) = std::fs::read_dir(&self.path) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

pub(super) fn single_quoted(text: &str, what: &str) -> Result<String> {
    if text.contains('\'') || text.contains('\n') {
        bail!("{what} {text:?} contains a quote or a newline, which postgresql.auto.conf cannot hold; hint: use a path without them");
    }
    Ok(format!("'{text}'"))
}

/// The restore_command the server runs: this dr, this dr.toml, this cluster.
pub(super) fn restore_command(req: &PitrRequest<'_>, system_id: u64) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the dr executable")?;
    let config =
        std::fs::canonicalize(&req.config.path).unwrap_or_else(|_| req.config.path.clone());
    let mut fetch = format!(
        "{} --config {} wal-fetch --target {} --system-id {system_id}",
        exe.display(),
        config.display(),
        req.target.name
    );
    if let Some(identity) = &req.identity_file {
        let identity = std::fs::canonicalize(identity).unwrap_or_else(|_| identity.clone());
        fetch.push_str(&format!(" --identity {}", identity.display()));
    }
    fetch.push_str(" %f %p");
    Ok(fetch)
}

/// The variables of dr's environment that restore_command needs: the ones dr.toml names
/// for storage credentials and the identity, and the standard AWS ones. The server dr
/// starts gets them in its environment, as the operator's own service would.
pub(super) fn server_env(config: &Config) -> Vec<(String, String)> {
    let mut names: Vec<String> = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    if let Some(s3) = config.storage.as_ref().and_then(|s| s.s3.as_ref()) {
        names.extend(s3.access_key_id_env.clone());
        names.extend(s3.secret_access_key_env.clone());
    }
    if let Some(e) = &config.encryption {
        names.extend(e.identity_env.clone());
    }
    names
        .into_iter()
        .filter_map(|n| std::env::var(&n).ok().map(|v| (n, v)))
        .collect()
}

/// Files the server's OS user must read for restore_command to work.
pub(super) fn files_restore_command_reads(req: &PitrRequest<'_>) -> Vec<PathBuf> {
    let config_dir = req.config.path.parent().unwrap_or(Path::new("."));
    let mut files = vec![req.config.path.clone()];
    let identity = req.identity_file.clone().or_else(|| {
        req.config
            .encryption
            .as_ref()
            .and_then(|e| e.identity_file.as_ref())
            .map(|f| config_dir.join(f))
    });
    files.extend(identity);
    files
        .into_iter()
        .map(|f| std::fs::canonicalize(&f).unwrap_or(f))
        .collect()
}

/// Runs restore_command for the first segment recovery needs, as the server will: as its
/// OS user, through the shell. A key or dr.toml that user cannot read fails here, before
/// anything is unpacked, not an hour into recovery.
pub(super) async fn probe_restore_command(
    req: &PitrRequest<'_>,
    system_id: u64,
    run_as: Option<&str>,
    first: &str,
) -> Result<((), String)> {
    let command = restore_command(req, system_id)?;
    let dir = tempfile::Builder::new()
        .prefix("dr-fetch-probe-")
        .tempdir()
        .context("cannot create a directory for the restore_command probe")?;
    if let Some(user) = run_as {
        recovery::chown_to(dir.path(), user)?;
    }
    let dest = dir.path().join(first);
    let line = command
        .replace("%f", first)
        .replace("%p", &dest.display().to_string());
    let ran = ChildCommand::new("sh", "restore_command")
        .envs(&server_env(req.config))
        .args(["-c", &line])
        .run_as(run_as)
        .current_dir(dir.path())
        .output()
        .await;
    let fetched = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    if ran.is_ok() && fetched > 0 {
        let who = run_as.map_or("dr's own user".to_string(), |u| format!("the {u} OS user"));
        return Ok((
            (),
            format!("{who} fetched and opened {first} with restore_command"),
        ));
    }
    let user = run_as.unwrap_or("the server's OS user");
    let mut fixes = Vec::new();
    if let Some(u) = run_as {
        for file in files_restore_command_reads(req) {
            let readable = ChildCommand::new("test", "test -r")
                .arg("-r")
                .arg(&file)
                .run_as(Some(u))
                .output()
                .await
                .is_ok();
            if !readable {
                fixes.push(format!(
                    "chgrp {u} {f}; chmod 640 {f} (the server runs restore_command as {u}, which cannot read it)",
                    f = file.display()
                ));
            }
        }
    }
    let why = match ran {
        Err(e) => format!("{e:#}"),
        Ok(_) => "it exited 0 but wrote nothing".into(),
    };
    if fixes.is_empty() {
        fixes.push(format!(
            "run it as {user} to see why: {}",
            match run_as {
                Some(u) => format!("runuser -u {u} -- {line}"),
                None => line.clone(),
            }
        ));
    }
    bail!(
        "restore_command cannot fetch {first}, the first segment recovery needs, as {user}: {why}; nothing was changed; hint: {}",
        fixes.join("; ")
    )
}

/// Writes the recovery settings into postgresql.auto.conf (replacing inherited ones) and
/// the signal file.
pub(super) fn write_recovery_settings(
    req: &PitrRequest<'_>,
    recovery_target: &RecoveryTarget,
    chain: &Chain,
    system_id: u64,
) -> Result<String> {
    let pgdata = req.pgdata;
    let fetch = restore_command(req, system_id)?;
    let mut settings: Vec<(String, String)> = vec![(
        "restore_command".into(),
        single_quoted(&fetch, "restore_command")?,
    )];
    for (k, v) in recovery_target.settings() {
        settings.push((k, single_quoted(&v, "the recovery target")?));
    }
    // With --start dr checks where replay stopped before anything promotes (see
    // `recovery`); without it the operator's own start promotes at the target.
    let watched = req.start;
    if !matches!(recovery_target, RecoveryTarget::Latest) {
        let action = if watched { "'pause'" } else { "'promote'" };
        settings.push(("recovery_target_action".into(), action.into()));
    }
    settings.push((
        "recovery_target_timeline".into(),
        format!("'{}'", chain.newest()),
    ));
    if !req.archive {
        settings.push(("archive_mode".into(), "'off'".into()));
    }
    if let Some(dir) = &req.sandbox_socket_dir {
        settings.push(("listen_addresses".into(), "''".into()));
        settings.push((
            "unix_socket_directories".into(),
            single_quoted(&dir.display().to_string(), "the socket directory")?,
        ));
        settings.push((
            "hba_file".into(),
            single_quoted(
                &pgdata.join("dr_sandbox_hba.conf").display().to_string(),
                "the hba file",
            )?,
        ));
        std::fs::write(
            pgdata.join("dr_sandbox_hba.conf"),
            "# dr drill sandbox: a socket in a directory only dr's user can enter\nlocal all all trust\n",
        )?;
    }
    let mut text = format!(
        "\n{} ({}): recovery of base backup to {}\n",
        recovery::DR_BLOCK_MARK,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        recovery_target.describe()
    );
    for (k, v) in &settings {
        text.push_str(&format!("{k} = {v}\n"));
    }
    let auto = pgdata.join("postgresql.auto.conf");
    // Recovery settings the copied cluster carried (a previous restore's target, its
    // restore_command, a standby's primary_conninfo) would steer this recovery: replaced.
    let (mut current, inherited) =
        recovery::strip_inherited(&std::fs::read_to_string(&auto).unwrap_or_default());
    current.push_str(&text);
    std::fs::write(&auto, current).with_context(|| format!("cannot write {}", auto.display()))?;
    // To the latest, a watched recovery runs as a standby: it waits for more WAL instead of
    // promoting when a segment cannot be had, and dr decides.
    let signal = if watched && matches!(recovery_target, RecoveryTarget::Latest) {
        "standby.signal"
    } else {
        "recovery.signal"
    };
    for stale in [
        "recovery.signal",
        "standby.signal",
        "postmaster.pid",
        "postmaster.opts",
        // Where earlier versions of dr kept their recovery log.
        "log/dr-recovery.log",
    ] {
        let _ = std::fs::remove_file(pgdata.join(stale));
    }
    std::fs::write(pgdata.join(signal), "")?;
    std::fs::create_dir_all(pgdata.join("log"))?;
    std::fs::create_dir_all(pgdata.join("pg_wal").join("archive_status"))?;
    Ok(format!(
        "{signal} and {} written{}: {}",
        auto.display(),
        if inherited.is_empty() {
            String::new()
        } else {
            format!(" (replacing the copy's own {})", inherited.join(", "))
        },
        settings
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The OS user the server runs as: `postgres` when dr is root (PostgreSQL refuses root).
pub(super) fn server_user() -> Result<Option<String>> {
    Ok(nix::unistd::Uid::effective()
        .is_root()
        .then(|| "postgres".to_string()))
}

/// Gives the data directory to the server's OS user, mode 0700 as PostgreSQL requires.
pub(super) fn hand_over(pgdata: &Path, run_as: Option<&str>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700))?;
    let Some(user) = run_as else {
        return Ok(());
    };
    let pw = nix::unistd::User::from_name(user)?.with_context(|| {
        format!("running as root, the restored server needs the {user} OS user; hint: install the postgresql package, which creates it")
    })?;
    let mut stack = vec![pgdata.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(pw.uid.as_raw()), Some(pw.gid.as_raw()))
            .with_context(|| format!("cannot give {} to {user}", p.display()))?;
        if p.is_dir() && !p.is_symlink() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

/// The server binaries of the backup's own major: a physical copy starts only under the
/// major that wrote it, so another one is refused here, before anything is unpacked.
pub(super) async fn server_bin_dir(target: &PostgresTarget, major: u32) -> Result<PathBuf> {
    let versioned = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if versioned.join("pg_ctl").exists() {
        return Ok(versioned);
    }
    let dir = tools::find_server_bin_dir(target.pg_bin_dir.as_deref())?;
    let line = crate::process::version_line(&dir.join("postgres")).await?;
    let (found, _) = tools::parse_version(&line).with_context(|| {
        format!(
            "cannot read the version of {}",
            dir.join("postgres").display()
        )
    })?;
    if found != major {
        return Err(usage(format!(
            "the base backup was taken from PostgreSQL {major}, and the server binaries found are PostgreSQL {found} ({}): a physical backup starts only under its own major; nothing was changed; hint: install the PostgreSQL {major} server, or point pg_bin_dir at its bin directory (a dump restores into the same or a newer major)",
            dir.display()
        )));
    }
    Ok(dir)
}

pub(super) fn start_command(
    bin_dir: &Path,
    pgdata: &Path,
    log: &Path,
    port: Option<u16>,
    run_as: Option<&str>,
) -> String {
    let mut cmd = String::new();
    if let Some(user) = run_as {
        cmd.push_str(&format!("runuser -u {user} -- "));
    }
    cmd.push_str(&format!(
        "{} -D {} -l {}",
        bin_dir.join("pg_ctl").display(),
        pgdata.display(),
        log.display()
    ));
    if let Some(p) = port {
        cmd.push_str(&format!(" -o '-p {p}'"));
    }
    cmd.push_str(" start");
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_command_runs_as_postgres_when_root() {
        let c = start_command(
            Path::new("/usr/lib/postgresql/15/bin"),
            Path::new("/srv/pg/restored"),
            Path::new("/srv/pg/restored.dr-recovery.log"),
            Some(5544),
            Some("postgres"),
        );
        assert_eq!(c, "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D /srv/pg/restored -l /srv/pg/restored.dr-recovery.log -o '-p 5544' start");
    }
}
