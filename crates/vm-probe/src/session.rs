//! One blocking SSH operation with ssh2, on a socket `dial` connected: handshake → host key → auth → exec →
//! read → exit status, every step under a timeout and every failure naming its step.
//!
//! Runs only on the shell's own SSH threads (see [`crate::Ssh2Shell`]); it owns no async code
//! and keeps no session beyond one call. It knows nothing of what the commands mean.
//! Deadlines use the wall clock (`std::time::Instant`): these are real sockets, which a
//! paused tokio clock cannot speed up.
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use ssh2::{ErrorCode, Session};

use crate::config::{HostKeyPolicy, SshAuth, SshConfig};
use crate::{ScriptOutput, ShellError, SshStep, SshTarget};

const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_ERROR_PASSWORD_EXPIRED: i32 = -15;
const LIBSSH2_ERROR_AUTHENTICATION_FAILED: i32 = -18;
const LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED: i32 = -19;
const LIBSSH2_ERROR_METHOD_NOT_SUPPORTED: i32 = -33;

/// Credentials as used on the wire (the key file already read).
pub(crate) enum Credentials {
    Password(SecretString),
    Key { pem: SecretString, passphrase: Option<SecretString> },
}

impl Credentials {
    /// Reads the key file once; an unreadable key is a configuration error.
    pub(crate) fn load(auth: &SshAuth) -> Result<Self, ShellError> {
        match auth {
            SshAuth::Password(password) => Ok(Credentials::Password(password.clone())),
            SshAuth::PrivateKey { path, passphrase } => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    ShellError::Config(format!("cannot read SSH private key {}: {e}", path.display()))
                })?;
                Ok(Credentials::Key { pem: SecretString::from(pem), passphrase: passphrase.clone() })
            }
        }
    }
}

/// Host keys pinned per target (trust on first use).
#[derive(Default)]
pub(crate) struct HostKeyPins {
    pins: Mutex<HashMap<String, Vec<u8>>>,
}

impl HostKeyPins {
    /// Pins the key on first sight; `false` when a different key was pinned.
    fn check(&self, target: &str, key: &[u8]) -> bool {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        match pins.get(target) {
            Some(pinned) => pinned == key,
            None => {
                pins.insert(target.to_owned(), key.to_vec());
                true
            }
        }
    }

    pub(crate) fn forget(&self, target: &str) {
        self.pins.lock().unwrap_or_else(|p| p.into_inner()).remove(target);
    }
}

/// What to run once logged in.
pub(crate) struct Exec<'a> {
    pub command: &'a str,
    pub stdin: Option<&'a SecretString>,
    pub budget: Duration,
}

/// A logged-in session (kept only for the duration of one blocking call).
pub(crate) struct Login {
    session: Session,
    /// The session's socket (a duplicate handle), polled for readiness.
    socket: TcpStream,
    target: String,
}

impl Drop for Login {
    fn drop(&mut self) {
        let _ = self.session.disconnect(None, "bye", None);
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

fn failed(target: &str, step: SshStep, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ShellError {
    ShellError::Failed { target: target.to_owned(), step, source: e.into() }
}

fn timeout(target: &str, step: SshStep, after: Duration) -> ShellError {
    ShellError::Timeout { target: target.to_owned(), step, after }
}

fn is_timeout(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT)
}

/// Maps an ssh2 error at a step: libssh2's timeout code, or a failure that took the whole
/// budget (socket timeouts surface as several codes), is a timeout.
fn classify(target: &str, step: SshStep, e: ssh2::Error, started: Instant, budget: Duration) -> ShellError {
    if is_timeout(&e) || started.elapsed() + Duration::from_millis(50) >= budget {
        timeout(target, step, budget)
    } else {
        failed(target, step, e)
    }
}

/// Phase 2 on a socket whose SSH banner has arrived (see `dial`): key exchange, host
/// key check and authentication, each step within `io_timeout`.
pub(crate) fn login(
    tcp: TcpStream,
    target: &SshTarget,
    config: &SshConfig,
    credentials: &Credentials,
    pins: &HostKeyPins,
) -> Result<Login, ShellError> {
    let name = target.to_string();
    let io_budget = config.io_timeout;
    for result in [tcp.set_read_timeout(Some(io_budget)), tcp.set_write_timeout(Some(io_budget))] {
        result.map_err(|e| failed(&name, SshStep::Connect, e))?;
    }
    let _ = tcp.set_nodelay(true);
    // A second handle on the same socket, only to wait for readiness while reading output.
    let socket = tcp.try_clone().map_err(|e| failed(&name, SshStep::Connect, e))?;

    let mut session = Session::new().map_err(|e| failed(&name, SshStep::Handshake, e))?;
    session.set_tcp_stream(tcp);
    session.set_timeout(millis(io_budget));
    let started = Instant::now();
    session.handshake().map_err(|e| classify(&name, SshStep::Handshake, e, started, io_budget))?;

    if config.host_key_policy == HostKeyPolicy::PinPerVm {
        let (key, _) =
            session.host_key().ok_or_else(|| failed(&name, SshStep::HostKey, "server sent no host key"))?;
        if !pins.check(&name, key) {
            return Err(ShellError::HostKeyMismatch { target: name });
        }
    }

    let started = Instant::now();
    let result = match credentials {
        Credentials::Password(password) => {
            session.userauth_password(&config.username, password.expose_secret())
        }
        Credentials::Key { pem, passphrase } => session.userauth_pubkey_memory(
            &config.username,
            None,
            pem.expose_secret(),
            passphrase.as_ref().map(|p| p.expose_secret()),
        ),
    };
    match result {
        Ok(()) if session.authenticated() => Ok(Login { session, socket, target: name }),
        Ok(()) => Err(ShellError::AuthFailed { target: name, username: config.username.clone() }),
        Err(e) => match e.code() {
            ErrorCode::Session(
                LIBSSH2_ERROR_AUTHENTICATION_FAILED
                | LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED
                | LIBSSH2_ERROR_METHOD_NOT_SUPPORTED
                | LIBSSH2_ERROR_PASSWORD_EXPIRED,
            ) => Err(ShellError::AuthFailed { target: name, username: config.username.clone() }),
            _ => Err(classify(&name, SshStep::Auth, e, started, io_budget)),
        },
    }
}

impl Login {
    /// Runs one command: optional stdin (then EOF), stdout and stderr read to the end, exit
    /// status. The whole exchange fits in `exec.budget`.
    pub(crate) fn exec(&self, exec: &Exec<'_>) -> Result<ScriptOutput, ShellError> {
        let name = self.target.as_str();
        let started = Instant::now();
        let budget = exec.budget;
        let remaining = |step: SshStep| -> Result<u32, ShellError> {
            budget.checked_sub(started.elapsed()).map(millis).ok_or_else(|| timeout(name, step, budget))
        };
        let session = &self.session;

        session.set_timeout(remaining(SshStep::Exec)?);
        let mut channel =
            session.channel_session().map_err(|e| classify(name, SshStep::Exec, e, started, budget))?;
        channel.exec(exec.command).map_err(|e| classify(name, SshStep::Exec, e, started, budget))?;

        if let Some(stdin) = exec.stdin {
            session.set_timeout(remaining(SshStep::Io)?);
            let mut line = stdin.expose_secret().as_bytes().to_vec();
            line.push(b'\n');
            let written = channel.write_all(&line);
            line.fill(0);
            written.map_err(|e| io_error(name, e, started, budget))?;
        }
        session.set_timeout(remaining(SshStep::Io)?);
        channel.send_eof().map_err(|e| classify(name, SshStep::Io, e, started, budget))?;

        let (stdout, stderr) = read_outputs(&mut channel, session, &self.socket, name, started, budget)?;

        session.set_timeout(remaining(SshStep::Exit)?);
        channel.wait_close().map_err(|e| classify(name, SshStep::Exit, e, started, budget))?;
        let exit_status = match channel.exit_signal() {
            Ok(signal) if signal.exit_signal.is_some() => 128 + signal_number(signal.exit_signal.as_deref()),
            _ => channel.exit_status().map_err(|e| failed(name, SshStep::Exit, e))?,
        };
        Ok(ScriptOutput {
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            exit_status,
        })
    }
}

fn io_error(name: &str, e: io::Error, started: Instant, budget: Duration) -> ShellError {
    if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
        || started.elapsed() + Duration::from_millis(50) >= budget
    {
        timeout(name, SshStep::Io, budget)
    } else {
        failed(name, SshStep::Io, e)
    }
}

/// Reads stdout and stderr together until the channel's EOF, in non-blocking mode with
/// our own deadline: reading one stream after the other stalls once the other fills the
/// channel window, and libssh2's blocking reads do not bound the whole exchange. Between
/// reads the thread sleeps in `poll(2)` on the session's socket, in the direction libssh2
/// is blocked on, until the socket is ready or the budget is spent.
fn read_outputs(
    channel: &mut ssh2::Channel,
    session: &Session,
    socket: &TcpStream,
    name: &str,
    started: Instant,
    budget: Duration,
) -> Result<(Vec<u8>, Vec<u8>), ShellError> {
    session.set_blocking(false);
    let result = read_outputs_nonblocking(channel, session, socket, name, started, budget);
    session.set_blocking(true);
    result
}

fn read_outputs_nonblocking(
    channel: &mut ssh2::Channel,
    session: &Session,
    socket: &TcpStream,
    name: &str,
    started: Instant,
    budget: Duration,
) -> Result<(Vec<u8>, Vec<u8>), ShellError> {
    let mut outputs = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut progressed = false;
        for (stream_id, sink) in [(0, &mut outputs.0), (1, &mut outputs.1)] {
            let mut stream = channel.stream(stream_id);
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        sink.extend_from_slice(&buf[..n]);
                        progressed = true;
                    }
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                        break;
                    }
                    Err(e) => return Err(io_error(name, e, started, budget)),
                }
            }
        }
        // EOF from the server and no unread data left on either stream.
        if channel.eof() {
            return Ok(outputs);
        }
        if progressed {
            continue;
        }
        let Some(left) = budget.checked_sub(started.elapsed()) else {
            return Err(timeout(name, SshStep::Io, budget));
        };
        wait_for_socket(session, socket, left).map_err(|e| failed(name, SshStep::Io, e))?;
    }
}

/// Blocks until the socket is ready in the direction libssh2 last blocked on (reading
/// when it says nothing), or `left` has passed. Spurious wake-ups are harmless: the caller
/// reads again and comes back.
fn wait_for_socket(session: &Session, socket: &TcpStream, left: Duration) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;

    let flags = match session.block_directions() {
        ssh2::BlockDirections::Outbound => PollFlags::POLLOUT,
        ssh2::BlockDirections::Both => PollFlags::POLLIN | PollFlags::POLLOUT,
        ssh2::BlockDirections::Inbound | ssh2::BlockDirections::None => PollFlags::POLLIN,
    };
    let wait = PollTimeout::try_from(left.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(socket.as_fd(), flags)];
    match poll(&mut fds, wait) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

fn signal_number(name: Option<&str>) -> i32 {
    match name.unwrap_or_default().trim_start_matches("SIG") {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ABRT" => 6,
        "KILL" => 9,
        "SEGV" => 11,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 127,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_keep_the_first_key_until_forgotten() {
        let pins = HostKeyPins::default();
        assert!(pins.check("h:1", b"a"));
        assert!(pins.check("h:1", b"a"));
        assert!(!pins.check("h:1", b"b"));
        assert!(pins.check("h:2", b"b"));
        pins.forget("h:1");
        assert!(pins.check("h:1", b"b"));
    }

    #[test]
    fn unreadable_key_file_is_a_configuration_error() {
        let auth = SshAuth::PrivateKey { path: "/nonexistent/key".into(), passphrase: None };
        let err = Credentials::load(&auth).err().unwrap();
        assert!(matches!(err, ShellError::Config(_)));
        assert!(!err.is_retryable());
    }
}
