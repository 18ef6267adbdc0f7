//! A consistent RDB snapshot, received the way a replica receives it: `REPLCONF rdb-only`,
//! `PSYNC ? -1` (or `SYNC` on older servers), then the RDB payload, framed either by its
//! length or (diskless replication) by a 40-byte end mark.
//!
//! Why the protocol and not `redis-cli --rdb` as a child: the backup host needs no
//! redis-tools package of a matching version; the server's refusal comes back as text
//! that `auto` can act on (fall back to keys, saying why); the payload streams straight
//! into the hash/compress/store pipeline with its own timeouts instead of through a
//! temporary file; and the password stays inside this process (no child environment).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::conn::RedisEndpoint;

const MARK_LEN: usize = 40;

/// The outcome of asking for a snapshot.
pub enum Handshake {
    Snapshot(SnapshotStream),
    /// The server will not replicate to us (managed Redis, renamed or forbidden commands).
    Refused(String),
}

enum Framing {
    Length(u64),
    EndMark([u8; MARK_LEN]),
}

/// The RDB payload, ready to be read.
pub struct SnapshotStream {
    sock: BufReader<TcpStream>,
    framing: Framing,
    idle: Duration,
}

fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One reply line without its CRLF; `None` when the server closed the connection.
async fn line(sock: &mut BufReader<TcpStream>, idle: Duration) -> Result<Option<String>> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        idle,
        (&mut *sock).take(4096).read_until(b'\n', &mut buf),
    )
    .await
    .map_err(|_| {
        anyhow!(super::conn::Unanswered(format!(
            "the server sent nothing for {} (timeout); hint: check its load and network, or raise timeout in its [[redis]] table",
            crate::units::duration(idle)
        )))
    })??;
    if read == 0 {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&buf).trim_end().to_string()))
}

/// The next line that is not a keep-alive newline.
async fn reply(sock: &mut BufReader<TcpStream>, idle: Duration) -> Result<Option<String>> {
    loop {
        match line(sock, idle).await? {
            Some(l) if l.is_empty() => continue,
            other => return Ok(other),
        }
    }
}

async fn send(sock: &mut BufReader<TcpStream>, args: &[&[u8]]) -> Result<()> {
    sock.get_mut()
        .write_all(&resp_command(args))
        .await
        .context("cannot send to the Redis server")
}

/// Connects, authenticates and asks for a full snapshot.
pub async fn request_snapshot(endpoint: &RedisEndpoint) -> Result<Handshake> {
    let addr = format!("{}:{}", endpoint.host, endpoint.port);
    let stream = tokio::time::timeout(endpoint.connect_timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| anyhow!("connecting to {} timed out", endpoint.public_url))?
        .with_context(|| format!("cannot connect to Redis at {}", endpoint.public_url))?;
    stream.set_nodelay(true).ok();
    let mut sock = BufReader::with_capacity(256 * 1024, stream);
    let closed = || anyhow!("{} closed the connection", endpoint.public_url);
    // The server sends a newline every second while it prepares the snapshot: silence
    // for the target's `timeout` means it stalled.
    let idle = endpoint.connect_timeout;

    if let Some(password) = &endpoint.password {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &endpoint.username {
            args.push(user.as_bytes());
        }
        args.push(password.expose().as_bytes());
        send(&mut sock, &args).await?;
        let answer = reply(&mut sock, idle).await?.ok_or_else(closed)?;
        if answer.starts_with('-') {
            bail!(
                "Redis at {} refused the credentials: {}; hint: check the user and password in the target's URL",
                endpoint.public_url,
                answer.trim_start_matches('-')
            );
        }
    }
    // Servers before 7.0 do not know rdb-only; they then also stream commands after the
    // snapshot, which we never read: the connection is closed once the snapshot is in.
    for option in [&[&b"rdb-only"[..], b"1"], &[b"capa", b"eof"]] {
        let mut args: Vec<&[u8]> = vec![b"REPLCONF"];
        args.extend_from_slice(option);
        send(&mut sock, &args).await?;
        let answer = reply(&mut sock, idle).await?.ok_or_else(closed)?;
        if answer.starts_with("-NOAUTH") {
            bail!(
                "Redis at {} requires a password; hint: put it in the target's URL (redis://:PASSWORD@host:port) through url_env",
                endpoint.public_url
            );
        }
    }

    send(&mut sock, &[b"PSYNC", b"?", b"-1"]).await?;
    let psync = match reply(&mut sock, idle).await? {
        None => {
            return Ok(Handshake::Refused(
                "the server closed the connection when asked for PSYNC".into(),
            ))
        }
        Some(l) => l,
    };
    let header = if psync.starts_with("+FULLRESYNC") {
        reply(&mut sock, idle).await?
    } else if let Some(psync_error) = psync.strip_prefix('-') {
        send(&mut sock, &[b"SYNC"]).await?;
        match reply(&mut sock, idle).await? {
            Some(l) if l.starts_with('-') => {
                return Ok(Handshake::Refused(format!(
                    "the server refused PSYNC ({psync_error}) and SYNC ({})",
                    l.trim_start_matches('-')
                )))
            }
            None => {
                return Ok(Handshake::Refused(format!(
                    "the server refused PSYNC ({psync_error}) and closed the connection on SYNC"
                )))
            }
            other => other,
        }
    } else {
        bail!(
            "unexpected answer to PSYNC from {}: {psync:?}",
            endpoint.public_url
        );
    };
    let header = header.ok_or_else(closed)?;
    let framing = parse_header(&header)
        .with_context(|| format!("unexpected snapshot header from {}", endpoint.public_url))?;
    Ok(Handshake::Snapshot(SnapshotStream {
        sock,
        framing,
        idle,
    }))
}

fn parse_header(header: &str) -> Result<Framing> {
    let body = header
        .strip_prefix('$')
        .ok_or_else(|| anyhow!("{header:?} is not a bulk header"))?;
    if let Some(mark) = body.strip_prefix("EOF:") {
        let mark: [u8; MARK_LEN] = mark
            .as_bytes()
            .try_into()
            .map_err(|_| anyhow!("the end mark is not {MARK_LEN} bytes"))?;
        return Ok(Framing::EndMark(mark));
    }
    Ok(Framing::Length(
        body.parse()
            .map_err(|_| anyhow!("{header:?} is not a length"))?,
    ))
}

impl SnapshotStream {
    /// Passes the RDB bytes (without framing) to `tx`; returns how many. An early end of
    /// the connection is an error: the snapshot is then incomplete.
    pub async fn forward(mut self, tx: mpsc::Sender<Bytes>) -> Result<u64> {
        let mut total = 0u64;
        let idle = self.idle;
        let stalled = move || {
            anyhow!(super::conn::Unanswered(format!(
                "the server stopped sending the snapshot for {} (timeout); hint: check its load and network, or raise timeout in its [[redis]] table",
                crate::units::duration(idle)
            )))
        };
        match self.framing {
            Framing::Length(len) => {
                let mut left = len;
                while left > 0 {
                    let mut buf = vec![0u8; (256 * 1024).min(left as usize)];
                    let n = tokio::time::timeout(self.idle, self.sock.read(&mut buf))
                        .await
                        .map_err(|_| stalled())??;
                    if n == 0 {
                        bail!("the server closed the connection after {total} of {len} snapshot bytes");
                    }
                    buf.truncate(n);
                    left -= n as u64;
                    total += n as u64;
                    if tx.send(Bytes::from(buf)).await.is_err() {
                        bail!("the snapshot reader stopped");
                    }
                }
            }
            Framing::EndMark(mark) => {
                // The last MARK_LEN bytes seen are held back until we know they are not the mark.
                let mut held: Vec<u8> = Vec::with_capacity(256 * 1024 + MARK_LEN);
                loop {
                    let start = held.len();
                    held.resize(start + 256 * 1024, 0);
                    let n = tokio::time::timeout(self.idle, self.sock.read(&mut held[start..]))
                        .await
                        .map_err(|_| stalled())??;
                    held.truncate(start + n);
                    if n == 0 {
                        bail!("the server closed the connection after {total} snapshot bytes, before the end mark");
                    }
                    let done = held.len() >= MARK_LEN && held[held.len() - MARK_LEN..] == mark;
                    let keep = if done {
                        MARK_LEN
                    } else {
                        MARK_LEN.min(held.len())
                    };
                    let ready = held.len() - keep;
                    if ready > 0 {
                        let rest = held.split_off(ready);
                        total += ready as u64;
                        if tx
                            .send(Bytes::from(std::mem::replace(&mut held, rest)))
                            .await
                            .is_err()
                        {
                            bail!("the snapshot reader stopped");
                        }
                    }
                    if done {
                        break;
                    }
                }
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays() {
        assert_eq!(
            resp_command(&[b"PSYNC", b"?", b"-1"]),
            b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n"
        );
    }

    #[test]
    fn headers() {
        assert!(matches!(
            parse_header("$1234").unwrap(),
            Framing::Length(1234)
        ));
        let mark = "a".repeat(40);
        assert!(matches!(
            parse_header(&format!("$EOF:{mark}")).unwrap(),
            Framing::EndMark(_)
        ));
        assert!(parse_header("$EOF:short").is_err());
        assert!(parse_header("+OK").is_err());
    }
}
