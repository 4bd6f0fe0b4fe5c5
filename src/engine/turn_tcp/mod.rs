//! TURN over TCP for webrtc-rs 0.21, whose ICE agent speaks TURN over UDP only: it skips
//! every other URL ("Skipping unsupported non-UDP TURN url", webrtc
//! `peer_connection/transport/turn_relayer.rs`).
//!
//! TURN over TCP changes only the client-to-server leg (RFC 5766 §2.1): the same STUN
//! messages and ChannelData follow each other on one TCP connection, framed by their own
//! lengths (`framing.rs`). The allocation's relayed side is UDP either way, and
//! MESSAGE-INTEGRITY does not cover the transport. So each `turn:…?transport=tcp` server
//! gets a local bridge: a UDP socket on loopback that webrtc-rs is handed as a TURN server
//! over UDP (same username and credential), and, for each local address that sends to it,
//! one TCP connection to the real server. Relay candidates carry the real server's relayed
//! address, exactly as over UDP.
//!
//! The call owns its bridges ([`TurnTcpBridges`]); dropping them ends every socket,
//! connection and task. A connection also ends when its TURN client gives the allocation
//! up (Refresh to LIFETIME 0, which webrtc-rs sends when a peer connection closes), when the
//! server closes it, or after [`IDLE`]. A server that cannot be reached is a warning; the
//! TURN client then times out and its candidate fails the normal way.

mod framing;
mod url;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proto::IceServer;
use framing::{Deframer, is_deallocation, is_refresh_response, to_stream};
pub(crate) use url::tcp_turn_server;

/// How long a TCP connection to the TURN server may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed connect, datagrams from that client are dropped this long before the
/// next attempt, so a dead server costs one attempt (and one warning) per interval, not
/// one per retransmitted Allocate.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// A connection whose client has sent nothing this long is closed: TURN's default
/// allocation lifetime, so its allocation has expired on the server anyway.
const IDLE: Duration = Duration::from_secs(600);
/// How long a connection waits for the answer to a deallocation before closing anyway.
const RETIRE_GRACE: Duration = Duration::from_secs(2);
/// Datagrams queued per connection while its TCP stream is busy; more are dropped, as a
/// congested UDP path would.
const CLIENT_QUEUE: usize = 256;
/// The largest datagram a TURN client sends (a STUN or ChannelData length is 16 bits).
const MAX_DATAGRAM: usize = 4 + 65_535 + 3;

/// The TURN-over-TCP bridges of one call, and every task and connection they run.
pub(crate) struct TurnTcpBridges {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Drop for TurnTcpBridges {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl TurnTcpBridges {
    /// `servers` as webrtc-rs should see them: every `turn:…?transport=tcp` URL becomes
    /// `turn:<loopback>:<port>?transport=udp`, a bridge to that server started here;
    /// everything else is unchanged. A bridge that cannot bind leaves its URL as it was
    /// (webrtc-rs then skips it) and logs why.
    pub(crate) async fn start(servers: &[IceServer], loopback: IpAddr) -> (Vec<IceServer>, Self) {
        let bridges = Self {
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        let mut out = Vec::with_capacity(servers.len());
        for server in servers {
            let mut urls = Vec::with_capacity(server.urls.len());
            for url in &server.urls {
                let Some(remote) = tcp_turn_server(url) else {
                    urls.push(url.clone());
                    continue;
                };
                match UdpSocket::bind((loopback, 0)).await.and_then(|s| {
                    let addr = s.local_addr()?;
                    Ok((s, addr))
                }) {
                    Ok((socket, local)) => {
                        tracing::debug!(%url, %local, "TURN over TCP bridged");
                        bridges.tasks.spawn(serve(
                            Arc::new(socket),
                            remote,
                            bridges.cancel.clone(),
                            bridges.tasks.clone(),
                        ));
                        urls.push(format!("turn:{local}?transport=udp"));
                    }
                    Err(e) => {
                        tracing::warn!(%url, "cannot bridge TURN over TCP (local socket: {e})");
                        urls.push(url.clone());
                    }
                }
            }
            out.push(IceServer {
                urls,
                ..server.clone()
            });
        }
        (out, bridges)
    }

    /// Ends every bridge and connection, and waits until their tasks have.
    pub(crate) async fn close(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Tasks still running (bridges and connections).
    #[cfg(test)]
    pub(crate) fn tasks(&self) -> usize {
        self.tasks.len()
    }
}

/// The loopback address of `ice_ips`' family, where bridges listen (a socket bound to a
/// LAN address can still send to it; one bound to an IPv6 address cannot send to
/// 127.0.0.1).
pub(crate) fn loopback_for(ice_ips: &[IpAddr]) -> IpAddr {
    match ice_ips.first() {
        Some(IpAddr::V6(_)) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        _ => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    }
}

/// One bridge: hands each datagram to its sender's connection, opening one as needed.
async fn serve(udp: Arc<UdpSocket>, remote: String, cancel: CancellationToken, tasks: TaskTracker) {
    let mut clients: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            () = cancel.cancelled() => return,
            r = udp.recv_from(&mut buf) => r,
        };
        let (n, from) = match received {
            Ok(r) => r,
            Err(e) => {
                // Linux reports an earlier send's ICMP "port unreachable" (a client that
                // went away) on the next receive; the socket itself is fine.
                tracing::debug!("TURN over TCP bridge: {e}");
                continue;
            }
        };
        let datagram = Bytes::copy_from_slice(&buf[..n]);
        if clients.get(&from).is_none_or(mpsc::Sender::is_closed) {
            clients.retain(|_, tx| !tx.is_closed());
            let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
            tasks.spawn(connection(
                from,
                remote.clone(),
                Arc::clone(&udp),
                rx,
                cancel.clone(),
            ));
            clients.insert(from, tx);
        }
        let tx = &clients[&from];
        if tx.try_send(datagram).is_err() {
            tracing::debug!(client = %from, "TURN over TCP: queue full, datagram dropped");
        }
    }
}

/// One client's TCP connection to the TURN server: its datagrams out, the server's
/// messages back as datagrams.
async fn connection(
    client: SocketAddr,
    remote: String,
    udp: Arc<UdpSocket>,
    mut from_client: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
) {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&remote)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed(&remote, &e.to_string(), &cancel).await,
        Err(_) => return failed(&remote, "timed out", &cancel).await,
    };
    // Small TURN messages (checks, consent, audio) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    tracing::debug!(%client, %remote, "TURN over TCP connected");
    let (mut rd, mut wr) = stream.into_split();
    let mut deframer = Deframer::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle = Instant::now() + IDLE;
    // Set once the client has asked to deallocate.
    let mut retiring: Option<Instant> = None;
    loop {
        let deadline = retiring.map_or(idle, |r| r.min(idle));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!(%client, %remote, "TURN over TCP connection closed (idle or retired)");
                return;
            }
            d = from_client.recv() => {
                let Some(d) = d else { return };
                idle = Instant::now() + IDLE;
                let framed = match to_stream(&d) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::debug!(%client, "TURN over TCP: datagram not sent: {e}");
                        continue;
                    }
                };
                if is_deallocation(&d) {
                    retiring = Some(Instant::now() + RETIRE_GRACE);
                }
                if let Err(e) = wr.write_all(&framed).await {
                    tracing::warn!(%remote, "TURN over TCP connection lost: {e}");
                    return;
                }
            }
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) if retiring.is_some() => return,
                    Ok(0) => {
                        tracing::warn!(%remote, "TURN server closed the TCP connection");
                        return;
                    }
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(%remote, "TURN over TCP connection lost: {e}");
                        return;
                    }
                };
                deframer.push(&buf[..n]);
                loop {
                    match deframer.next_message() {
                        Ok(Some(m)) => {
                            if let Err(e) = udp.send_to(&m, client).await {
                                tracing::debug!(%client, "TURN over TCP: cannot hand back: {e}");
                            }
                            if retiring.is_some() && is_refresh_response(&m) {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(%remote, "TURN over TCP: the server sent {e}; closing");
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// A connect that failed: warn, then hold the client's queue (dropping what it sends) for
/// [`RETRY_AFTER`] before the next datagram may try again.
async fn failed(remote: &str, why: &str, cancel: &CancellationToken) {
    tracing::warn!(%remote, "cannot reach the TURN server over TCP: {why}");
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(RETRY_AFTER) => {}
    }
}

#[cfg(test)]
mod tests {
    //! Real sockets on 127.0.0.1: a UDP "TURN client" on one side, a TCP listener standing in
    //! for the TURN server on the other, which checks the bytes on the wire itself.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::net::TcpListener;

    const WAIT: Duration = Duration::from_secs(5);

    fn stun(kind: u16, attrs: &[u8]) -> Vec<u8> {
        let mut m = kind.to_be_bytes().to_vec();
        m.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[3; 12]);
        m.extend_from_slice(attrs);
        m
    }

    async fn bridge_to(port: u16) -> (SocketAddr, TurnTcpBridges) {
        let servers = [IceServer {
            urls: vec![
                "stun:127.0.0.1:3478".to_owned(),
                format!("turn:127.0.0.1:{port}?transport=tcp"),
            ],
            username: Some("u".to_owned()),
            credential: Some("c".to_owned()),
        }];
        let (out, bridges) = TurnTcpBridges::start(&servers, loopback_for(&[])).await;
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].urls[0], "stun:127.0.0.1:3478",
            "other URLs unchanged"
        );
        assert_eq!(out[0].username.as_deref(), Some("u"));
        assert_eq!(out[0].credential.as_deref(), Some("c"));
        let local = out[0].urls[1]
            .strip_prefix("turn:")
            .and_then(|u| u.strip_suffix("?transport=udp"))
            .unwrap_or_else(|| panic!("not rewritten: {}", out[0].urls[1]));
        (local.parse().unwrap(), bridges)
    }

    async fn recv(udp: &UdpSocket) -> Vec<u8> {
        let mut buf = vec![0; 2048];
        let n = tokio::time::timeout(WAIT, udp.recv(&mut buf))
            .await
            .expect("a datagram back")
            .unwrap();
        buf.truncate(n);
        buf
    }

    async fn read_exact(tcp: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut buf))
            .await
            .expect("bytes on the stream")
            .unwrap();
        buf
    }

    async fn client(bridge: SocketAddr) -> UdpSocket {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.connect(bridge).await.unwrap();
        udp
    }

    #[tokio::test]
    async fn datagrams_cross_tcp_framed_and_padded_both_ways() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (bridge, bridges) = bridge_to(server.local_addr().unwrap().port()).await;
        let a = client(bridge).await;
        let allocate = stun(0x0003, &[0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]);
        a.send(&allocate).await.unwrap();
        // Unpadded ChannelData over UDP is allowed; on TCP it must be padded (§11.5).
        let data = [0x40, 0x01, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o'];
        a.send(&data).await.unwrap();
        let (mut conn, _) = tokio::time::timeout(WAIT, server.accept())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_exact(&mut conn, allocate.len()).await, allocate);
        let mut padded = data.to_vec();
        padded.extend_from_slice(&[0, 0, 0]);
        assert_eq!(read_exact(&mut conn, 12).await, padded);

        // The server's messages in one write, the ChannelData padded: two datagrams back,
        // the padding gone.
        let response = stun(0x0103, &[]);
        let mut burst = response.clone();
        burst.extend_from_slice(&padded);
        conn.write_all(&burst).await.unwrap();
        assert_eq!(recv(&a).await, response);
        assert_eq!(recv(&a).await, data);

        // A second local address gets its own connection (its own allocation).
        let b = client(bridge).await;
        b.send(&allocate).await.unwrap();
        let (mut conn_b, _) = tokio::time::timeout(WAIT, server.accept())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_exact(&mut conn_b, allocate.len()).await, allocate);
        assert_eq!(bridges.tasks(), 3, "one bridge, two connections");

        // The call ends: every task ends, and the server sees both connections close.
        tokio::time::timeout(WAIT, bridges.close()).await.unwrap();
        assert_eq!(bridges.tasks(), 0);
        for c in [&mut conn, &mut conn_b] {
            let mut buf = [0; 1];
            let n = tokio::time::timeout(WAIT, c.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n, 0, "closed");
        }
    }

    #[tokio::test]
    async fn a_deallocation_closes_the_connection_once_answered() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (bridge, bridges) = bridge_to(server.local_addr().unwrap().port()).await;
        let a = client(bridge).await;
        let refresh0 = stun(0x0004, &[0x00, 0x0D, 0x00, 0x04, 0, 0, 0, 0]);
        a.send(&refresh0).await.unwrap();
        let (mut conn, _) = server.accept().await.unwrap();
        assert_eq!(read_exact(&mut conn, refresh0.len()).await, refresh0);
        conn.write_all(&stun(0x0104, &[])).await.unwrap();
        assert_eq!(
            recv(&a).await,
            stun(0x0104, &[]),
            "the answer is handed back"
        );
        let mut buf = [0; 1];
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "the bridge closed the connection");
        // The task ends just after its socket closes.
        let deadline = Instant::now() + WAIT;
        while bridges.tasks() > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(bridges.tasks(), 1, "only the bridge itself is left");
    }

    #[tokio::test]
    async fn an_unreachable_server_drops_datagrams_and_still_ends() {
        // A port nobody listens on: bind, note it, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (bridge, bridges) = bridge_to(port).await;
        let a = client(bridge).await;
        a.send(&stun(0x0003, &[])).await.unwrap();
        let mut buf = [0; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), a.recv(&mut buf))
                .await
                .is_err(),
            "nothing comes back: the TURN client times out as with a dead UDP server"
        );
        tokio::time::timeout(WAIT, bridges.close()).await.unwrap();
        assert_eq!(bridges.tasks(), 0);
    }
}
