//! The Janus API over one WebSocket: requests matched to answers by transaction id,
//! everything else routed to the plugin handle it names (`sender`), and a keepalive per
//! session.
//!
//! One task owns the socket (`run_socket`); it ends when the [`Janus`] value is dropped or
//! the socket closes, and then every waiting request fails with [`JanusError::Closed`] and
//! every handle's event stream ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::error::JanusError;

/// How long a request may wait for its answer. Janus answers within milliseconds on a
/// healthy link; a plugin request that needs ICE gathering (a JSEP offer or answer) takes
/// the longest, still well under a second on loopback.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Janus drops a session that sent nothing for `session_timeout` (60 s by default, ours
/// too); its docs suggest a keepalive every 30 s, we send one every 25 s to keep a margin.
pub(crate) const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);
/// Events queued per handle before the newest are dropped: a handle's owner that stops
/// reading must not stall the socket every other handle shares.
const HANDLE_EVENTS: usize = 64;
/// Outgoing messages queued before senders wait.
const OUTGOING: usize = 64;

/// Which SDP a JSEP carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsepKind {
    /// An offer.
    Offer,
    /// An answer.
    Answer,
}

/// A session description as Janus sends and takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jsep {
    /// Offer or answer.
    #[serde(rename = "type")]
    pub kind: JsepKind,
    /// The SDP text.
    pub sdp: String,
}

/// Something Janus said about a handle without being asked (or too late to be an answer).
#[derive(Debug, Clone, PartialEq)]
pub enum HandleEvent {
    /// The plugin's own event (`plugindata.data`), with a JSEP if it carried one.
    Plugin {
        /// The plugin's message.
        data: Value,
        /// A JSEP that came with it (a renegotiation offer, for instance).
        jsep: Option<Jsep>,
    },
    /// ICE and DTLS are up on the handle's connection.
    WebrtcUp,
    /// Janus started or stopped receiving one kind of media on the handle.
    Media {
        /// `audio` or `video`.
        kind: String,
        /// Whether media flows now.
        receiving: bool,
    },
    /// The handle's connection is gone (`reason` as Janus gave it).
    Hangup {
        /// Janus' words.
        reason: String,
    },
    /// Anything else (`slowlink`, `detached`, ...), as it came.
    Other(Value),
}

/// A request waiting for its answer.
struct Pending {
    /// The request's name, for errors.
    request: String,
    /// Whether an `ack` is the final answer (keepalive, trickle) or only a receipt
    /// (asynchronous plugin requests answer later with an `event`).
    ack_is_final: bool,
    reply: oneshot::Sender<Result<Value, JanusError>>,
}

#[derive(Default)]
struct Routes {
    pending: HashMap<String, Pending>,
    handles: HashMap<u64, mpsc::Sender<HandleEvent>>,
    /// Set when the socket has ended: later requests fail at once.
    closed: bool,
}

/// What the socket task and every session and handle share.
struct Shared {
    routes: Mutex<Routes>,
    next_transaction: AtomicU64,
    /// Distinguishes this connection's transactions in Janus' logs.
    prefix: u32,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        // Nothing panics while holding this lock; survive a poisoned one anyway.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A cheap handle for sending requests over the connection.
#[derive(Clone)]
struct Link {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<String>,
}

impl Link {
    /// Sends `message` (its `transaction` is filled in) and waits for the answer.
    async fn request(
        &self,
        mut message: Value,
        request: &str,
        ack_is_final: bool,
    ) -> Result<Value, JanusError> {
        let n = self.shared.next_transaction.fetch_add(1, Ordering::Relaxed);
        let transaction = format!("{:08x}-{n}", self.shared.prefix);
        message["transaction"] = Value::String(transaction.clone());
        let (tx, rx) = oneshot::channel();
        {
            let mut routes = self.shared.routes();
            if routes.closed {
                return Err(JanusError::Closed);
            }
            routes.pending.insert(
                transaction.clone(),
                Pending {
                    request: request.to_owned(),
                    ack_is_final,
                    reply: tx,
                },
            );
        }
        let text = message.to_string();
        tracing::trace!(%request, %transaction, "janus <- {text}");
        if self.outgoing.send(text).await.is_err() {
            self.shared.routes().pending.remove(&transaction);
            return Err(JanusError::Closed);
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(JanusError::Closed),
            Err(_) => {
                self.shared.routes().pending.remove(&transaction);
                Err(JanusError::Timeout {
                    request: request.to_owned(),
                    after: REQUEST_TIMEOUT,
                })
            }
        }
    }
}

/// A connection to a Janus server's WebSocket API. Dropping it closes the socket.
pub struct Janus {
    link: Link,
    socket_task: JoinHandle<()>,
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.socket_task.abort();
    }
}

impl Janus {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8188`) with the `janus-protocol` subprotocol.
    pub async fn connect(url: &str) -> Result<Self, JanusError> {
        let connect_error = |reason: String| JanusError::Connect {
            url: url.to_owned(),
            reason,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| connect_error(e.to_string()))?;
        // Janus' WebSocket transport refuses a handshake without its subprotocol.
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let shared = Arc::new(Shared {
            routes: Mutex::new(Routes::default()),
            next_transaction: AtomicU64::new(1),
            prefix: rand::random(),
        });
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING);
        let socket_task = tokio::spawn(run_socket(socket, outgoing_rx, Arc::clone(&shared)));
        Ok(Self {
            link: Link { shared, outgoing },
            socket_task,
        })
    }

    /// Creates a Janus session, kept alive until the returned [`Session`] is dropped or
    /// destroyed.
    pub async fn create_session(&self) -> Result<Session, JanusError> {
        let answer = self
            .link
            .request(json!({"janus": "create"}), "create", false)
            .await?;
        let id = data_id(&answer, "create")?;
        let keepalive = tokio::spawn(keep_alive(self.link.clone(), id));
        Ok(Session {
            id,
            link: self.link.clone(),
            keepalive,
        })
    }
}

/// The `data.id` of a `success` answer (a new session's or handle's id).
fn data_id(answer: &Value, request: &str) -> Result<u64, JanusError> {
    answer
        .pointer("/data/id")
        .and_then(Value::as_u64)
        .ok_or_else(|| JanusError::Protocol {
            request: request.to_owned(),
            detail: format!("no data.id in {answer}"),
        })
}

/// Sends a keepalive every [`KEEPALIVE_EVERY`] until the session goes (its owner aborts
/// this task) or Janus no longer knows the session.
async fn keep_alive(link: Link, session_id: u64) {
    let mut tick = tokio::time::interval(KEEPALIVE_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let message = json!({"janus": "keepalive", "session_id": session_id});
        match link.request(message, "keepalive", true).await {
            Ok(_) => {}
            Err(JanusError::Closed) => return,
            Err(e) => {
                tracing::warn!(session_id, "keepalive failed: {e}");
                if matches!(e, JanusError::Janus { .. }) {
                    return;
                }
            }
        }
    }
}

/// A Janus session: the scope of our plugin handles. Dropping it stops its keepalive, so
/// Janus ends it within `session_timeout`; [`Session::destroy`] ends it at once.
pub struct Session {
    id: u64,
    link: Link,
    keepalive: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

impl Session {
    /// Janus' id for this session.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Attaches a handle to `plugin` (e.g. `janus.plugin.videoroom`).
    pub async fn attach(&self, plugin: &str) -> Result<PluginHandle, JanusError> {
        let message = json!({"janus": "attach", "session_id": self.id, "plugin": plugin});
        let answer = self.link.request(message, "attach", false).await?;
        let id = data_id(&answer, "attach")?;
        let (tx, events) = mpsc::channel(HANDLE_EVENTS);
        self.link.shared.routes().handles.insert(id, tx);
        Ok(PluginHandle {
            session_id: self.id,
            id,
            link: self.link.clone(),
            events,
        })
    }

    /// Ends the session in Janus (its handles and their connections with it).
    pub async fn destroy(self) -> Result<(), JanusError> {
        self.keepalive.abort();
        let message = json!({"janus": "destroy", "session_id": self.id});
        self.link.request(message, "destroy", false).await.map(drop)
    }
}

/// One handle on a plugin: its requests and the events Janus sends about it.
pub struct PluginHandle {
    session_id: u64,
    id: u64,
    link: Link,
    events: mpsc::Receiver<HandleEvent>,
}

impl Drop for PluginHandle {
    fn drop(&mut self) {
        self.link.shared.routes().handles.remove(&self.id);
    }
}

impl PluginHandle {
    /// Janus' id for this handle.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends a plugin request and returns the plugin's answer (`plugindata.data`) and any
    /// JSEP with it. Synchronous requests answer with `success`, asynchronous ones with an
    /// `ack` and then an `event` carrying the same transaction; both end up here. A plugin
    /// answer with `error_code` becomes [`JanusError::Plugin`].
    pub async fn message(
        &self,
        body: Value,
        jsep: Option<&Jsep>,
    ) -> Result<(Value, Option<Jsep>), JanusError> {
        let request = body
            .get("request")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_owned();
        let mut message = json!({
            "janus": "message",
            "session_id": self.session_id,
            "handle_id": self.id,
            "body": body,
        });
        if let Some(jsep) = jsep {
            message["jsep"] = json!(jsep);
        }
        let answer = self.link.request(message, &request, false).await?;
        let data =
            answer
                .pointer("/plugindata/data")
                .cloned()
                .ok_or_else(|| JanusError::Protocol {
                    request: request.clone(),
                    detail: format!("no plugindata in {answer}"),
                })?;
        if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
            return Err(JanusError::Plugin {
                request,
                code,
                reason: data
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        let jsep = match answer.get("jsep") {
            None => None,
            Some(j) => {
                Some(
                    serde_json::from_value(j.clone()).map_err(|e| JanusError::Protocol {
                        request,
                        detail: format!("bad jsep: {e}"),
                    })?,
                )
            }
        };
        Ok((data, jsep))
    }

    /// Something that trickles our candidates for this handle from another task.
    pub fn trickler(&self) -> Trickler {
        Trickler {
            session_id: self.session_id,
            handle_id: self.id,
            link: self.link.clone(),
        }
    }

    /// The next event Janus sent about this handle; `None` once the connection is gone.
    pub async fn next_event(&mut self) -> Option<HandleEvent> {
        self.events.recv().await
    }

    /// Detaches the handle (hanging up its connection in Janus).
    pub async fn detach(self) -> Result<(), JanusError> {
        let message = json!({
            "janus": "detach",
            "session_id": self.session_id,
            "handle_id": self.id,
        });
        self.link.request(message, "detach", false).await.map(drop)
    }
}

/// Trickles ICE candidates for one handle; cheap to clone, so the task that reads a peer
/// connection's candidates can own one.
#[derive(Clone)]
pub struct Trickler {
    session_id: u64,
    handle_id: u64,
    link: Link,
}

impl Trickler {
    /// Trickles one of our ICE candidates (`candidate:...`, its m-line's mid and index).
    pub async fn candidate(
        &self,
        candidate: &str,
        sdp_mid: Option<&str>,
        sdp_mline_index: Option<u16>,
    ) -> Result<(), JanusError> {
        self.send(json!({
            "candidate": candidate,
            "sdpMid": sdp_mid,
            "sdpMLineIndex": sdp_mline_index,
        }))
        .await
    }

    /// Tells Janus we have no more candidates.
    pub async fn completed(&self) -> Result<(), JanusError> {
        self.send(json!({"completed": true})).await
    }

    async fn send(&self, candidate: Value) -> Result<(), JanusError> {
        let message = json!({
            "janus": "trickle",
            "session_id": self.session_id,
            "handle_id": self.handle_id,
            "candidate": candidate,
        });
        self.link.request(message, "trickle", true).await.map(drop)
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Owns the socket: writes what the requests queue, reads and routes what Janus sends.
async fn run_socket(mut socket: Socket, mut outgoing: mpsc::Receiver<String>, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            text = outgoing.recv() => {
                let Some(text) = text else { break };
                if let Err(e) = socket.send(Message::text(text)).await {
                    tracing::warn!("janus socket write failed: {e}");
                    break;
                }
            }
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => route(&shared, text.as_str()),
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!("janus socket read failed: {e}");
                    break;
                }
            }
        }
    }
    let _ = socket.close(None).await;
    let mut routes = shared.routes();
    routes.closed = true;
    // Dropping the reply senders fails every waiting request with `Closed`; dropping the
    // handles' senders ends their event streams.
    routes.pending.clear();
    routes.handles.clear();
}

/// Delivers one message from Janus: to the request waiting on its transaction, else to
/// the handle it is about.
fn route(shared: &Shared, text: &str) {
    let message: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("janus sent something that is not JSON ({e}): {text:.200}");
            return;
        }
    };
    tracing::trace!("janus -> {text}");
    let kind = message.get("janus").and_then(Value::as_str).unwrap_or("");
    let transaction = message.get("transaction").and_then(Value::as_str);
    let mut routes = shared.routes();
    if let Some(t) = transaction
        && let Some(pending) = routes.pending.remove(t)
    {
        let outcome = match kind {
            "ack" if !pending.ack_is_final => {
                // Only a receipt: the answer comes later with the same transaction.
                routes.pending.insert(t.to_owned(), pending);
                return;
            }
            "ack" | "success" | "event" => Ok(message),
            "error" => Err(JanusError::Janus {
                request: pending.request.clone(),
                code: message
                    .pointer("/error/code")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                reason: message
                    .pointer("/error/reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }),
            other => Err(JanusError::Protocol {
                request: pending.request.clone(),
                detail: format!("answer of kind `{other}`"),
            }),
        };
        let _ = pending.reply.send(outcome);
        return;
    }
    let Some(sender) = message.get("sender").and_then(Value::as_u64) else {
        if kind != "ack" {
            tracing::debug!("janus message for no one: {text:.200}");
        }
        return;
    };
    let event = match kind {
        "event" => HandleEvent::Plugin {
            data: message
                .pointer("/plugindata/data")
                .cloned()
                .unwrap_or(Value::Null),
            jsep: message
                .get("jsep")
                .and_then(|j| serde_json::from_value(j.clone()).ok()),
        },
        "webrtcup" => HandleEvent::WebrtcUp,
        "media" => HandleEvent::Media {
            kind: message
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            receiving: message
                .get("receiving")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        "hangup" => HandleEvent::Hangup {
            reason: message
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        _ => HandleEvent::Other(message.clone()),
    };
    if let Some(tx) = routes.handles.get(&sender)
        && tx.try_send(event).is_err()
    {
        tracing::debug!(
            handle = sender,
            "handle's event queue full or gone; event dropped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            routes: Mutex::new(Routes::default()),
            next_transaction: AtomicU64::new(1),
            prefix: 0,
        }
    }

    fn wait(
        shared: &Shared,
        t: &str,
        ack_is_final: bool,
    ) -> oneshot::Receiver<Result<Value, JanusError>> {
        let (tx, rx) = oneshot::channel();
        shared.routes().pending.insert(
            t.to_owned(),
            Pending {
                request: "join".to_owned(),
                ack_is_final,
                reply: tx,
            },
        );
        rx
    }

    #[test]
    fn an_ack_is_only_a_receipt_for_an_asynchronous_request() {
        let s = shared();
        let mut rx = wait(&s, "t1", false);
        route(&s, r#"{"janus":"ack","session_id":1,"transaction":"t1"}"#);
        assert!(rx.try_recv().is_err(), "still waiting after the ack");
        route(
            &s,
            r#"{"janus":"event","sender":7,"transaction":"t1","plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"joined","id":5}}}"#,
        );
        let answer = rx.try_recv().expect("answered").expect("not an error");
        assert_eq!(answer.pointer("/plugindata/data/id"), Some(&json!(5)));
    }

    #[test]
    fn an_ack_ends_a_keepalive_and_an_error_is_typed() {
        let s = shared();
        let mut keepalive = wait(&s, "k", true);
        route(&s, r#"{"janus":"ack","transaction":"k"}"#);
        assert!(matches!(keepalive.try_recv(), Ok(Ok(_))));
        let mut refused = wait(&s, "e", false);
        route(
            &s,
            r#"{"janus":"error","transaction":"e","error":{"code":458,"reason":"No such session 3"}}"#,
        );
        match refused.try_recv() {
            Ok(Err(JanusError::Janus { code, reason, .. })) => {
                assert_eq!(code, 458);
                assert_eq!(reason, "No such session 3");
            }
            other => panic!("expected a Janus error, got {other:?}"),
        }
    }

    #[test]
    fn unsolicited_events_go_to_their_handle_and_garbage_is_ignored() {
        let s = shared();
        let (tx, mut rx) = mpsc::channel(4);
        s.routes().handles.insert(9, tx);
        route(&s, "not json");
        route(&s, r#"{"janus":"webrtcup","session_id":1,"sender":9}"#);
        route(
            &s,
            r#"{"janus":"event","sender":9,"plugindata":{"data":{"videoroom":"event","publishers":[]}},"jsep":{"type":"offer","sdp":"v=0"}}"#,
        );
        route(&s, r#"{"janus":"hangup","sender":10,"reason":"not ours"}"#);
        assert_eq!(rx.try_recv().ok(), Some(HandleEvent::WebrtcUp));
        match rx.try_recv() {
            Ok(HandleEvent::Plugin { data, jsep }) => {
                assert_eq!(data["videoroom"], "event");
                assert_eq!(jsep.map(|j| j.kind), Some(JsepKind::Offer));
            }
            other => panic!("expected a plugin event, got {other:?}"),
        }
        assert!(rx.try_recv().is_err());
    }
}
