//! The API listener: HTTP/1.1 connections served by hyper with the limits
//! `axum::serve` does not have.
//!
//! - **A cap on open connections** (`HTTP_MAX_CONNECTIONS`). A connection
//!   above it is closed as soon as it is accepted (counted in
//!   `http_connections_refused_total`) rather than left waiting in the
//!   kernel's backlog: the client, or the load balancer in front, learns at
//!   once and can go elsewhere, and a flood of idle sockets cannot hold every
//!   slot and keep the backlog full too.
//! - **A header-read timeout** (`HTTP_HEADER_READ_TIMEOUT`): a connection must
//!   send a whole request head within it, counted from when it opened or, on
//!   a kept-alive connection, from the first byte of its next request. A
//!   half-sent request (slowloris) no longer holds a connection for ever.
//! - **An idle timeout** (`HTTP_IDLE_TIMEOUT`): a kept-alive connection waits
//!   this long for the first byte of its next request.
//! - **Bounded buffers** ([`MAX_BUF_SIZE`], [`MAX_HEAD_SIZE`]): what one
//!   connection may make the process buffer.
//!
//! hyper has a header-read timeout of its own, but it starts as soon as the
//! connection waits for a request head, which on a kept-alive connection is
//! right after the previous response: it would close idle connections after
//! the (short) header timeout and leave no room for a longer idle timeout
//! (load balancers expect the server's keep-alive to outlast theirs). So each
//! connection has one watchdog that knows its phase ([`Activity`]) and applies
//! the timeout of that phase; hyper's is turned off. While a request is being
//! answered (streams included) no timeout of this module applies:
//! `REQUEST_TIMEOUT` bounds handlers (reading the body included), and a
//! notification stream re-checks its session and is capped per user and per
//! process. A client that stops reading a response it asked for is bounded
//! only by the connection cap and by TCP itself; a write-stall timeout would
//! be the next step if that is ever seen.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes, HttpBody},
    extract::ConnectInfo,
    http::{Request, Response},
};
use http_body::{Frame, SizeHint};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A connection's read and write buffers grow at most to this (hyper's
/// default is about 400 KiB): it bounds what one connection can make the
/// process hold, times `HTTP_MAX_CONNECTIONS`.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// The largest request head (request line and headers); a larger one is
/// answered 431. hyper checks the buffer size only while a head is
/// incomplete, so a head that arrives whole in a few large reads needs this
/// limit of its own. Tokens and cookies fit many times over.
const MAX_HEAD_SIZE: usize = 32 * 1024;

/// The listener's limits (`HTTP_*` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` fires, then stops accepting
/// and returns when every open connection has finished its requests (idle
/// ones are closed at once). Callers bound that wait.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // Turned off: the watchdog applies the header timeout (module docs).
    builder.header_read_timeout(None);
    builder.max_buf_size(MAX_BUF_SIZE);
    builder.max_header_size(MAX_HEAD_SIZE);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: pause instead of
                    // spinning on an error that needs a connection to end.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!("http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            stream,
            activity: Arc::clone(&activity),
        });
        let service = hyper::service::service_fn({
            let activity = Arc::clone(&activity);
            let app = app.clone();
            move |request| respond(app.clone(), request, peer, &activity)
        });
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            let _slot = slot;
            let _open = OpenConnection::new();
            tokio::select! {
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                },
                () = activity.timed_out(limits) => {
                    tracing::debug!(client.address = %peer, "closing a connection that timed out");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One request: the peer address for `ConnectInfo`, the phase change, and a
/// response body that marks the connection idle when it is done.
fn respond(
    app: Router,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    activity: &Arc<Activity>,
) -> impl Future<Output = Result<Response<Tracked>, Infallible>> + use<> {
    request.extensions_mut().insert(ConnectInfo(peer));
    let answering = Answering::start(Arc::clone(activity));
    async move {
        let response = app.oneshot(request).await?;
        Ok(response.map(|inner| Tracked {
            inner,
            _answering: answering,
        }))
    }
}

/// Counts open connections in the `http_connections_open` gauge.
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        metrics::gauge!("http_connections_open").increment(1.0);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

/// Where a connection is, which decides its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Just opened, or the first byte of the next request arrived: the head
    /// must be complete within the header timeout.
    ReadingHead = 0,
    /// A request is being answered: no timeout here.
    Answering = 1,
    /// The last response is done: the next request must start within the
    /// idle timeout.
    Idle = 2,
}

/// The phase of one connection, written by its I/O and its requests, read by
/// its watchdog.
struct Activity {
    phase: AtomicU8,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: AtomicU8::new(Phase::ReadingHead as u8),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::ReadingHead,
            1 => Phase::Answering,
            _ => Phase::Idle,
        }
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Bytes arrived: on an idle connection that starts the next request.
    fn bytes_read(&self) {
        if self
            .phase
            .compare_exchange(
                Phase::Idle as u8,
                Phase::ReadingHead as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.changed.notify_waiters();
        }
    }

    /// Returns when the connection has stayed in a timed phase longer than
    /// that phase allows; every phase change restarts the clock.
    async fn timed_out(&self, limits: Limits) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the phase is read, so a change in between
            // still wakes us.
            changed.as_mut().enable();
            let limit = match self.phase() {
                Phase::ReadingHead => Some(limits.header_read_timeout),
                Phase::Idle => Some(limits.idle_timeout),
                Phase::Answering => None,
            };
            match limit {
                Some(limit) => tokio::select! {
                    () = &mut changed => {}
                    () = tokio::time::sleep(limit) => return,
                },
                None => changed.await,
            }
        }
    }
}

/// Held from the moment hyper hands a request over until its response body
/// is finished or dropped.
struct Answering(Arc<Activity>);

impl Answering {
    fn start(activity: Arc<Activity>) -> Self {
        activity.set(Phase::Answering);
        Self(activity)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.set(Phase::Idle);
    }
}

/// A response body that keeps its connection in [`Phase::Answering`].
struct Tracked {
    inner: Body,
    _answering: Answering,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that reports reads to its connection's [`Activity`].
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_reads_its_head_then_answers_then_idles_until_the_next_byte() {
        let activity = Arc::new(Activity::new());
        assert_eq!(activity.phase(), Phase::ReadingHead);
        let answering = Answering::start(Arc::clone(&activity));
        // Body bytes of the request being answered change nothing.
        activity.bytes_read();
        assert_eq!(activity.phase(), Phase::Answering);
        drop(answering);
        assert_eq!(activity.phase(), Phase::Idle);
        activity.bytes_read();
        assert_eq!(activity.phase(), Phase::ReadingHead);
    }
}
