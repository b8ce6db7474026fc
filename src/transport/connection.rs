//! One open SSH connection: exec with stdin on its own channel (opened ahead when asked),
//! forwarded TCP requests, close.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{Handle, Msg};
use russh::{Channel, ChannelMsg, Disconnect, Sig};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::ssh::{Bastion, ClientHandler, MAX_SESSIONS, OPEN_RETRIES, STDIN_CHUNK, SessionState};
use super::{Connection, ForwardedStream, OutputSink, TransportError};

/// One authenticated connection; commands run on their own channels, possibly concurrently.
pub struct SshConnection {
    pub(super) handle: Arc<Handle<ClientHandler>>,
    pub(super) state: Arc<SessionState>,
    /// Keeps concurrent session channels (ready ones included) under the server's default
    /// MaxSessions.
    pub(super) sessions: Arc<Semaphore>,
    /// Session channels opened ahead of the execs that will run on them (`keep_ready`), oldest
    /// first.
    pub(super) ready: Mutex<Vec<ReadyChannel>>,
    /// Signalled whenever one of our commands finishes, freeing a server session slot.
    pub(super) session_ended: Notify,
    /// The bastion this connection is tunnelled through: kept open while we live.
    pub(super) _bastion: Option<Arc<Bastion>>,
}

impl std::fmt::Debug for SshConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConnection")
            .field("closed", &self.handle.is_closed())
            .finish_non_exhaustive()
    }
}

/// A session channel opened ahead for an exec to come, with its MaxSessions slot.
pub(super) struct ReadyChannel {
    opening: Opening,
    permit: OwnedSemaphorePermit,
}

/// The open of a ready channel, running on its own task so that its round trip overlaps
/// whatever the host does meanwhile.
struct Opening(JoinHandle<Result<Channel<Msg>, russh::Error>>);

impl Opening {
    async fn channel(mut self) -> Result<Channel<Msg>, String> {
        match (&mut self.0).await {
            Ok(opened) => opened.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        // Never used (the host failed, or the run ended): sshd closes it with the connection.
        self.0.abort();
    }
}

impl SshConnection {
    /// Opens a `direct-tcpip` channel to `host:port` as seen from the remote machine.
    pub async fn open_direct_tcpip(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Channel<Msg>, TransportError> {
        self.handle
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| self.channel_error(e))
    }

    fn channel_error(&self, e: russh::Error) -> TransportError {
        match e {
            russh::Error::ChannelOpenFailure(reason) => {
                TransportError::Protocol(format!("server refused to open a channel: {reason:?}"))
            }
            e => self.connection_lost(&e.to_string()),
        }
    }

    /// The oldest channel opened ahead, if any.
    fn take_ready(&self) -> Option<ReadyChannel> {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        (!ready.is_empty()).then(|| ready.remove(0))
    }

    fn connection_lost(&self, fallback: &str) -> TransportError {
        let reason = self
            .state
            .disconnect_reason()
            .unwrap_or_else(|| fallback.to_string());
        TransportError::Protocol(format!("connection lost: {reason}"))
    }

    /// Opens a session channel, waiting out MaxSessions refusals. OpenSSH frees a closed
    /// session's slot only after the packet batch that closed it, so an open right behind a
    /// close can be refused; and a server may set MaxSessions below our own limit.
    async fn open_session(&self) -> Result<Channel<Msg>, TransportError> {
        let mut delay = Duration::from_millis(10);
        let mut retries = 0;
        loop {
            // Created before trying, so an end signalled meanwhile is not missed.
            let ended = self.session_ended.notified();
            match self.handle.channel_open_session().await {
                Ok(channel) => return Ok(channel),
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    let others_running = MAX_SESSIONS - self.sessions.available_permits() > 1;
                    tracing::debug!(?reason, others_running, "session channel refused; retrying");
                    // While our own commands hold slots, keep waiting: one of them will end.
                    if !others_running {
                        if retries == OPEN_RETRIES {
                            return Err(
                                self.channel_error(russh::Error::ChannelOpenFailure(reason))
                            );
                        }
                        retries += 1;
                    }
                    tokio::select! {
                        () = ended => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(self.channel_error(e)),
            }
        }
    }

    /// The channel opened ahead when there is one and it opened, else a new one.
    async fn session_for_exec(
        &self,
        ready: Option<Opening>,
    ) -> Result<Channel<Msg>, TransportError> {
        let mut next = ready;
        while let Some(opening) = next {
            match opening.channel().await {
                Ok(channel) => return Ok(channel),
                // Refused (a server's MaxSessions below ours) or lost: try the other channels
                // opened ahead before a plain open, so that none that did open is left holding
                // the server's session while this command waits for one.
                Err(e) => tracing::debug!(error = %e, "the channel opened ahead failed"),
            }
            next = self.take_ready().map(|r| r.opening);
        }
        self.open_session().await
    }

    async fn run(
        &self,
        ready: Option<Opening>,
        command: &str,
        stdin: &[&[u8]],
        sink: &mut dyn OutputSink,
        abort: impl Future<Output = ()>,
    ) -> Result<Option<u32>, TransportError> {
        let channel = self.session_for_exec(ready).await?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.channel_error(e))?;
        let (mut rx, tx) = channel.split();

        // Stdin is written while output is read: a command that echoes its input would
        // otherwise fill both windows and deadlock.
        let write = async {
            for chunk in stdin.iter().flat_map(|piece| piece.chunks(STDIN_CHUNK)) {
                tx.data_bytes(chunk.to_vec()).await?;
            }
            tx.eof().await
        };
        // Output goes to the sink as it arrives: nothing accumulates here, and russh's
        // bounded channel buffer holds the server back while the sink works.
        let mut status = None;
        let mut aborting = Aborting::No;
        let ended = {
            let read = async {
                while let Some(msg) = rx.wait().await {
                    match msg {
                        ChannelMsg::Data { data } => sink.stdout(&data),
                        ChannelMsg::ExtendedData { data, ext: 1 } => sink.stderr(&data),
                        ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                        ChannelMsg::ExitSignal { signal_name, .. } => {
                            tracing::debug!(signal = ?signal_name, "remote command killed by signal");
                        }
                        ChannelMsg::Failure => {
                            return Err(TransportError::Protocol(format!(
                                "server refused to run `{command}`"
                            )));
                        }
                        ChannelMsg::Close => return Ok(()),
                        _ => {}
                    }
                }
                // The channel ended without a Close: the whole connection went away.
                Err(self.connection_lost("connection closed"))
            };
            let mut write = std::pin::pin!(write);
            let mut read = std::pin::pin!(read);
            let mut abort = std::pin::pin!(abort);
            let timer = tokio::time::sleep(Duration::ZERO);
            let mut timer = std::pin::pin!(timer);
            let mut writing = true;
            loop {
                tokio::select! {
                    result = &mut read => break result,
                    written = &mut write, if writing => {
                        writing = false;
                        // A failed write means the session is gone; the reader reports why.
                        if let Err(e) = written {
                            tracing::debug!(error = %e, "writing stdin failed");
                        }
                    }
                    () = &mut abort, if aborting == Aborting::No => {
                        // sshd sends the signal to the command's process group (its shell and
                        // everything it started); a process that outlives TERM gets KILL.
                        aborting = Aborting::Terminated;
                        let _ = tx.signal(Sig::TERM).await;
                        timer.as_mut().reset(tokio::time::Instant::now() + ABORT_GRACE);
                    }
                    () = &mut timer, if aborting != Aborting::No => {
                        if aborting == Aborting::Killed {
                            break Err(TransportError::Aborted);
                        }
                        aborting = Aborting::Killed;
                        let _ = tx.signal(Sig::KILL).await;
                        timer.as_mut().reset(tokio::time::Instant::now() + ABORT_GRACE);
                    }
                }
            }
        };
        if ended.is_err() || aborting != Aborting::No {
            // Dropping the writer is fine: a command may exit without reading all stdin.
            let _ = tx.close().await;
        }
        match (ended, aborting) {
            (Ok(()), Aborting::No) => Ok(status),
            (Err(error), Aborting::No) => Err(error),
            (_, _) => Err(TransportError::Aborted),
        }
    }
}

/// How far the abort of a running command has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aborting {
    No,
    Terminated,
    Killed,
}

/// How long an aborted command has after SIGTERM before SIGKILL, and after SIGKILL before
/// its channel is given up.
const ABORT_GRACE: Duration = Duration::from_millis(1500);

impl Connection for SshConnection {
    async fn exec_streamed_until(
        &self,
        command: &str,
        stdin: &[&[u8]],
        sink: &mut dyn OutputSink,
        abort: impl Future<Output = ()> + Send,
    ) -> Result<Option<u32>, TransportError> {
        // Taken before the first await: an exec started first gets the oldest ready channel.
        let ready = self.take_ready();
        let (_permit, ready) = match ready {
            Some(ReadyChannel { opening, permit }) => (permit, Some(opening)),
            None => (
                self.sessions
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| TransportError::Protocol("connection closed".into()))?,
                None,
            ),
        };
        let result = self.run(ready, command, stdin, sink, abort).await;
        self.session_ended.notify_waiters();
        result
    }

    fn keep_ready(&self, channels: usize) {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        while ready.len() < channels && !self.handle.is_closed() {
            // Never at the cost of an exec: only a free slot is used.
            let Ok(permit) = self.sessions.clone().try_acquire_owned() else {
                return;
            };
            let handle = Arc::clone(&self.handle);
            let opening = Opening(tokio::spawn(
                async move { handle.channel_open_session().await },
            ));
            ready.push(ReadyChannel { opening, permit });
        }
    }

    async fn tcp_request(
        &self,
        host: &str,
        port: u16,
        request: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, TransportError> {
        let mut channel = self.open_direct_tcpip(host, port).await?;
        channel
            .data(request)
            .await
            .map_err(|e| TransportError::Protocol(format!("forwarded connection: {e}")))?;
        let mut response = Vec::new();
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    let room = limit.saturating_sub(response.len());
                    response.extend_from_slice(&data[..data.len().min(room)]);
                    if response.len() >= limit {
                        break;
                    }
                }
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => {}
            }
        }
        let _ = channel.close().await;
        Ok(response)
    }

    async fn tcp_stream(&self, host: &str, port: u16) -> Result<ForwardedStream, TransportError> {
        Ok(Box::new(
            self.open_direct_tcpip(host, port).await?.into_stream(),
        ))
    }

    async fn close(&self) {
        self.sessions.close();
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}
