//! A stdio upstream: one child process speaking newline-delimited JSON-RPC on stdin/stdout,
//! with its stderr turned into log lines (MCP `basic/transports`, "stdio").
//!
//! The child runs in its own process group so that `npx`/`uvx` wrappers and their children
//! are stopped together: stdin is closed first, then SIGTERM, then SIGKILL (each after a grace).
//! It gets a clean environment (`environment`), and its stderr is read for as long as it is
//! open (`stderr`). A stdout line over `max_response_bytes` is skipped without being kept: the
//! call it answered (its top-level `id`, found by `wire::idscan`) fails with a clear error,
//! and the connection goes on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::conn::ConnError;
use super::environment;
use super::handshake::Handshake;
use super::mux::{Action, CancelOnDrop, Mux, Owner};
use super::request::Outbound;
use super::signals::Signals;
use super::stderr::{self, StderrLog};
use crate::error::{TransportError, TransportKind};
use crate::observe::metrics::METRICS;
use crate::wire::idscan::IdScan;
use crate::wire::jsonrpc::{Message, write_notification};
use crate::wire::lines::{LineCodec, LineError};

/// Grace between closing stdin and SIGTERM, and between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Bytes read from the child's stdout at a time (at least).
const READ_CHUNK: usize = 64 * 1024;

/// How to start the child.
#[derive(Clone, Debug)]
pub struct Spawn {
    /// Program.
    pub command: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment variables set for it (besides the inherited ones, see `environment`).
    pub env: BTreeMap<String, String>,
    /// Whether it inherits the gateway's whole environment (never sekisho's own variables).
    pub inherit_env: bool,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Longest stdout line (one message) kept, in bytes (`max_response_bytes`).
    pub max_message_bytes: usize,
    /// The upstream's stderr log budget, shared by its processes.
    pub stderr: Arc<StderrLog>,
}

/// A live connection to one child process.
pub struct StdioConn {
    upstream: String,
    /// Request multiplexing state.
    pub mux: Mux,
    writer: mpsc::Sender<Bytes>,
    closed: CancellationToken,
    stop_writing: CancellationToken,
    handshake: OnceLock<Handshake>,
    pid: Option<u32>,
    /// Inside a PEM private key printed over non-JSON-RPC lines (`detect::redact::inside_private_key`).
    in_private_key: std::sync::atomic::AtomicBool,
}

/// The child process, owned by whoever supervises it.
pub struct Process {
    child: Child,
    pgid: Option<i32>,
}

impl StdioConn {
    /// Start the child and its I/O tasks.
    ///
    /// `owner`: the client session a per-client process serves alone.
    ///
    /// Errors: [`ConnError::Transport`] when the program cannot be started.
    pub fn spawn(
        upstream: &str,
        spec: &Spawn,
        signals: Signals,
        owner: Option<Owner>,
    ) -> Result<(Arc<StdioConn>, Process), ConnError> {
        let mut cmd = Command::new(&spec.command);
        cmd.args(&spec.args)
            .env_clear()
            .envs(environment::for_child(std::env::vars_os(), spec.inherit_env, &spec.env))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|e| {
            let mut cause = TransportError::classify(&e);
            cause.detail = format!("cannot start {:?}: {}", spec.command, cause.detail);
            ConnError::Transport(cause)
        })?;
        let pid = child.id();
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (writer, rx) = mpsc::channel(1024);
        let conn = Arc::new(StdioConn {
            upstream: upstream.to_string(),
            mux: Mux::owned(upstream, signals, owner),
            writer,
            closed: CancellationToken::new(),
            stop_writing: CancellationToken::new(),
            handshake: OnceLock::new(),
            pid,
            in_private_key: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(write_loop(stdin, rx, conn.stop_writing.clone()));
        tokio::spawn(read_loop(Arc::clone(&conn), stdout, spec.max_message_bytes));
        tokio::spawn(stderr::drain(Arc::clone(&spec.stderr), pid, stderr));
        Ok((conn, Process { child, pgid: pid.map(|p| p as i32) }))
    }

    /// The process id of the child.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Record the handshake (once).
    pub fn set_handshake(&self, h: Handshake) {
        let _ = self.handshake.set(h);
    }

    /// The handshake, once done.
    pub fn handshake(&self) -> Option<&Handshake> {
        self.handshake.get()
    }

    /// A token cancelled when the child's stdout ends (it exited or closed it).
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Send one request and wait for its response. Dropping the future cancels the call
    /// upstream (`notifications/cancelled`).
    ///
    /// Errors: [`ConnError::Transport`] marked unsent when the child's stdin is gone before
    /// the request was queued; [`ConnError::Closed`] when the child is gone before answering;
    /// [`ConnError::TooLarge`] when its answer is over `max_response_bytes`.
    pub async fn call(&self, req: &Outbound) -> Result<Message, ConnError> {
        if self.closed.is_cancelled() {
            return Err(unsent());
        }
        let (tx, rx) = oneshot::channel();
        let id = self.mux.register(Some(tx), req.route.clone(), req.client);
        let mut guard = CancelOnDrop::new(&self.mux, &self.closed, id, |mut msg: Vec<u8>| {
            msg.push(b'\n');
            let _ = self.writer.try_send(Bytes::from(msg));
        });
        let mut buf = Vec::with_capacity(256);
        req.write(&mut buf, id, self.handshake.get());
        buf.push(b'\n');
        self.writer.send(Bytes::from(buf)).await.map_err(|_| unsent())?;
        let answer = tokio::select! {
            answer = rx => answer.unwrap_or(Err(ConnError::Closed)),
            () = self.closed.cancelled() => Err(ConnError::Closed),
        };
        guard.armed = false;
        self.mux.forget(id);
        answer
    }

    /// Send a notification (fire and forget).
    pub fn notify(&self, method: &str, params: Option<&[u8]>) {
        let mut buf = Vec::with_capacity(128);
        write_notification(&mut buf, method, params);
        buf.push(b'\n');
        let _ = self.writer.try_send(Bytes::from(buf));
    }

    fn send_raw(&self, mut msg: Vec<u8>) {
        msg.push(b'\n');
        if self.writer.try_send(Bytes::from(msg)).is_err() {
            tracing::warn!(upstream = %self.upstream, "dropped a message to a stalled child");
        }
    }
}

/// The failure of a call whose request never reached the child: its stdin writer was gone
/// before the request was queued.
fn unsent() -> ConnError {
    let cause = TransportError::new(TransportKind::Closed, "the child's stdin is closed; the request was not sent");
    ConnError::Transport(cause.not_sent())
}

async fn write_loop(stdin: ChildStdin, mut rx: mpsc::Receiver<Bytes>, stop: CancellationToken) {
    let mut out = BufWriter::with_capacity(64 * 1024, stdin);
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            () = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        if out.write_all(&first).await.is_err() {
            break;
        }
        // Coalesce whatever else is queued into the same flush.
        while let Ok(more) = rx.try_recv() {
            if out.write_all(&more).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() {
            break;
        }
    }
    // Dropping stdin closes it: the child sees EOF, which asks it to exit.
    let _ = out.shutdown().await;
}

/// Read the child's stdout until it ends: one message per line, a line over `max` bytes
/// skipped without being kept (see [`StdioConn::oversized`]).
async fn read_loop(conn: Arc<StdioConn>, mut stdout: ChildStdout, max: usize) {
    let mut codec = LineCodec::new(max);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Inside a line over the limit: its bytes are scanned for the id, then dropped.
    let mut oversized: Option<IdScan> = None;
    'read: loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 8 {
            buf.reserve(READ_CHUNK);
        }
        match stdout.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(upstream = %conn.upstream, error = %e, "unreadable output from the child; closing it");
                break;
            }
        }
        loop {
            if let Some(scan) = &mut oversized {
                let Some(end) = memchr::memchr(b'\n', &buf) else {
                    scan.feed(&buf);
                    buf.clear();
                    continue 'read;
                };
                scan.feed(&buf[..end]);
                buf.advance(end + 1);
                conn.oversized(oversized.take().and_then(|s| s.id().map(<[u8]>::to_vec)), max);
                codec = LineCodec::new(max);
            }
            match codec.decode(&mut buf) {
                Ok(Some(line)) => conn.line(line),
                Ok(None) => continue 'read,
                // The codec has consumed nothing of the long line; the scan above takes it.
                Err(LineError::TooLong(_)) => oversized = Some(IdScan::default()),
                Err(LineError::Io(_)) => break 'read,
            }
        }
    }
    match oversized {
        Some(scan) => conn.oversized(scan.id().map(<[u8]>::to_vec), max),
        None => {
            if let Ok(Some(line)) = codec.decode_eof(&mut buf) {
                conn.line(line);
            }
        }
    }
    conn.closed.cancel();
    conn.mux.close_all();
}

impl StdioConn {
    /// Handle one complete line from the child's stdout.
    fn line(self: &Arc<Self>, line: Bytes) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match Message::parse(line.clone()) {
            Ok(msg) => handle_action(self, self.mux.dispatch(msg, None)),
            Err(e) => {
                use std::sync::atomic::Ordering::Relaxed;
                let mut open = self.in_private_key.load(Relaxed);
                let shown = crate::detect::redact::inside_private_key(&mut open, &line)
                    .unwrap_or_else(|| crate::detect::redact::for_log(&line, 200));
                self.in_private_key.store(open, Relaxed);
                tracing::warn!(
                    upstream = %self.upstream,
                    line = %shown,
                    error = e.reason(),
                    "ignored a non-JSON-RPC line on the child's stdout"
                )
            }
        }
    }

    /// A line over `max` bytes was skipped: the call it answered (by its top-level `id`, if
    /// one was found) fails with [`ConnError::TooLarge`] at once.
    fn oversized(&self, id: Option<Vec<u8>>, max: usize) {
        METRICS.upstream_discarded(METRICS.upstream_name(&Arc::from(self.upstream.as_str())), "oversized_message");
        let call = id.and_then(|id| std::str::from_utf8(&id).ok()?.parse::<u64>().ok());
        let failed = call.is_some_and(|id| self.mux.fail(id, ConnError::TooLarge(max)));
        tracing::warn!(upstream = %self.upstream, max_bytes = max, failed_call = failed, "skipped a message from the child larger than max_response_bytes");
    }
}

fn handle_action(conn: &Arc<StdioConn>, action: Action) {
    match action {
        Action::None => {}
        Action::Send(msg) => conn.send_raw(msg.to_vec()),
        Action::Relay(relay) => {
            let conn = Arc::clone(conn);
            tokio::spawn(async move { conn.send_raw(relay.answer().await) });
        }
    }
}

impl Drop for Process {
    /// A child abandoned mid-start (e.g. its handshake timed out) takes its whole group along,
    /// so wrapper scripts cannot leak grandchildren.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal_group(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Process {
    /// Wait until the child exits; returns a description of how it ended.
    pub async fn wait(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("wait failed: {e}"),
        }
    }

    /// Stop the child: close stdin, then SIGTERM the process group, then SIGKILL it.
    pub async fn stop(mut self, conn: &StdioConn) {
        conn.stop_writing.cancel();
        if tokio::time::timeout(STOP_GRACE, self.child.wait()).await.is_ok() {
            self.reap_group();
            return;
        }
        self.signal_group(nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, self.child.wait()).await.is_ok() {
            self.reap_group();
            return;
        }
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait().await;
    }

    /// After the leader exited, make sure no member of its group lingers.
    pub fn reap_group(&self) {
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
    }

    fn signal_group(&self, sig: nix::sys::signal::Signal) {
        if let Some(pgid) = self.pgid {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig);
        }
    }
}
