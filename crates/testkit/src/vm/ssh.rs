//! The SSH side of one fake VM: a russh server handler with password and public-key auth
//! and `exec` channels (stdin, stdout, stderr, exit status). Each exec runs for real as
//! `/bin/sh -c <command>` in the VM's scratch root (see `rewrite` for the path trick),
//! in its own process group and marked so `destroy` can find its detached descendants.
//! No shells, PTYs, port forwarding or SFTP: the controller uses none.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::process::MARKER_VAR;
use super::rewrite::rewrite_paths;

/// What the SSH handler of one VM needs to know.
pub(crate) struct VmContext {
    pub name: String,
    pub root: PathBuf,
    pub username: String,
    pub password: String,
    pub authorized_keys: Vec<PublicKey>,
    pub reject_auth: bool,
    pub drop_on_exec: bool,
    pub env: Vec<(String, String)>,
    pub marker: String,
    pub process_groups: Mutex<Vec<u32>>,
}

impl VmContext {
    fn home(&self) -> PathBuf {
        self.root.join("Users").join(&self.username)
    }
}

/// One SSH connection.
pub(crate) struct Connection {
    pub vm: Arc<VmContext>,
    pub stdins: HashMap<ChannelId, mpsc::UnboundedSender<Vec<u8>>>,
}

impl Connection {
    fn key_authorized(&self, user: &str, key: &PublicKey) -> bool {
        !self.vm.reject_auth
            && user == self.vm.username
            && self.vm.authorized_keys.iter().any(|k| k.key_data() == key.key_data())
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if !self.vm.reject_auth && user == self.vm.username && password == self.vm.password {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_authorized(user, offer.public_key) { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(if self.key_authorized(user, key.public_key) { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.vm.drop_on_exec {
            tracing::debug!(vm = %self.vm.name, "fake VM drops the connection mid-session");
            return Err(russh::Error::Disconnect);
        }
        let command = rewrite_paths(&String::from_utf8_lossy(data), &self.vm.root);
        let home = self.vm.home();
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&command)
            .current_dir(&home)
            .env("HOME", &home)
            .env("USER", &self.vm.username)
            .env("LOGNAME", &self.vm.username)
            .env("SHELL", "/bin/sh")
            .env("TMPDIR", self.vm.root.join("tmp"))
            .envs(self.vm.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(MARKER_VAR, &self.vm.marker)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(vm = %self.vm.name, error = &e as &dyn std::error::Error, "fake VM could not spawn sh");
                session.channel_failure(channel)?;
                return Ok(());
            }
        };
        if let Some(pid) = child.id() {
            self.vm.process_groups.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
        }
        session.channel_success(channel)?;

        let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.stdins.insert(channel, stdin_tx);
        if let Some(mut stdin) = child.stdin.take() {
            tokio::spawn(async move {
                while let Some(bytes) = stdin_rx.recv().await {
                    if stdin.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            });
        }
        let handle = session.handle();
        let stdout = child.stdout.take().map(|out| tokio::spawn(pump(out, handle.clone(), channel, None)));
        let stderr = child.stderr.take().map(|err| tokio::spawn(pump(err, handle.clone(), channel, Some(1))));
        tokio::spawn(async move {
            let status = child.wait().await;
            for pump in [stdout, stderr].into_iter().flatten() {
                let _ = pump.await;
            }
            let code = status.ok().and_then(|s| s.code()).unwrap_or(255);
            let _ = handle.exit_status_request(channel, u32::try_from(code).unwrap_or(255)).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(stdin) = self.stdins.get(&channel) {
            let _ = stdin.send(data.to_vec());
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.stdins.remove(&channel);
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.stdins.remove(&channel);
        Ok(())
    }
}

/// Copies a child's output to the channel (stdout, or extended data `ext`).
async fn pump(mut from: impl tokio::io::AsyncRead + Unpin, to: Handle, channel: ChannelId, ext: Option<u32>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let bytes = bytes::Bytes::copy_from_slice(&buf[..n]);
        let sent = match ext {
            None => to.data(channel, bytes).await,
            Some(ext) => to.extended_data(channel, ext, bytes).await,
        };
        if sent.is_err() {
            return;
        }
    }
}
