//! The signaling server inside the app: when the server address is on this machine and
//! nothing answers there, the app serves rooms itself (the same code as `meshcall serve`),
//! so one person can start a meeting with no setup.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::{ServerConfig, serve};

/// What to do about the signaling server before joining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerPlan {
    /// Use the address as given (remote, or something already answers there).
    UseAsGiven,
    /// The address is on this machine and nothing answers: serve on this port ourselves.
    StartLocal {
        /// Port from the address.
        port: u16,
    },
}

/// `(host, port)` of a server address in any form the engine accepts.
fn host_port(url: &str) -> Option<(String, u16)> {
    let ws = crate::client::ws_url(url);
    let (scheme, rest) = ws.split_once("://")?;
    let authority = rest.split('/').next()?;
    let default_port = if scheme == "wss" { 443 } else { 80 };
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), default_port)),
    }
}

/// The port of `url` when its host is this machine (loopback or `localhost`); only plain
/// `ws://` qualifies, since an embedded server has no certificate.
pub fn local_port(url: &str) -> Option<u16> {
    if crate::client::ws_url(url).starts_with("wss://") {
        return None;
    }
    let (host, port) = host_port(url)?;
    let is_local = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    is_local.then_some(port)
}

/// Decides whether to start the embedded server: only for a local address where nothing
/// accepts a connection.
pub async fn plan_server(url: &str) -> ServerPlan {
    let Some(port) = local_port(url) else {
        return ServerPlan::UseAsGiven;
    };
    let probe = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    match tokio::time::timeout(Duration::from_millis(500), probe).await {
        Ok(Ok(_)) => ServerPlan::UseAsGiven,
        // Refused (or silent): nobody serves there.
        _ => ServerPlan::StartLocal { port },
    }
}

/// A running embedded server; [`EmbeddedServer::stop`] closes every socket and waits.
pub struct EmbeddedServer {
    token: CancellationToken,
    task: JoinHandle<()>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl EmbeddedServer {
    /// Serves on `port`: loopback only, or every interface when `lan` is set.
    pub async fn start(port: u16, lan: bool) -> Result<Self, String> {
        let ip = if lan {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        let listener = tokio::net::TcpListener::bind((ip, port))
            .await
            .map_err(|e| format!("cannot start a meeting server on port {port}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let token = CancellationToken::new();
        let shutdown = token.clone();
        let task = tokio::spawn(async move {
            let stopped = shutdown.cancelled_owned();
            if let Err(e) = serve(listener, ServerConfig::default(), None, stopped).await {
                tracing::warn!("the embedded signaling server stopped: {e}");
            }
        });
        tracing::info!("started the embedded signaling server on {addr}");
        Ok(Self { token, task, addr })
    }

    /// The address people elsewhere use: this machine's LAN address when serving on every
    /// interface, loopback otherwise.
    pub fn public_base(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            lan_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Closes every socket (1001) and waits for the server to end.
    pub async fn stop(self) {
        self.token.cancel();
        let _ = self.task.await;
    }
}

/// The address this machine uses toward other machines. A UDP `connect` only picks the
/// route; it sends nothing.
fn lan_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The browser link for `room` on the server at `base` (any form the engine accepts).
pub fn invite_link(base: &str, room: &str) -> String {
    let ws = crate::client::ws_url(base);
    let (scheme, rest) = ws.split_once("://").unwrap_or(("ws", &ws));
    let authority = rest.split('/').next().unwrap_or(rest);
    let http = if scheme == "wss" { "https" } else { "http" };
    format!("{http}://{authority}/r/{room}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_are_recognised() {
        assert_eq!(local_port("ws://127.0.0.1:8787"), Some(8787));
        assert_eq!(local_port("localhost:9000"), Some(9000));
        assert_eq!(local_port("http://[::1]:8787/"), Some(8787));
        assert_eq!(local_port("ws://127.0.0.1"), Some(80));
        assert_eq!(local_port("ws://192.168.1.4:8787"), None);
        assert_eq!(local_port("meet.example.org"), None);
        assert_eq!(local_port("wss://127.0.0.1:8787"), None);
        assert_eq!(local_port("ws://127.0.0.1:notaport"), None);
    }

    #[test]
    fn invite_links_point_at_the_page() {
        assert_eq!(
            invite_link("ws://127.0.0.1:8787", "abc-defg-hij"),
            "http://127.0.0.1:8787/r/abc-defg-hij"
        );
        assert_eq!(
            invite_link("wss://meet.example.org/ws", "abc-defg-hij"),
            "https://meet.example.org/r/abc-defg-hij"
        );
        assert_eq!(
            invite_link("http://10.0.0.2:8787", "x"),
            "http://10.0.0.2:8787/r/x"
        );
    }

    #[tokio::test]
    async fn starts_only_where_nothing_answers() {
        let busy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        assert_eq!(
            plan_server(&format!("ws://127.0.0.1:{busy_port}")).await,
            ServerPlan::UseAsGiven
        );
        drop(busy);
        assert_eq!(
            plan_server(&format!("ws://127.0.0.1:{busy_port}")).await,
            ServerPlan::StartLocal { port: busy_port }
        );
        let server = EmbeddedServer::start(busy_port, false).await.unwrap();
        assert_eq!(
            plan_server(&format!("ws://127.0.0.1:{busy_port}")).await,
            ServerPlan::UseAsGiven
        );
        server.stop().await;
    }
}
