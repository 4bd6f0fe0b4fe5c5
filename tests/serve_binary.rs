//! `meshcall serve` as a person runs it (a child process), and the server over TLS.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Client, Frame, WAIT};
use futures_util::{SinkExt, StreamExt};
use meshcall::server::{ServerConfig, TlsFiles, serve};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Starts `meshcall serve ARGS` on a free port; returns the child and its ws:// URL.
fn spawn_serve(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshcall"))
        .arg("serve")
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "meshcall=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if let Some(at) = line.find("ws://") {
            break line[at..].split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("meshcall did not exit");
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits_cleanly() {
    let (mut child, url) = spawn_serve(&[]);
    let mut a = Client::connect(&url).await;
    a.join(json!({"name": "a"})).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    a.expect_close(1001).await;
    assert!(wait_exit(&mut child).success());
}

#[tokio::test]
async fn command_line_ice_and_turn_flags_reach_joined() {
    let (mut child, url) = spawn_serve(&[
        "--ice-server",
        "stun:127.0.0.1:3478",
        "--ice-server",
        "stun:127.0.0.2:3478",
        "--turn-url",
        "turn:127.0.0.1:3478",
        "--turn-secret",
        "s3cret",
        "--max-room-size",
        "1",
    ]);
    let mut a = Client::connect(&url).await;
    let j = a.join(json!({"name": "a", "room": "cli-room"})).await;
    let servers = j["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 3, "{servers:?}");
    assert_eq!(servers[1]["urls"], json!(["stun:127.0.0.2:3478"]));
    let user = servers[2]["username"].as_str().unwrap();
    assert!(
        user.ends_with(&format!(":{}", j["self"].as_str().unwrap())),
        "{user}"
    );
    let mut b = Client::connect(&url).await;
    b.send(json!({"type": "join", "name": "b", "room": "cli-room"}))
        .await;
    b.expect_error("room-full").await;
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn bad_flags_are_refused_with_a_clear_message() {
    for (args, needle) in [
        (vec!["serve", "--max-room-size", "0"], "max-room-size"),
        (vec!["serve", "--turn-url", "turn:x"], "turn-secret"),
        (vec!["serve", "--bind", "nonsense"], "bind"),
        (vec!["serve", "--tls-cert", "/nonexistent.pem"], "tls-key"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_meshcall"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_meshcall"))
        .args(["serve", "--bind", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[tokio::test]
async fn wss_with_a_certificate() {
    meshcall::tls::ensure_crypto_provider();
    let dir = std::env::temp_dir().join(format!("meshcall-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let server = tokio::spawn(async move {
        serve(
            listener,
            ServerConfig::default(),
            Some(TlsFiles { cert, key }),
            async move { s.cancelled().await },
        )
        .await
        .unwrap();
    });

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        format!("wss://localhost:{port}/ws"),
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls))),
    )
    .await
    .unwrap();
    ws.send(Message::text(
        json!({"type": "join", "name": "secure"}).to_string(),
    ))
    .await
    .unwrap();
    let reply = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "joined");

    // Plain ws:// to the TLS port does not get in.
    let plain = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")).await;
    assert!(plain.is_err());

    stop.cancel();
    let mut client = Client { ws };
    match client.next_within(WAIT).await {
        Some(Frame::Closed(code, _)) => assert_eq!(code, Some(1001)),
        other => panic!("{other:?}"),
    }
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
