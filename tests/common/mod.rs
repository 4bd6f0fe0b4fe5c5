//! Helpers shared by the integration tests: a server on 127.0.0.1:0 and a raw WebSocket
//! client that speaks JSON values, so the protocol is checked from the outside.
#![allow(dead_code, clippy::unwrap_used)]

pub mod netns;
pub mod pulse;
pub mod report;
pub mod skip;
pub mod xvfb;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use meshcall::server::{ServerConfig, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long a test waits for a message that should come.
pub const WAIT: Duration = Duration::from_secs(5);

/// A server running inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), config).await
    }

    /// A server on a given address (the one a stopped server had, to restart it).
    pub async fn start_on(addr: SocketAddr, config: ServerConfig) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            serve(listener, config, None, async move { s.cancelled().await })
                .await
                .unwrap();
        });
        Self { addr, stop, task }
    }

    pub async fn default() -> Self {
        Self::start(ServerConfig::default()).await
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url()).await
    }

    /// Shuts the server down and waits for `serve` to return.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server did not stop")
            .unwrap();
    }

    /// A plain HTTP/1.1 GET: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).await
    }

    /// One sample of a Prometheus metric, e.g. `meshcall_rooms`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name} in\n{body}"))
            .trim()
            .parse()
            .unwrap()
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// What a test reads from a socket.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Closed(Option<u16>, String),
}

/// A raw protocol client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        // Without nodelay the test's own socket would hold back a second small message
        // for the server's delayed ACK (~40 ms), hiding what the server does.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .unwrap();
        Self { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, t: impl Into<String>) {
        self.ws.send(Message::text(t.into())).await.unwrap();
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.ws.send(Message::binary(b)).await.unwrap();
    }

    /// The next text frame or close, skipping pings; `None` on timeout.
    pub async fn next_within(&mut self, d: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            return Some(match frame {
                None => Frame::Closed(None, "stream ended".into()),
                Some(Err(e)) => Frame::Closed(None, e.to_string()),
                Some(Ok(Message::Text(t))) => Frame::Json(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(f))) => Frame::Closed(
                    f.as_ref().map(|f| u16::from(f.code)),
                    f.map(|f| f.reason.to_string()).unwrap_or_default(),
                ),
                Some(Ok(_)) => continue,
            });
        }
    }

    /// The next JSON message; panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        match self.next_within(WAIT).await {
            Some(Frame::Json(v)) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next message, which must have this `type`.
    pub async fn expect(&mut self, ty: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], ty, "expected {ty}, got {v}");
        v
    }

    /// The next message must be an error with this code.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.expect("error").await;
        assert_eq!(v["code"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }

    /// Nothing arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Some(f) = self.next_within(d).await {
            panic!("expected silence, got {f:?}");
        }
    }

    /// The server closes the socket with `code` (messages before it are returned).
    pub async fn expect_close(&mut self, code: u16) -> Vec<Value> {
        let mut before = Vec::new();
        loop {
            match self.next_within(WAIT).await {
                Some(Frame::Json(v)) => before.push(v),
                Some(Frame::Closed(c, reason)) => {
                    assert_eq!(c, Some(code), "closed with {c:?} ({reason}), want {code}");
                    return before;
                }
                None => panic!("socket not closed; got {before:?}"),
            }
        }
    }

    /// Sends `join` and returns `joined`.
    pub async fn join(&mut self, join: Value) -> Value {
        let mut join = join;
        join["type"] = json!("join");
        self.send(join).await;
        self.expect("joined").await
    }
}

/// A new socket joined to `room` (None: create) as `name`; returns it with its `joined`.
pub async fn joined(server: &TestServer, room: Option<&str>, name: &str) -> (Client, Value) {
    let mut c = server.client().await;
    let mut j = json!({"name": name});
    if let Some(room) = room {
        j["room"] = json!(room);
    }
    let v = c.join(j).await;
    (c, v)
}

/// A room with `n` members, in join order; each member has read all its peer-joined.
pub async fn room_of(server: &TestServer, n: usize) -> (String, Vec<(Client, String)>) {
    let (first, j) = joined(server, None, "m0").await;
    let room = j["room"].as_str().unwrap().to_owned();
    let mut members = vec![(first, j["self"].as_str().unwrap().to_owned())];
    for i in 1..n {
        let (c, j) = joined(server, Some(&room), &format!("m{i}")).await;
        for (other, _) in &mut members {
            other.expect("peer-joined").await;
        }
        members.push((c, j["self"].as_str().unwrap().to_owned()));
    }
    (room, members)
}
