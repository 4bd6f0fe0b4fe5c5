//! The TURN credentials the server hands out work on a real coturn (`use-auth-secret`),
//! and a tampered one does not. Skips, saying why, when coturn is not installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestServer, joined};
use meshcall::server::{ServerConfig, TurnConfig};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs one allocation with 5 messages relayed to the peer; true when all came back.
fn allocate(turn_port: u16, peer_port: u16, user: &str, cred: &str) -> bool {
    let out = Command::new("timeout")
        .args(["20", "turnutils_uclient", "-u", user, "-w", cred])
        .args([
            "-p",
            &turn_port.to_string(),
            "-e",
            "127.0.0.1",
            "-r",
            &peer_port.to_string(),
        ])
        .args(["-n", "5", "-m", "1", "-l", "100", "127.0.0.1"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let ok = text.contains("tot_recv_msgs=10") && !text.contains("Cannot complete Allocation");
    if !ok {
        println!("uclient said:\n{text}");
    }
    ok
}

#[tokio::test]
async fn handed_out_credentials_allocate_on_coturn() {
    if !(have("turnserver") && have("turnutils_uclient") && have("turnutils_peer")) {
        common::skip::skip_or_fail("coturn is not installed (scripts/setup --test installs it)");
        return;
    }
    let secret = format!("secret-{}", std::process::id());
    let (turn_port, peer_port) = (free_port(), free_port());
    let relay_lo = 40000 + (std::process::id() % 2000) as u16 * 10;
    let dir = std::env::temp_dir().join(format!("meshcall-turn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _turn = Killed(
        Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={turn_port}"))
            .args([
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
            ])
            .args([
                "--realm=meshcall",
                "--no-tls",
                "--no-dtls",
                "--allow-loopback-peers",
                "--no-cli",
            ])
            .arg(format!("--userdb={}", dir.join("db").display()))
            .arg(format!("--pidfile={}", dir.join("pid").display()))
            .arg(format!("--min-port={relay_lo}"))
            .arg(format!("--max-port={}", relay_lo + 9))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _peer = Killed(
        Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    let s = TestServer::start(ServerConfig {
        turn: Some(TurnConfig {
            urls: vec![format!("turn:127.0.0.1:{turn_port}")],
            secret,
            ttl_secs: 600,
        }),
        ..Default::default()
    })
    .await;
    let (_a, j) = joined(&s, None, "a").await;
    let turn = &j["iceServers"][0];
    let (user, cred) = (
        turn["username"].as_str().unwrap(),
        turn["credential"].as_str().unwrap(),
    );
    let ok = tokio::task::spawn_blocking({
        let (user, cred) = (user.to_owned(), cred.to_owned());
        move || allocate(turn_port, peer_port, &user, &cred)
    })
    .await
    .unwrap();
    assert!(ok, "coturn refused the handed-out credential");
    let tampered = format!("{}x", &user);
    let refused = tokio::task::spawn_blocking({
        let cred = cred.to_owned();
        move || !allocate(turn_port, peer_port, &tampered, &cred)
    })
    .await
    .unwrap();
    assert!(
        refused,
        "coturn accepted a username the credential was not made for"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
