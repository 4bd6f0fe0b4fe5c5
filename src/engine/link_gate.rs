//! A switch that silently drops every UDP datagram an engine's peer connections send or
//! receive, so tests can break the media path between two engines on loopback the way a
//! dead network would (ICE consent checks time out, the connection fails) while the
//! sockets, the signaling and both engines stay up. It wraps webrtc-rs's own tokio
//! runtime and its real sockets; while the gate is open every call goes straight through.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// Shared by an engine and every connection it builds; closed (passing traffic) by default.
#[derive(Debug, Clone, Default)]
pub(crate) struct MediaGate(Arc<AtomicBool>);

impl MediaGate {
    /// Drops (true) or passes (false) every datagram from now on.
    pub(crate) fn set_blocked(&self, blocked: bool) {
        self.0.store(blocked, Ordering::SeqCst);
    }

    fn blocked(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// webrtc-rs's tokio runtime with every UDP socket it wraps passed through the gate.
#[derive(Debug)]
pub(crate) struct GatedRuntime {
    inner: TokioRuntime,
    gate: MediaGate,
}

impl GatedRuntime {
    pub(crate) fn new(gate: MediaGate) -> Self {
        Self {
            inner: TokioRuntime,
            gate,
        }
    }
}

impl Runtime for GatedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(GatedSocket {
            inner: self.inner.wrap_udp_socket(socket)?,
            gate: self.gate.clone(),
        }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future);
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (gated)"
    }
}

struct GatedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    gate: MediaGate,
}

impl fmt::Debug for GatedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatedSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl AsyncUdpSocket for GatedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        if self.gate.blocked() {
            // Reported as sent, as a datagram lost on the way would be.
            return Poll::Ready(Ok(transmit.contents.len()));
        }
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.inner.poll_recv(cx, bufs, meta) {
                // Read and thrown away; polling again parks the waker when nothing is left.
                Poll::Ready(Ok(_)) if self.gate.blocked() => continue,
                other => return other,
            }
        }
    }
}
