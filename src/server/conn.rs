//! One task per WebSocket, in two halves that run side by side: a reader that applies the
//! transport rules (size, rate, type of frame, liveness) and hands messages to the [`Hub`],
//! and a writer that sends what the hub queued and, at the end, the close frame. Side by
//! side, so a client that stops reading cannot stop the server from reading it (and from
//! seeing a flood), and its full write queue cannot hold back the close.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{MissedTickBehavior, interval, sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::closing::{CLOSE_FLUSH, End, Ending, LINGER, code};
use super::hub::{Hub, Membership, Outbox, Refusal};
use super::limits::{Admission, address_key};
use super::rate::{RateLimiter, Verdict};
use crate::proto::{
    ClientMessage, ErrorCode, MAX_FRAME_BYTES, ServerMessage, parse_client_message,
};

/// How many messages may wait for one socket before it counts as too slow.
const OUTBOX_CAPACITY: usize = 1024;

/// What the read side decided about the connection.
enum Flow {
    Continue,
    Close(u16, &'static str),
    /// The stream ended or failed: there is nobody to send a close frame to.
    Gone,
}

struct Session {
    hub: Arc<Hub>,
    conn: u64,
    out: Outbox,
    joined: Option<Membership>,
    rate: RateLimiter,
    /// The client's address as limits key it.
    addr: IpAddr,
}

/// Serves one upgraded socket until it closes, the client leaves, or the server stops.
/// `_admission` holds the socket's place under the socket caps until it ends.
pub(crate) async fn run(hub: Arc<Hub>, socket: WebSocket, peer: SocketAddr, _admission: Admission) {
    hub.metrics.sockets.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
    let ending = Arc::new(Ending::default());
    let mut session = Session {
        conn: hub.next_conn_id(),
        out: Outbox {
            tx,
            ending: Arc::clone(&ending),
        },
        joined: None,
        rate: RateLimiter::new(hub.config.rate, Instant::now()),
        addr: address_key(peer.ip()),
        hub: Arc::clone(&hub),
    };
    let (sink, stream) = socket.split();
    let written = CancellationToken::new();
    tokio::join!(
        write(&hub, sink, rx, &ending, written.clone()),
        read(&mut session, stream, &ending, &written),
    );
    hub.metrics.sockets.fetch_sub(1, Ordering::Relaxed);
}

/// Sends queued messages and pings until an end is requested, then (for a close) what was
/// still queued and the close frame, within [`CLOSE_FLUSH`]. Cancels `written` when done.
async fn write(
    hub: &Hub,
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    ending: &Ending,
    written: CancellationToken,
) {
    let _written = written.drop_guard();
    let stop = || async {
        tokio::select! {
            end = ending.requested() => end,
            () = hub.shutdown.cancelled() => End::Close(code::GOING_AWAY, "server shutting down"),
        }
    };
    let mut ping = interval(hub.config.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await;
    // A message taken from the queue but not yet handed to the socket when the close came.
    let mut unsent = None;
    let end = loop {
        let msg = tokio::select! {
            end = stop() => break end,
            Some(text) = rx.recv() => Message::Text(text),
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        // A client that stopped reading blocks these steps; a close must still get its turn.
        tokio::select! {
            biased;
            ready = std::future::poll_fn(|cx| sink.poll_ready_unpin(cx)) => if ready.is_err() {
                break End::Drop;
            },
            end = stop() => {
                unsent = Some(msg);
                break end;
            }
        }
        if sink.start_send_unpin(msg).is_err() {
            break End::Drop;
        }
        tokio::select! {
            biased;
            flushed = sink.flush() => if flushed.is_err() {
                break End::Drop;
            },
            end = stop() => break end,
        }
    };
    // Tell the reader, when the end was decided here; an earlier request still wins.
    ending.request(end);
    let Some(End::Close(code, reason)) = ending.get() else {
        return;
    };
    let flushed = timeout(CLOSE_FLUSH, async {
        // Whatever was queued before the close (an error, a last relay) goes out first.
        rx.close();
        if let Some(msg) = unsent {
            sink.feed(msg).await?;
        }
        while let Some(text) = rx.recv().await {
            sink.feed(Message::Text(text)).await?;
        }
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        sink.send(Message::Close(Some(frame))).await
    })
    .await;
    match flushed {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(code, "close frame not sent: {err}"),
        Err(_) => tracing::debug!(code, "close frame not flushed within {CLOSE_FLUSH:?}"),
    }
}

/// Reads and handles frames until an end is requested (here or elsewhere); then, for a
/// close, keeps reading and discarding until the client's close frame or EOF, at most
/// [`LINGER`] after the writer is done.
async fn read(
    session: &mut Session,
    mut stream: SplitStream<WebSocket>,
    ending: &Ending,
    written: &CancellationToken,
) {
    let hub = Arc::clone(&session.hub);
    // Liveness is checked more often than pings go out, so a silent client is dropped
    // close to the timeout rather than up to one ping interval after it.
    let mut liveness = interval(hub.config.ping_timeout / 10);
    liveness.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            _ = ending.requested() => break,
            frame = stream.next() => {
                last_heard = Instant::now();
                let flow = match frame {
                    None => Flow::Gone,
                    Some(Err(err)) => {
                        // tungstenite refuses frames over its own (larger) cap before
                        // buffering them; tell the client why, as for any oversize frame.
                        let text = err.to_string();
                        if text.contains("too long") || text.contains("Space limit") {
                            session.refuse(ErrorCode::TooLarge, too_large_message(None));
                            Flow::Close(code::TOO_BIG, "frame too large")
                        } else {
                            Flow::Gone
                        }
                    }
                    Some(Ok(msg)) => session.on_frame(msg),
                };
                match flow {
                    Flow::Continue => {}
                    Flow::Gone => ending.request(End::Drop),
                    Flow::Close(code, reason) => ending.request(End::Close(code, reason)),
                }
            }
            _ = liveness.tick() => {
                if last_heard.elapsed() > hub.config.ping_timeout {
                    tracing::debug!(conn = session.conn, "no answer to pings; dropping");
                    ending.request(End::Drop);
                }
            }
        }
    }
    // The membership ends with the decision to close, not once the socket is gone.
    session.leave_hub();
    if ending.get() == Some(End::Drop) {
        return;
    }
    let linger = async {
        written.cancelled().await;
        sleep(LINGER).await;
    };
    tokio::pin!(linger);
    loop {
        tokio::select! {
            () = &mut linger => return,
            frame = stream.next() => match frame {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
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
    /// Tells the hub this socket no longer speaks for its member (its grace period starts).
    fn leave_hub(&mut self) {
        if let Some(m) = self.joined.take() {
            self.hub.disconnected(&m, self.conn);
        }
    }

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
            Message::Close(_) => return Flow::Close(code::NORMAL, ""),
        };
        self.hub
            .metrics
            .frames_received
            .fetch_add(1, Ordering::Relaxed);
        if size > MAX_FRAME_BYTES {
            self.refuse(ErrorCode::TooLarge, too_large_message(Some(size)));
            return Flow::Close(code::TOO_BIG, "frame too large");
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
                return Flow::Close(code::POLICY, "message flood");
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
                .join(self.conn, self.addr, &self.out, req)
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
            (Some(m), ClientMessage::SfuReady { feed }) => {
                self.hub.sfu_ready(m, feed);
                Ok(())
            }
            (Some(m), ClientMessage::SfuFailed { reason }) => {
                self.hub.sfu_failed(m, &reason);
                Ok(())
            }
            (Some(_), ClientMessage::Leave) => {
                if let Some(m) = self.joined.take() {
                    self.hub.leave(&m);
                }
                return Flow::Close(code::NORMAL, "left");
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
        let _ = self.tx.try_send(text.into());
    }
}
