//! The signaling server (`meshcall serve`): rooms, relay, resume and limits over WebSocket,
//! plus the small HTTP surface beside it. [`serve`] takes a bound listener and a shutdown
//! future so tests and the desktop app can embed it; the binary only parses flags.

mod closing;
mod conn;
mod hub;
mod limits;
mod metrics;
mod pages;
mod rate;
mod sfu;
mod turn;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsAcceptor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use limits::{Backoff, PasscodeLimits};
pub use rate::RateLimits;
pub use sfu::{DEFAULT_SFU_ABOVE, DEFAULT_SFU_MAX_ROOM_SIZE, SfuConfig};
pub use turn::{TurnConfig, turn_credentials};

use crate::proto::{IceServer, MAX_FRAME_BYTES, WS_PATH, normalize_room_code};
use hub::Hub;
use limits::SocketRefusal;

/// Everything a server can be told; `Default` gives protocol.md's values.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Members per room, grace-period members included (at least 1).
    pub max_room_size: usize,
    /// How long a dropped member keeps its place.
    pub grace: Duration,
    /// Static STUN/TURN servers handed out in `joined.iceServers`.
    pub ice_servers: Vec<IceServer>,
    /// A TURN server with a shared secret, for per-member credentials.
    pub turn: Option<TurnConfig>,
    /// How often the server pings each socket.
    pub ping_interval: Duration,
    /// Silence after which a socket counts as gone.
    pub ping_timeout: Duration,
    /// Per-socket message rate.
    pub rate: RateLimits,
    /// Signals kept for a member inside its grace period.
    pub signal_queue: usize,
    /// Back-off on wrong passcodes, per address and per room.
    pub passcode: PasscodeLimits,
    /// Open WebSocket connections in total (at least 1); more are refused with HTTP 503.
    pub max_sockets: usize,
    /// Open WebSocket connections from one address (IPv6: one /64; at least 1); more are
    /// refused with HTTP 429.
    pub max_sockets_per_ip: usize,
    /// Move rooms that outgrow the mesh onto this Janus (`docs/protocol-sfu.md`); `None`
    /// keeps every room a mesh.
    pub sfu: Option<SfuConfig>,
}

/// Default for [`ServerConfig::max_sockets`].
pub const DEFAULT_MAX_SOCKETS: usize = 1000;
/// Default for [`ServerConfig::max_sockets_per_ip`].
pub const DEFAULT_MAX_SOCKETS_PER_IP: usize = 50;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_room_size: 8,
            grace: Duration::from_secs(20),
            ice_servers: Vec::new(),
            turn: None,
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(30),
            rate: RateLimits::default(),
            signal_queue: 256,
            passcode: PasscodeLimits::default(),
            max_sockets: DEFAULT_MAX_SOCKETS,
            max_sockets_per_ip: DEFAULT_MAX_SOCKETS_PER_IP,
            sfu: None,
        }
    }
}

/// TLS certificate and key files (PEM) for `wss://`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener failed.
    #[error("the server's listener failed: {0}")]
    Io(#[from] std::io::Error),
    /// The certificate or key could not be loaded.
    #[error("could not load the TLS certificate or key: {0}")]
    Tls(std::io::Error),
    /// A setting makes no sense.
    #[error("invalid server setting: {0}")]
    Config(String),
}

/// Runs the server on `listener` until `shutdown` completes, then closes every socket with
/// 1001 and returns once all of them and all grace timers have ended.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if config.max_room_size == 0 {
        return Err(ServeError::Config(
            "max room size must be at least 1".into(),
        ));
    }
    if config.max_sockets == 0 || config.max_sockets_per_ip == 0 {
        return Err(ServeError::Config("socket caps must be at least 1".into()));
    }
    if let Some(sfu) = &config.sfu
        && (sfu.above == 0 || sfu.max_room_size <= sfu.above)
    {
        return Err(ServeError::Config(format!(
            "the SFU limit ({}) must be above the mesh limit --sfu-above ({}), which must be at least 1",
            sfu.max_room_size, sfu.above
        )));
    }
    if config.ping_timeout.is_zero() || config.ping_interval.is_zero() {
        return Err(ServeError::Config(
            "ping interval and timeout must be positive".into(),
        ));
    }
    let token = CancellationToken::new();
    let hub = Arc::new(Hub::new(config, token.clone()));
    let app = router(Arc::clone(&hub));
    let stop = token.clone();
    let shutdown = async move {
        shutdown.await;
        stop.cancel();
    };
    // Signaling is many small messages, often several to one socket within a millisecond
    // (announcements, offer then candidates). With Nagle on, each one after the first waits
    // for the peer's delayed ACK, about 40 ms.
    match tls {
        None => {
            let listener = listener.tap_io(|tcp| {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::warn!("could not set TCP_NODELAY on a connection: {err}");
                }
            });
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await?;
        }
        Some(files) => {
            crate::tls::ensure_crypto_provider();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                .await
                .map_err(ServeError::Tls)?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            let acceptor = RustlsAcceptor::new(tls).acceptor(NoDelayAcceptor::new());
            axum_server::from_tcp(listener.into_std()?)?
                .acceptor(acceptor)
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await?;
        }
    }
    hub.destroy_hosted_rooms().await;
    // Upgraded sockets outlive the HTTP server's own bookkeeping; wait for them here.
    hub.tasks.close();
    hub.tasks.wait().await;
    Ok(())
}

fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route(WS_PATH, get(ws_upgrade))
        .route("/", get(|State(hub): State<Arc<Hub>>| async move {
            pages::index(None, sfu_public_url(&hub))
        }))
        .route("/r/{code}", get(room_page))
        .route(
            "/assets/{file}",
            get(|Path(file): Path<String>| async move { pages::asset(&file) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(hub)
}

async fn ws_upgrade(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    if hub.shutdown.is_cancelled() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    // Refused before the upgrade, with a plain HTTP status a client can show.
    let admission = match hub.sockets.admit(peer.ip()) {
        Ok(admission) => admission,
        Err(why) => {
            hub.metrics.socket_refused(why);
            let (status, text) = match why {
                SocketRefusal::PerAddress => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many connections from your address (at most {}).",
                        hub.config.max_sockets_per_ip
                    ),
                ),
                SocketRefusal::Total => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "The server is at its connection limit ({}); try again later.",
                        hub.config.max_sockets
                    ),
                ),
            };
            let mut response = (status, text).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            return response;
        }
    };
    // Frames between 64 KiB and this cap are read whole so the client can be told
    // `too-large` before the close. Beyond it tungstenite refuses the frame from its header
    // without buffering it, and the close that follows may reach the client as a reset,
    // because the kernel still holds the unread payload.
    let cap = 16 * MAX_FRAME_BYTES;
    let tasks = hub.tasks.clone();
    ws.max_message_size(cap)
        .max_frame_size(cap)
        // tungstenite reserves 128 KiB per socket for reading by default; signaling
        // messages are small, and larger ones still assemble in their own buffer.
        .read_buffer_size(8 * 1024)
        .on_upgrade(move |socket| tasks.track_future(conn::run(hub, socket, peer, admission)))
}

/// Janus' WebSocket as members reach it (`--sfu-public`, else `--sfu`), if rooms move.
fn sfu_public_url(hub: &Hub) -> Option<&str> {
    let sfu = hub.config.sfu.as_ref()?;
    Some(sfu.public_url.as_deref().unwrap_or(&sfu.url))
}

async fn room_page(State(hub): State<Arc<Hub>>, Path(code): Path<String>) -> Response {
    match normalize_room_code(&code) {
        Some(code) => pages::index(Some(&code), sfu_public_url(&hub)),
        None => (StatusCode::NOT_FOUND, "No such room code.").into_response(),
    }
}

async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    let (rooms, members) = hub.counts();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(rooms, members),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_protocol_numbers() {
        let c = ServerConfig::default();
        assert_eq!(c.max_room_size, 8);
        assert_eq!(c.grace, Duration::from_secs(20));
        assert_eq!(c.ping_interval, Duration::from_secs(10));
        assert_eq!(c.ping_timeout, Duration::from_secs(30));
        assert_eq!(c.signal_queue, 256);
        assert_eq!(c.max_sockets, 1000);
        assert_eq!(c.max_sockets_per_ip, 50);
        assert_eq!(c.rate.per_second, 50.0);
        assert_eq!(c.rate.burst, 100.0);
        assert_eq!(c.rate.flood_close_after, Duration::from_secs(10));
    }
}
