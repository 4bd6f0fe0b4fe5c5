//! A network between an engine and the wire, for in-process tests: the UDP datagrams an
//! engine's peer connections send can be lost, delayed, jittered and rate-capped, and all
//! traffic both ways can be blocked, as on a dead network (ICE consent checks time out,
//! the connection fails) while the sockets, the signaling and both engines stay up.
//!
//! It wraps webrtc-rs's own tokio runtime and its real sockets. With the default
//! [`LinkConditions`] and not blocked, every call goes straight through: no copy, no task.
//!
//! The model, for what an engine *sends* (to impair a downlink, shape the far side's
//! uplink; every socket of one engine shares one link):
//! - loss: each datagram independently, with a seeded RNG, so a run's decisions repeat;
//! - a rate cap: a bottleneck of `bits_per_second` with a FIFO of `queue_bytes` before
//!   it; a datagram that does not fit is dropped (tail drop);
//! - then `delay` plus a jitter drawn **uniformly** from `[-jitter, +jitter]`;
//! - **order is kept**: a datagram never leaves before the one sent before it (its
//!   departure is at least the previous one's), as jitter from queueing on a real path
//!   behaves. Dense bursts therefore lean towards `delay + jitter`.
//!
//! Delayed datagrams are copied into a per-socket delay line, a tokio task started on the
//! first delayed send; it ends when the socket is dropped.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, EcnCodepoint, JoinHandle,
    RecvMeta, Runtime, TokioRuntime, Transmit,
};

/// What the link does to the datagrams an engine sends. The default is a perfect link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct LinkConditions {
    /// Fraction of datagrams lost, 0 to 1, each independently.
    pub(crate) loss: f64,
    /// One-way delay added to every datagram.
    pub(crate) delay: Duration,
    /// Half-width of the uniform jitter around `delay` (the delay never goes below zero).
    pub(crate) jitter: Duration,
    /// A bottleneck before the delay, if any.
    pub(crate) rate: Option<RateCap>,
    /// Seeds the loss and jitter draws; the same seed and sends give the same fates.
    pub(crate) seed: u64,
}

/// A bottleneck link: serialization at `bits_per_second` behind a FIFO of `queue_bytes`
/// (tail drop), as a router's interface queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateCap {
    pub(crate) bits_per_second: u64,
    pub(crate) queue_bytes: usize,
}

impl LinkConditions {
    /// Whether datagrams have to wait (anything but loss).
    fn delays(&self) -> bool {
        !self.delay.is_zero() || !self.jitter.is_zero() || self.rate.is_some()
    }
}

/// What becomes of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Lost,
    /// Sent at once.
    Now,
    /// Held and sent then.
    At(Instant),
}

/// The link's state: its conditions, the RNG, and where its timeline stands. Sans-IO: the
/// time comes in, a fate comes out.
#[derive(Debug)]
struct Link {
    conditions: LinkConditions,
    rng: StdRng,
    /// When the bottleneck has finished serializing what it holds.
    free_at: Option<Instant>,
    /// The latest departure handed out, which the next may not precede.
    last_departure: Option<Instant>,
}

impl Default for Link {
    fn default() -> Self {
        Self::new(LinkConditions::default())
    }
}

impl Link {
    fn new(conditions: LinkConditions) -> Self {
        Self {
            conditions,
            rng: StdRng::seed_from_u64(conditions.seed),
            free_at: None,
            last_departure: None,
        }
    }

    /// The fate of a datagram of `len` bytes sent at `now`.
    fn admit(&mut self, now: Instant, len: usize) -> Fate {
        let c = self.conditions;
        if c.loss > 0.0 && self.rng.random::<f64>() < c.loss {
            return Fate::Lost;
        }
        if !c.delays() {
            return Fate::Now;
        }
        let mut at = now;
        if let Some(cap) = c.rate {
            let start = self.free_at.map_or(now, |f| f.max(now));
            let backlog =
                start.duration_since(now).as_secs_f64() * cap.bits_per_second as f64 / 8.0;
            if backlog + len as f64 > cap.queue_bytes as f64 {
                return Fate::Lost;
            }
            let serialization =
                Duration::from_secs_f64(len as f64 * 8.0 / cap.bits_per_second.max(1) as f64);
            at = start + serialization;
            self.free_at = Some(at);
        }
        let jitter = c.jitter.as_secs_f64();
        let offset = if jitter > 0.0 {
            self.rng.random_range(-jitter..=jitter)
        } else {
            0.0
        };
        let delay = (c.delay.as_secs_f64() + offset).max(0.0);
        at += Duration::from_secs_f64(delay);
        if let Some(last) = self.last_departure {
            at = at.max(last);
        }
        self.last_departure = Some(at);
        Fate::At(at)
    }
}

#[derive(Debug, Default)]
struct Shared {
    blocked: AtomicBool,
    /// Conditions other than the default are set (the fast path checks only this).
    shaped: AtomicBool,
    link: Mutex<Link>,
    /// Delay-line tasks still running.
    delay_lines: AtomicUsize,
}

/// Shared by an engine and every connection it builds: a perfect link by default.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkShaper(Arc<Shared>);

impl LinkShaper {
    /// Drops (true) or passes (false) every datagram sent or received from now on.
    pub(crate) fn set_blocked(&self, blocked: bool) {
        self.0.blocked.store(blocked, Ordering::SeqCst);
    }

    /// Applies `conditions` to every datagram sent from now on (the timeline and the RNG
    /// start afresh from `conditions.seed`).
    #[cfg(test)]
    pub(crate) fn set_conditions(&self, conditions: LinkConditions) {
        *self.link() = Link::new(conditions);
        self.0
            .shaped
            .store(conditions != LinkConditions::default(), Ordering::SeqCst);
    }

    /// Delay-line tasks alive (one per socket that has held a datagram; for leak tests).
    #[cfg(test)]
    pub(crate) fn delay_lines(&self) -> usize {
        self.0.delay_lines.load(Ordering::SeqCst)
    }

    fn blocked(&self) -> bool {
        self.0.blocked.load(Ordering::Relaxed)
    }

    fn shaped(&self) -> bool {
        self.0.shaped.load(Ordering::Relaxed)
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        // The lock guards plain arithmetic; a panic while holding it leaves a usable state.
        self.0.link.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// webrtc-rs's tokio runtime with every UDP socket it wraps passed through the shaper.
#[derive(Debug)]
pub(crate) struct ShapedRuntime {
    inner: TokioRuntime,
    link: LinkShaper,
}

impl ShapedRuntime {
    pub(crate) fn new(link: LinkShaper) -> Self {
        Self {
            inner: TokioRuntime,
            link,
        }
    }
}

impl Runtime for ShapedRuntime {
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
        Ok(Arc::new(ShapedSocket::new(
            self.inner.wrap_udp_socket(socket)?,
            self.link.clone(),
        )))
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
        "tokio (shaped)"
    }
}

/// Datagrams a delay line holds at most; more are dropped, as a full queue would.
const DELAY_LINE_DATAGRAMS: usize = 4096;

/// One datagram waiting in a delay line.
struct Held {
    due: Instant,
    destination: SocketAddr,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
    contents: Vec<u8>,
}

/// The sending end of a socket's delay line; dropping it ends the task at once.
struct DelayLine {
    tx: mpsc::Sender<Held>,
    _stop: DropGuard,
}

pub(crate) struct ShapedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    link: LinkShaper,
    line: OnceLock<Option<DelayLine>>,
}

impl fmt::Debug for ShapedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShapedSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl ShapedSocket {
    pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>, link: LinkShaper) -> Self {
        Self {
            inner,
            link,
            line: OnceLock::new(),
        }
    }

    /// This socket's delay line, started on first use; `None` outside a tokio runtime.
    fn line(&self) -> Option<&DelayLine> {
        self.line
            .get_or_init(|| {
                let handle = tokio::runtime::Handle::try_current().ok()?;
                let (tx, rx) = mpsc::channel(DELAY_LINE_DATAGRAMS);
                let stop = CancellationToken::new();
                let live = LiveTask::new(&self.link);
                handle.spawn(delay_line(Arc::clone(&self.inner), rx, stop.clone(), live));
                Some(DelayLine {
                    tx,
                    _stop: stop.drop_guard(),
                })
            })
            .as_ref()
    }

    /// Sends `transmit` through the link's conditions. Every datagram is either sent now,
    /// held, or lost; all count as accepted, as on a network.
    fn poll_send_shaped(
        &self,
        cx: &mut Context<'_>,
        transmit: &Transmit<'_>,
    ) -> Poll<io::Result<usize>> {
        let len = transmit.contents.len();
        let now = Instant::now();
        if transmit.segment_size.is_none() {
            match self.link.link().admit(now, len) {
                Fate::Lost => return Poll::Ready(Ok(len)),
                Fate::Now => return self.inner.poll_send(cx, transmit),
                Fate::At(due) => {
                    self.hold(transmit, transmit.contents, due);
                    return Poll::Ready(Ok(len));
                }
            }
        }
        // A GSO batch is split into its datagrams, each with its own fate; all are held
        // (a batch cannot be half sent from here), those due now for no time at all.
        let segment = transmit.segment_size.unwrap_or(len).max(1);
        for datagram in transmit.contents.chunks(segment) {
            let fate = self.link.link().admit(now, datagram.len());
            match fate {
                Fate::Lost => {}
                Fate::Now => self.hold(transmit, datagram, now),
                Fate::At(due) => self.hold(transmit, datagram, due),
            }
        }
        Poll::Ready(Ok(len))
    }

    fn hold(&self, transmit: &Transmit<'_>, datagram: &[u8], due: Instant) {
        let Some(line) = self.line() else {
            return;
        };
        // A full line drops the datagram, as an overflowing queue would.
        let _ = line.tx.try_send(Held {
            due,
            destination: transmit.destination,
            ecn: transmit.ecn,
            src_ip: transmit.src_ip,
            contents: datagram.to_vec(),
        });
    }
}

/// Counts a delay-line task as alive for as long as it exists.
struct LiveTask(LinkShaper);

impl LiveTask {
    fn new(link: &LinkShaper) -> Self {
        link.0.delay_lines.fetch_add(1, Ordering::SeqCst);
        Self(link.clone())
    }
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        self.0.0.delay_lines.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends each held datagram when it is due. Departures never decrease (see `Link::admit`),
/// so waiting on the oldest is enough. Ends when its socket is dropped.
async fn delay_line(
    socket: Arc<dyn AsyncUdpSocket>,
    mut rx: mpsc::Receiver<Held>,
    stop: CancellationToken,
    _live: LiveTask,
) {
    let run = async {
        while let Some(held) = rx.recv().await {
            tokio::time::sleep_until(held.due.into()).await;
            let transmit = Transmit {
                destination: held.destination,
                ecn: held.ecn,
                contents: &held.contents,
                segment_size: None,
                src_ip: held.src_ip,
            };
            if let Err(e) = std::future::poll_fn(|cx| socket.poll_send(cx, &transmit)).await {
                // As the driver would see it: a lost datagram, not a broken link.
                tracing::trace!("a delayed datagram was not sent: {e}");
            }
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        () = run => {}
    }
}

impl AsyncUdpSocket for ShapedSocket {
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
        if self.link.blocked() {
            // Reported as sent, as a datagram lost on the way would be.
            return Poll::Ready(Ok(transmit.contents.len()));
        }
        if self.link.shaped() {
            return self.poll_send_shaped(cx, transmit);
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
                Poll::Ready(Ok(_)) if self.link.blocked() => continue,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fates(conditions: LinkConditions, n: usize, every: Duration) -> Vec<(Instant, Fate)> {
        let mut link = Link::new(conditions);
        let t0 = Instant::now();
        (0..n)
            .map(|i| {
                let now = t0 + every * i as u32;
                (now, link.admit(now, 1200))
            })
            .collect()
    }

    #[test]
    fn a_default_link_sends_everything_at_once() {
        let all = fates(LinkConditions::default(), 1000, ms(1));
        assert!(all.iter().all(|(_, f)| *f == Fate::Now));
    }

    #[test]
    fn loss_is_near_its_fraction_and_repeats_with_the_seed() {
        let c = LinkConditions {
            loss: 0.03,
            seed: 7,
            ..Default::default()
        };
        let n = 20_000;
        let lost = |c| {
            fates(c, n, ms(1))
                .iter()
                .map(|(_, f)| *f == Fate::Lost)
                .collect::<Vec<_>>()
        };
        let first = lost(c);
        let fraction = first.iter().filter(|l| **l).count() as f64 / n as f64;
        // 3 sigma of a binomial(20000, 0.03) is about 0.0036.
        assert!((fraction - 0.03).abs() < 0.005, "lost {fraction}");
        assert_eq!(first, lost(c), "the same seed gave other losses");
        assert_ne!(first, lost(LinkConditions { seed: 8, ..c }));
    }

    /// Departure minus send time for each datagram that was not lost.
    fn delays(all: &[(Instant, Fate)]) -> Vec<Duration> {
        all.iter()
            .filter_map(|(now, f)| match f {
                Fate::At(at) => Some(at.duration_since(*now)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn jitter_spreads_uniformly_around_the_delay_and_keeps_order() {
        let c = LinkConditions {
            delay: ms(80),
            jitter: ms(20),
            seed: 1,
            ..Default::default()
        };
        // Sparse sends (every 50 ms, more than the jitter's width): order never binds.
        let all = fates(c, 2000, ms(50));
        let d = delays(&all);
        let min = d.iter().min().unwrap();
        let max = d.iter().max().unwrap();
        let mean = d.iter().sum::<Duration>() / d.len() as u32;
        assert!(*min >= ms(60) && *min < ms(62), "min {min:?}");
        assert!(*max <= ms(100) && *max > ms(98), "max {max:?}");
        assert!(mean > ms(79) && mean < ms(81), "mean {mean:?}");
        // Dense sends (every 1 ms): a datagram never leaves before the one before it.
        let dense = fates(c, 2000, ms(1));
        let departures: Vec<Instant> = dense
            .iter()
            .filter_map(|(_, f)| match f {
                Fate::At(at) => Some(*at),
                _ => None,
            })
            .collect();
        assert!(departures.windows(2).all(|w| w[0] <= w[1]));
        let d = delays(&dense);
        assert!(d.iter().all(|d| *d >= ms(60) && *d <= ms(100)));
    }

    #[test]
    fn a_rate_cap_serializes_and_drops_what_overflows_its_queue() {
        let c = LinkConditions {
            rate: Some(RateCap {
                bits_per_second: 400_000,
                queue_bytes: 12_000,
            }),
            ..Default::default()
        };
        // 1200-byte datagrams every 12 ms is 800 kbit/s: twice the cap.
        let all = fates(c, 1000, ms(12));
        let sent = all.iter().filter(|(_, f)| *f != Fate::Lost).count();
        assert!((495..=510).contains(&sent), "sent {sent} of 1000");
        // Each takes 24 ms on the wire; the queue holds at most 10 of them (240 ms).
        let d = delays(&all);
        assert!(d.iter().all(|d| *d <= ms(241)), "{:?}", d.iter().max());
        assert!(d.iter().any(|d| *d >= ms(200)));
        // Under the cap, nothing is dropped and each waits only its own serialization.
        let light = fates(c, 1000, ms(30));
        assert!(light.iter().all(|(_, f)| *f != Fate::Lost));
        assert!(delays(&light).iter().all(|d| *d == ms(24)));
    }

    fn loopback_pair() -> (Arc<dyn AsyncUdpSocket>, tokio::net::UdpSocket) {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let rx = tokio::net::UdpSocket::from_std(rx).unwrap();
        (TokioRuntime.wrap_udp_socket(tx).unwrap(), rx)
    }

    async fn send(socket: &ShapedSocket, to: SocketAddr, i: u32) {
        socket
            .send_to(&i.to_be_bytes(), to)
            .await
            .expect("a shaped send never fails");
    }

    /// Real sockets on loopback: the delay is added, order is kept, loss is dropped, and
    /// the delay line ends with its socket.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shaped_socket_delays_real_datagrams_and_its_task_ends_with_it() {
        let link = LinkShaper::default();
        link.set_conditions(LinkConditions {
            delay: ms(80),
            jitter: ms(20),
            loss: 0.1,
            seed: 3,
            ..Default::default()
        });
        let (tx, rx) = loopback_pair();
        let to = rx.local_addr().unwrap();
        let socket = ShapedSocket::new(tx, link.clone());
        let n = 200u32;
        let reader = tokio::spawn(async move {
            let mut arrivals = Vec::new();
            let mut buf = [0u8; 16];
            while let Ok(Ok(len)) = tokio::time::timeout(ms(300), rx.recv(&mut buf)).await {
                let i = u32::from_be_bytes(buf[..len].try_into().unwrap());
                arrivals.push((i, Instant::now()));
            }
            (rx, arrivals)
        });
        let mut sent_at = Vec::new();
        for i in 0..n {
            sent_at.push(Instant::now());
            send(&socket, to, i).await;
            tokio::time::sleep(ms(2)).await;
        }
        assert_eq!(link.delay_lines(), 1);
        let (rx, arrivals) = reader.await.unwrap();
        let got: Vec<(u32, Duration)> = arrivals
            .into_iter()
            .map(|(i, at)| (i, at.duration_since(sent_at[i as usize])))
            .collect();
        let ids: Vec<u32> = got.iter().map(|(i, _)| *i).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "reordered: {ids:?}");
        assert!(
            (160..=195).contains(&got.len()),
            "{} of {n} arrived",
            got.len()
        );
        let mut delays: Vec<Duration> = got.iter().map(|(_, d)| *d).collect();
        delays.sort();
        let (p0, p50, p100) = (
            delays[0],
            delays[delays.len() / 2],
            delays[delays.len() - 1],
        );
        eprintln!("delay min {p0:?} p50 {p50:?} max {p100:?}");
        // Receive-side timestamps are late by the reader's scheduling only, never early.
        assert!(p0 >= ms(60), "min {p0:?}");
        assert!(p50 >= ms(80) && p50 < ms(110), "p50 {p50:?}");
        assert!(p100 < ms(100) + ms(60), "max {p100:?}");

        // Held datagrams die with the socket: the task ends without sending them.
        send(&socket, to, 0).await;
        drop(socket);
        tokio::time::sleep(ms(20)).await;
        let mut buf = [0u8; 16];
        assert_eq!(link.delay_lines(), 0, "the delay line outlived its socket");
        assert!(
            tokio::time::timeout(ms(200), rx.recv(&mut buf))
                .await
                .is_err()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unshaped_sends_start_no_task_and_blocking_drops_everything() {
        let link = LinkShaper::default();
        let (tx, rx) = loopback_pair();
        let to = rx.local_addr().unwrap();
        let socket = ShapedSocket::new(tx, link.clone());
        let mut buf = [0u8; 16];
        send(&socket, to, 1).await;
        rx.recv(&mut buf).await.unwrap();
        assert_eq!(link.delay_lines(), 0);
        link.set_blocked(true);
        send(&socket, to, 2).await;
        assert!(
            tokio::time::timeout(ms(100), rx.recv(&mut buf))
                .await
                .is_err()
        );
        link.set_blocked(false);
        send(&socket, to, 3).await;
        rx.recv(&mut buf).await.unwrap();
        assert_eq!(u32::from_be_bytes(buf[..4].try_into().unwrap()), 3);
    }
}
