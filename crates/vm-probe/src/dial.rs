//! Phase 1 of every SSH operation: TCP connect and wait for the server's SSH banner, on
//! the async runtime (no thread, no CPU while a black hole keeps us waiting).
//!
//! The banner is only *peeked*: it stays in the socket for libssh2's own version
//! exchange in phase 2, so the handshake that follows is the ordinary one. A server sends
//! its identification line as soon as the connection is up; it may send other lines
//! first, which are skipped. A VM that accepts TCP but never says `SSH-` is a black hole
//! and costs one deadline, whatever the number of such VMs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::{ShellError, SshStep, SshTarget};

/// Longest text a server may send before its `SSH-` line (the protocol's own limit is
/// generous; this one only bounds our peek buffer).
const MAX_PRE_BANNER: usize = 8 * 1024;

/// Pause before peeking again when only part of a line has arrived.
const PARTIAL_LINE_PAUSE: Duration = Duration::from_millis(5);

/// Connects within `connect_timeout`, then waits up to `banner_timeout` for the server's
/// `SSH-` identification line. Returns a blocking std socket ready for libssh2.
pub(crate) async fn dial(
    target: &SshTarget,
    connect_timeout: Duration,
    banner_timeout: Duration,
) -> Result<std::net::TcpStream, ShellError> {
    let name = target.to_string();
    let stream = connect(target, &name, connect_timeout).await?;
    match tokio::time::timeout(banner_timeout, wait_for_banner(&stream)).await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return Err(failed(&name, SshStep::Handshake, reason)),
        Err(_) => {
            return Err(ShellError::Timeout {
                target: name,
                step: SshStep::Handshake,
                after: banner_timeout,
            });
        }
    }
    let std_stream = stream.into_std().map_err(|e| failed(&name, SshStep::Connect, e))?;
    std_stream.set_nonblocking(false).map_err(|e| failed(&name, SshStep::Connect, e))?;
    Ok(std_stream)
}

async fn connect(target: &SshTarget, name: &str, budget: Duration) -> Result<TcpStream, ShellError> {
    let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        // Orka hands out IPs: no resolver (and no blocking thread) involved.
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::time::timeout(budget, tokio::net::lookup_host((target.host.as_str(), target.port)))
            .await
            .map_err(|_| timeout(name, SshStep::Connect, budget))?
            .map_err(|e| failed(name, SshStep::Connect, e))?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(budget, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = Some(failed(name, SshStep::Connect, e)),
            Err(_) => last = Some(timeout(name, SshStep::Connect, budget)),
        }
    }
    Err(last.unwrap_or_else(|| failed(name, SshStep::Connect, "host resolved to no address")))
}

/// Peeks until a complete line starting with `SSH-` is buffered.
async fn wait_for_banner(stream: &TcpStream) -> Result<(), String> {
    let mut buf = vec![0u8; MAX_PRE_BANNER];
    loop {
        let n = stream.peek(&mut buf).await.map_err(|e| format!("reading the SSH banner: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection before sending an SSH banner".into());
        }
        match banner_state(&buf[..n]) {
            BannerState::Complete => return Ok(()),
            BannerState::Missing if n == buf.len() => {
                return Err(format!("no SSH banner in the first {MAX_PRE_BANNER} bytes"));
            }
            // A peek returns at once while any byte is buffered: wait for more briefly.
            BannerState::Missing => tokio::time::sleep(PARTIAL_LINE_PAUSE).await,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum BannerState {
    Complete,
    Missing,
}

/// Whether `received` holds a whole `SSH-…\n` line (other lines may come first).
fn banner_state(received: &[u8]) -> BannerState {
    let mut rest = received;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        if rest.starts_with(b"SSH-") {
            return BannerState::Complete;
        }
        rest = &rest[end + 1..];
    }
    BannerState::Missing
}

fn failed(name: &str, step: SshStep, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ShellError {
    ShellError::Failed { target: name.to_owned(), step, source: e.into() }
}

fn timeout(name: &str, step: SshStep, after: Duration) -> ShellError {
    ShellError::Timeout { target: name.to_owned(), step, after }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_banner_line_is_complete_only_with_its_newline() {
        assert_eq!(banner_state(b"SSH-2.0-OpenSSH_9.6\r\n"), BannerState::Complete);
        assert_eq!(banner_state(b"SSH-2.0-OpenSS"), BannerState::Missing);
        assert_eq!(banner_state(b""), BannerState::Missing);
    }

    #[test]
    fn lines_before_the_banner_are_skipped() {
        assert_eq!(banner_state(b"welcome\r\nSSH-2.0-x\r\n"), BannerState::Complete);
        assert_eq!(banner_state(b"welcome\r\nnot yet\r\n"), BannerState::Missing);
    }
}
