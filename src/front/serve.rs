//! The HTTP server under the routes: an accept loop with a cap on open connections
//! (`[server] max_connections`), optional TLS, and per connection hyper's HTTP/1.1 and HTTP/2
//! with a bounded head (`max_header_bytes`: 431) and the connection's clock
//! ([`super::conn`]), so a slow or silent client is closed and frees its slot.
//!
//! At the cap the loop stops accepting (new connections wait in the kernel's backlog) rather
//! than accept and drop them: a client that waits is served as soon as a slot frees, and
//! the slots held by slowloris connections free within `header_read_timeout`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::config::ServerConfig;
use super::conn::{Activity, InFlight, Timeouts, Watched};

/// What every connection of a listener is held to, built once from `[server]`.
pub struct Limits {
    max_connections: usize,
    timeouts: Timeouts,
    tls: Option<tokio_rustls::TlsAcceptor>,
    http: Builder<TokioExecutor>,
}

impl Limits {
    /// The limits of `[server]`; `tls` says whether this listener speaks TLS
    /// (`tls_cert`/`tls_key`).
    ///
    /// Errors: the TLS files cannot be loaded (see [`super::tls::load`]).
    pub fn new(config: &ServerConfig, tls: bool) -> Result<Limits, String> {
        let tls = match tls && !config.tls_cert.is_empty() {
            true => Some(tokio_rustls::TlsAcceptor::from(super::tls::load(&config.tls_cert, &config.tls_key)?)),
            false => None,
        };
        let mut http = Builder::new(TokioExecutor::new());
        // hyper's read buffer bounds the request head (a larger one gets 431, RFC 6585 §5);
        // its header timer is off: the connection's clock (`conn`) times heads and idleness.
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(config.max_header_bytes)
            .keep_alive(true);
        http.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        Ok(Limits {
            max_connections: config.max_connections,
            timeouts: Timeouts {
                header_read: config.header_read_timeout,
                idle: config.idle_timeout,
                send: config.send_timeout,
            },
            tls,
            http,
        })
    }
}

/// Serve `app` on `listener` until `shutdown` fires; then stop accepting, let each connection
/// finish its requests (HTTP/1.1 keep-alive off, HTTP/2 GOAWAY), and return when all have
/// closed — or at once, dropping them, when `force` fires.
///
/// Errors: none so far (accept errors are logged and retried: a full file table must not end
/// the server); the `Result` leaves room for listener failures.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Arc<Limits>,
    shutdown: CancellationToken,
    force: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => s.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (app, limits, shutdown, force) = (app.clone(), Arc::clone(&limits), shutdown.clone(), force.clone());
        tracker.spawn(async move {
            let activity = Activity::new();
            let io = Watched::new(tcp, Arc::clone(&activity));
            match &limits.tls {
                None => connection(io, app, &limits, activity, shutdown, force).await,
                Some(acceptor) => {
                    // The handshake is part of the first request's head: same deadline.
                    let handshake = tokio::time::timeout(limits.timeouts.header_read, acceptor.accept(io));
                    match handshake.await {
                        Ok(Ok(tls)) => connection(tls, app, &limits, activity, shutdown, force).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
    tracker.close();
    tokio::select! {
        () = tracker.wait() => {}
        () = force.cancelled() => {}
    }
    Ok(())
}

/// Serve one connection until it closes, drains after `shutdown`, is dropped on `force`, or
/// one of its timeouts runs out.
async fn connection<I>(
    io: I,
    app: Router,
    limits: &Limits,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
    force: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(tower::service_fn({
        let activity = Arc::clone(&activity);
        move |req: Request<Incoming>| {
            let running = activity.start();
            let app = app.clone();
            async move {
                let resp = app.oneshot(req.map(Body::new)).await.unwrap_or_else(|e: Infallible| match e {});
                Ok::<_, Infallible>(resp.map(|body| Body::new(Tracked { body, _running: running })))
            }
        }
    }));
    let conn = limits.http.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = force.cancelled() => return,
            why = activity.expired(limits.timeouts) => {
                tracing::debug!(timeout = why, "closing a client connection");
                return;
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as running until the connection has
    /// taken all of it (or dropped it).
    struct Tracked {
        #[pin]
        body: Body,
        _running: InFlight,
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
