//! The signaling client: connects, joins, and keeps the membership alive across socket
//! drops by resuming with jittered back-off. Its owner (the call engine) sends typed
//! messages and receives typed messages plus connection-state changes.

mod backoff;

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use backoff::Backoff;

use crate::proto::{
    ClientMessage, ErrorCode, JoinRequest, ResumeTicket, ServerMessage, parse_server_message,
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How to reach the server and whom to join as.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://host:port/ws` or `wss://…`; a URL without a path gets `/ws`.
    pub url: String,
    /// The first join.
    pub join: JoinRequest,
    /// Reconnect timing.
    pub backoff: Backoff,
    /// How long to wait for a connection plus `joined`.
    pub join_timeout: Duration,
    /// Silence (no frame, not even a ping) after which the socket counts as dead.
    pub silence_timeout: Duration,
}

impl ClientConfig {
    /// Defaults for `url` and `join`.
    pub fn new(url: impl Into<String>, join: JoinRequest) -> Self {
        Self {
            url: url.into(),
            join,
            backoff: Backoff::default(),
            join_timeout: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(30),
        }
    }
}

/// Why connecting or joining failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or the WebSocket handshake failed.
    #[error("cannot reach the signaling server at {url}: {reason}")]
    Unreachable {
        /// Where we tried.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered the join with an error.
    #[error("{message}")]
    Refused {
        /// The protocol's error code (`room-full`, `wrong-passcode`, …).
        code: ErrorCode,
        /// The server's sentence.
        message: String,
    },
    /// The server said something the protocol does not allow here.
    #[error("the signaling server broke the protocol: {0}")]
    Protocol(String),
    /// The server took too long.
    #[error("the signaling server did not answer in time")]
    Timeout,
}

/// The signaling link as its owner should show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Joined and talking to the server.
    Connected,
    /// The socket dropped; trying again (media between peers keeps flowing meanwhile).
    Reconnecting {
        /// Attempts made so far.
        attempt: u32,
    },
    /// Gone for good: left, replaced by another socket, or refused on rejoin.
    Closed {
        /// Why, for people.
        reason: String,
    },
}

/// What the client reports to its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A message from the server. After a reconnect this includes the new `joined`;
    /// `resumed: false` there means the old membership was lost and this is a new one.
    Message(ServerMessage),
    /// The link changed state.
    State(ConnectionState),
}

/// The membership `joined` granted.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// The full `joined` message.
    pub message: ServerMessage,
    /// Room code.
    pub room: String,
    /// Our peer id.
    pub self_id: String,
}

enum Command {
    Send(ClientMessage),
    Leave,
}

/// A cheap handle for sending messages through a [`SignalClient`].
#[derive(Debug, Clone)]
pub struct SignalSender(mpsc::Sender<Command>);

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Send(m) => write!(f, "Send({m:?})"),
            Command::Leave => f.write_str("Leave"),
        }
    }
}

impl SignalSender {
    /// Queues a message; it waits for a reconnect if the socket is down. Returns false
    /// once the client has closed.
    pub async fn send(&self, msg: ClientMessage) -> bool {
        self.0.send(Command::Send(msg)).await.is_ok()
    }
}

/// A joined signaling connection with its background task.
pub struct SignalClient {
    sender: SignalSender,
    events: mpsc::Receiver<ClientEvent>,
    task: JoinHandle<()>,
}

/// How many outgoing messages wait while the socket is down before the oldest go.
const OFFLINE_QUEUE: usize = 256;

impl SignalClient {
    /// Connects and joins. Returns once `joined` arrived, or the typed reason it did not.
    pub async fn connect(config: ClientConfig) -> Result<(Self, Joined), ClientError> {
        let url = ws_url(&config.url);
        let (socket, joined) = join_when_settled(&url, &config).await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let ServerMessage::Joined { token, .. } = &joined.message else {
            unreachable!("open_and_join returns only joined");
        };
        let worker = Worker {
            url,
            config: config.clone(),
            ticket: ResumeTicket {
                id: joined.self_id.clone(),
                token: token.clone(),
            },
            room: joined.room.clone(),
            join: config.join,
            events: ev_tx,
            offline: VecDeque::new(),
        };
        let task = tokio::spawn(worker.run(socket, cmd_rx));
        Ok((
            Self {
                sender: SignalSender(cmd_tx),
                events: ev_rx,
                task,
            },
            joined,
        ))
    }

    /// A handle for sending from elsewhere.
    pub fn sender(&self) -> SignalSender {
        self.sender.clone()
    }

    /// Sends a message (see [`SignalSender::send`]).
    pub async fn send(&self, msg: ClientMessage) -> bool {
        self.sender.send(msg).await
    }

    /// The next event; `None` after the client closed and all events were read.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Leaves the room and waits for the background task to end.
    pub async fn leave(self) {
        let _ = self.sender.0.send(Command::Leave).await;
        drop(self.events);
        let _ = self.task.await;
    }
}

/// Adds `/ws` to a bare server URL, and maps http(s) to ws(s), so people can paste either.
pub fn ws_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if url.contains("://") {
        url.to_owned()
    } else {
        format!("ws://{url}")
    };
    let after_scheme = url.split_once("://").map_or("", |(_, r)| r);
    if after_scheme.contains('/') {
        url
    } else {
        format!("{url}{}", crate::proto::WS_PATH)
    }
}

/// How long a join keeps asking a room that is moving onto the SFU (the server calls a
/// move off after 15 s).
const MOVING_PATIENCE: Duration = Duration::from_secs(20);
/// Pause between two joins of a moving room.
const MOVING_RETRY: Duration = Duration::from_secs(1);

/// Joins; a room moving onto the SFU (`room-moving`) is asked again every second until
/// the move is over, so the person joining never sees it.
async fn join_when_settled(
    url: &str,
    config: &ClientConfig,
) -> Result<(Socket, Joined), ClientError> {
    let started = Instant::now();
    loop {
        let result = timeout(config.join_timeout, open_and_join(url, &config.join))
            .await
            .map_err(|_| ClientError::Timeout)?;
        match result {
            Err(ClientError::Refused {
                code: ErrorCode::RoomMoving,
                ..
            }) if started.elapsed() < MOVING_PATIENCE => {
                tracing::info!("the room is moving onto the media server; joining again");
                sleep(MOVING_RETRY).await;
            }
            other => return other,
        }
    }
}

async fn open_and_join(url: &str, join: &JoinRequest) -> Result<(Socket, Joined), ClientError> {
    if url.starts_with("wss://") {
        crate::tls::ensure_crypto_provider();
    }
    // Nodelay (set before any TLS wraps the stream): a second small message, e.g. a
    // candidate right after an offer, would otherwise wait ~40 ms for the server's ACK.
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let text = serde_json::to_string(&ClientMessage::Join(join.clone()))
        .expect("client messages always serialize");
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    while let Some(frame) = socket.next().await {
        let frame = frame.map_err(|e| ClientError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let Message::Text(text) = frame else { continue };
        match parse_server_message(&text) {
            Ok(msg @ ServerMessage::Joined { .. }) => {
                let ServerMessage::Joined { room, self_id, .. } = &msg else {
                    unreachable!()
                };
                let joined = Joined {
                    room: room.clone(),
                    self_id: self_id.clone(),
                    message: msg,
                };
                return Ok((socket, joined));
            }
            Ok(ServerMessage::Error { code, message }) => {
                return Err(ClientError::Refused { code, message });
            }
            Ok(other) => {
                return Err(ClientError::Protocol(format!(
                    "expected joined, got {other:?}"
                )));
            }
            Err(e) => return Err(ClientError::Protocol(e.message)),
        }
    }
    Err(ClientError::Unreachable {
        url: url.to_owned(),
        reason: "the server closed the connection".to_owned(),
    })
}

struct Worker {
    url: String,
    config: ClientConfig,
    ticket: ResumeTicket,
    room: String,
    /// The join to send on reconnect, kept current with our own `state` messages.
    join: JoinRequest,
    events: mpsc::Sender<ClientEvent>,
    offline: VecDeque<ClientMessage>,
}

/// How one socket's life ended.
enum SocketEnd {
    Lost,
    Left,
    OwnerGone,
    Replaced,
}

impl Worker {
    async fn run(mut self, mut socket: Socket, mut commands: mpsc::Receiver<Command>) {
        loop {
            match self.pump(&mut socket, &mut commands).await {
                SocketEnd::Left | SocketEnd::OwnerGone => {
                    let _ = socket.close(None).await;
                    self.emit_state(ConnectionState::Closed {
                        reason: "left the room".into(),
                    })
                    .await;
                    return;
                }
                SocketEnd::Replaced => {
                    self.emit_state(ConnectionState::Closed {
                        reason: "this membership was resumed from another connection".into(),
                    })
                    .await;
                    return;
                }
                SocketEnd::Lost => {}
            }
            match self.reconnect(&mut commands).await {
                Some(new_socket) => socket = new_socket,
                None => return,
            }
        }
    }

    async fn emit_state(&self, state: ConnectionState) {
        let _ = self.events.send(ClientEvent::State(state)).await;
    }

    /// Moves messages both ways until the socket ends.
    async fn pump(
        &mut self,
        socket: &mut Socket,
        commands: &mut mpsc::Receiver<Command>,
    ) -> SocketEnd {
        while let Some(msg) = self.offline.pop_front() {
            if send_msg(socket, &msg).await.is_err() {
                self.offline.push_front(msg);
                return SocketEnd::Lost;
            }
        }
        let mut last_heard = Instant::now();
        let mut check = tokio::time::interval(self.config.silence_timeout / 10);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => {
                        let _ = send_msg(socket, &ClientMessage::Leave).await;
                        return SocketEnd::OwnerGone;
                    }
                    Some(Command::Leave) => {
                        let _ = send_msg(socket, &ClientMessage::Leave).await;
                        return SocketEnd::Left;
                    }
                    Some(Command::Send(msg)) => {
                        self.remember(&msg);
                        if send_msg(socket, &msg).await.is_err() {
                            self.queue_offline(msg);
                            return SocketEnd::Lost;
                        }
                    }
                },
                frame = socket.next() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => match parse_server_message(&text) {
                            Ok(msg) => {
                                if let ServerMessage::Joined { token, .. } = &msg {
                                    self.ticket.token = token.clone();
                                }
                                if self.events.send(ClientEvent::Message(msg)).await.is_err() {
                                    let _ = send_msg(socket, &ClientMessage::Leave).await;
                                    return SocketEnd::OwnerGone;
                                }
                            }
                            Err(e) => tracing::warn!("unreadable server message: {e}"),
                        },
                        Some(Ok(Message::Close(Some(frame)))) if u16::from(frame.code) == 4001 => {
                            return SocketEnd::Replaced;
                        }
                        Some(Ok(Message::Close(frame))) => {
                            if frame.is_some_and(|f| f.code == CloseCode::Normal) {
                                // The server only closes normally after our own leave.
                                return SocketEnd::Left;
                            }
                            return SocketEnd::Lost;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return SocketEnd::Lost,
                    }
                }
                _ = check.tick() => {
                    if last_heard.elapsed() > self.config.silence_timeout {
                        return SocketEnd::Lost;
                    }
                }
            }
        }
    }

    /// Folds our own state changes into the join we resume with.
    fn remember(&mut self, msg: &ClientMessage) {
        if let ClientMessage::State(s) = msg {
            if let Some(name) = &s.name {
                self.join.name = name.clone();
            }
            self.join.audio = s.audio.unwrap_or(self.join.audio);
            self.join.video = s.video.unwrap_or(self.join.video);
        }
    }

    fn queue_offline(&mut self, msg: ClientMessage) {
        if self.offline.len() >= OFFLINE_QUEUE {
            self.offline.pop_front();
        }
        self.offline.push_back(msg);
    }

    /// Tries until it has a joined socket again; `None` when the owner is gone or the room
    /// refused us.
    async fn reconnect(&mut self, commands: &mut mpsc::Receiver<Command>) -> Option<Socket> {
        let mut attempt = 0u32;
        loop {
            self.emit_state(ConnectionState::Reconnecting { attempt })
                .await;
            let wait = sleep(self.config.backoff.delay(attempt));
            tokio::pin!(wait);
            // Keep taking commands while waiting, so senders never block on a dead link.
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    cmd = commands.recv() => match cmd {
                        None | Some(Command::Leave) => {
                            // Best effort: a quick leave so the others need not wait out the grace.
                            self.join.resume = Some(self.ticket.clone());
                            self.join.room = Some(self.room.clone());
                            if let Ok(Ok((mut s, _))) = timeout(Duration::from_secs(2), open_and_join(&self.url, &self.join)).await {
                                let _ = send_msg(&mut s, &ClientMessage::Leave).await;
                                let _ = s.close(None).await;
                            }
                            self.emit_state(ConnectionState::Closed { reason: "left the room".into() }).await;
                            return None;
                        }
                        Some(Command::Send(msg)) => {
                            self.remember(&msg);
                            self.queue_offline(msg);
                        }
                    }
                }
            }
            attempt = attempt.saturating_add(1);
            let mut join = self.join.clone();
            join.room = Some(self.room.clone());
            join.resume = Some(self.ticket.clone());
            let result = timeout(self.config.join_timeout, open_and_join(&self.url, &join)).await;
            let result = match result {
                Ok(Err(ClientError::Refused {
                    code: ErrorCode::BadResume,
                    ..
                })) => {
                    // The grace period ran out: the old membership is gone, join afresh.
                    join.resume = None;
                    timeout(self.config.join_timeout, open_and_join(&self.url, &join)).await
                }
                other => other,
            };
            match result {
                Ok(Ok((socket, joined))) => {
                    if let ServerMessage::Joined { token, .. } = &joined.message {
                        self.ticket = ResumeTicket {
                            id: joined.self_id.clone(),
                            token: token.clone(),
                        };
                    }
                    self.emit_state(ConnectionState::Connected).await;
                    let _ = self.events.send(ClientEvent::Message(joined.message)).await;
                    return Some(socket);
                }
                // Back in a moment; the next attempt comes after the usual pause.
                Ok(Err(ClientError::Refused {
                    code: ErrorCode::RoomMoving,
                    ..
                })) => tracing::debug!(attempt, "the room is moving onto the SFU"),
                Ok(Err(ClientError::Refused { code, message })) => {
                    self.emit_state(ConnectionState::Closed {
                        reason: format!("could not rejoin ({code}): {message}"),
                    })
                    .await;
                    return None;
                }
                Ok(Err(e)) => tracing::debug!(attempt, "reconnect failed: {e}"),
                Err(_) => tracing::debug!(attempt, "reconnect timed out"),
            }
        }
    }
}

async fn send_msg(
    socket: &mut Socket,
    msg: &ClientMessage,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let text = serde_json::to_string(msg).expect("client messages always serialize");
    socket.send(Message::text(text)).await
}

#[cfg(test)]
mod tests {
    use super::ws_url;

    #[test]
    fn urls_people_paste_become_socket_urls() {
        assert_eq!(ws_url("ws://127.0.0.1:8787"), "ws://127.0.0.1:8787/ws");
        assert_eq!(ws_url("127.0.0.1:8787/"), "ws://127.0.0.1:8787/ws");
        assert_eq!(ws_url("http://h:1"), "ws://h:1/ws");
        assert_eq!(ws_url("https://h"), "wss://h/ws");
        assert_eq!(ws_url("wss://h/custom"), "wss://h/custom");
    }
}
