//! One task per WebSocket: reads frames, applies the transport rules (size, rate, type of
//! frame, liveness), hands messages to the [`Hub`], and writes what the hub queued for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Membership, Outbox, Outgoing, Refusal};
use super::rate::{RateLimiter, Verdict};
use crate::proto::{
    ClientMessage, ErrorCode, MAX_FRAME_BYTES, ServerMessage, parse_client_message,
};

/// How many messages may wait for one socket before it counts as too slow.
const OUTBOX_CAPACITY: usize = 1024;

/// Close codes this server uses.
mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// What the read side decided about the connection.
enum Flow {
    Continue,
    Close(u16, &'static str),
}

struct Session {
    hub: Arc<Hub>,
    conn: u64,
    out: Outbox,
    joined: Option<Membership>,
    rate: RateLimiter,
}

/// Serves one upgraded socket until it closes, the client leaves, or the server stops.
pub(crate) async fn run(hub: Arc<Hub>, socket: WebSocket) {
    hub.metrics.sockets.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel(OUTBOX_CAPACITY);
    let kick = CancellationToken::new();
    let mut session = Session {
        conn: hub.next_conn_id(),
        out: Outbox {
            tx,
            kick: kick.clone(),
        },
        joined: None,
        rate: RateLimiter::new(hub.config.rate, Instant::now()),
        hub: Arc::clone(&hub),
    };
    let (mut sink, mut stream) = socket.split();
    let mut ping = interval(hub.config.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await;
    // Liveness is checked more often than pings go out, so a silent client is dropped
    // close to the timeout rather than up to one ping interval after it.
    let mut liveness = interval(hub.config.ping_timeout / 10);
    liveness.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    let close: Option<(u16, &'static str)> = loop {
        tokio::select! {
            () = hub.shutdown.cancelled() => break Some((close::GOING_AWAY, "server shutting down")),
            () = kick.cancelled() => break Some((close::POLICY, "too slow to keep up")),
            Some(item) = rx.recv() => match item {
                Outgoing::Text(text) => {
                    if sink.send(Message::Text(text)).await.is_err() {
                        break None;
                    }
                }
                Outgoing::Close(code, reason) => break Some((code, reason)),
            },
            frame = stream.next() => {
                last_heard = Instant::now();
                let flow = match frame {
                    None => break None,
                    Some(Err(err)) => {
                        // tungstenite refuses frames over its own (larger) cap before
                        // buffering them; tell the client why, as for any oversize frame.
                        let text = err.to_string();
                        if text.contains("too long") || text.contains("Space limit") {
                            session.refuse(ErrorCode::TooLarge, too_large_message(None));
                            Flow::Close(close::TOO_BIG, "frame too large")
                        } else {
                            break None;
                        }
                    }
                    Some(Ok(msg)) => session.on_frame(msg),
                };
                if let Flow::Close(code, reason) = flow {
                    break Some((code, reason));
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            _ = liveness.tick() => {
                if last_heard.elapsed() > hub.config.ping_timeout {
                    tracing::debug!(conn = session.conn, "no answer to pings; dropping");
                    break None;
                }
            }
        }
    };

    if let Some((code, reason)) = close {
        // Whatever was queued before the close (an error, a last relay) goes out first.
        rx.close();
        while let Some(Outgoing::Text(text)) = rx.recv().await {
            if sink.send(Message::Text(text)).await.is_err() {
                break;
            }
        }
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
        let _ = sink.close().await;
    }
    if let Some(m) = session.joined.take() {
        hub.disconnected(&m, session.conn);
    }
    hub.metrics.sockets.fetch_sub(1, Ordering::Relaxed);
}

fn too_large_message(size: Option<usize>) -> String {
    match size {
        Some(size) => {
            format!("A frame may be at most {MAX_FRAME_BYTES} bytes; this one is {size}.")
        }
        None => format!("A frame may be at most {MAX_FRAME_BYTES} bytes."),
    }
}

impl Session {
    fn refuse(&self, code: ErrorCode, message: String) {
        self.hub.metrics.refused(code);
        self.out.send_error(code, message);
    }

    fn on_frame(&mut self, msg: Message) -> Flow {
        let size = match &msg {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            // Control frames are the transport's business; tungstenite answers pings.
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
            Message::Close(_) => return Flow::Close(close::NORMAL, ""),
        };
        self.hub
            .metrics
            .frames_received
            .fetch_add(1, Ordering::Relaxed);
        if size > MAX_FRAME_BYTES {
            self.refuse(ErrorCode::TooLarge, too_large_message(Some(size)));
            return Flow::Close(close::TOO_BIG, "frame too large");
        }
        match self.rate.check(Instant::now()) {
            Verdict::Allow => {}
            Verdict::Drop { notify } => {
                if notify {
                    self.refuse(
                        ErrorCode::RateLimited,
                        "Too many messages: at most 50 a second (bursts of 100). Some were dropped."
                            .to_owned(),
                    );
                }
                return Flow::Continue;
            }
            Verdict::Close => {
                self.hub.metrics.refused(ErrorCode::RateLimited);
                return Flow::Close(close::POLICY, "message flood");
            }
        }
        let Message::Text(text) = msg else {
            self.refuse(
                ErrorCode::BadMessage,
                "Binary frames are not part of the protocol; send JSON text.".to_owned(),
            );
            return Flow::Continue;
        };
        match parse_client_message(&text) {
            Ok(msg) => self.on_message(msg),
            Err(err) => {
                self.refuse(err.code, err.message);
                Flow::Continue
            }
        }
    }

    fn on_message(&mut self, msg: ClientMessage) -> Flow {
        let result: Result<(), Refusal> = match (&self.joined, msg) {
            (None, ClientMessage::Join(req)) => self
                .hub
                .join(self.conn, &self.out, req)
                .map(|m| self.joined = Some(m)),
            (Some(_), ClientMessage::Join(_)) => Err((
                ErrorCode::AlreadyJoined,
                "This socket is already in a room; leave first.".to_owned(),
            )),
            (None, _) => Err((
                ErrorCode::NotJoined,
                "Send join first and wait for joined.".to_owned(),
            )),
            (Some(m), ClientMessage::Signal { to, payload }) => self.hub.signal(m, &to, payload),
            (Some(m), ClientMessage::State(update)) => self.hub.state(m, update),
            (Some(m), ClientMessage::Chat { text }) => self.hub.chat(m, text),
            (Some(_), ClientMessage::Leave) => {
                if let Some(m) = self.joined.take() {
                    self.hub.leave(&m);
                }
                return Flow::Close(close::NORMAL, "left");
            }
        };
        if let Err((code, message)) = result {
            self.refuse(code, message);
        }
        Flow::Continue
    }
}

impl Outbox {
    fn send_error(&self, code: ErrorCode, message: String) {
        let text = serde_json::to_string(&ServerMessage::Error { code, message })
            .expect("server messages always serialize");
        // Errors to a socket that is itself too slow are not worth kicking it over.
        let _ = self.tx.try_send(Outgoing::Text(text.into()));
    }
}
