//! A call through TURN: two `meshcall join --relay-only` members on a real coturn
//! (`use-auth-secret`, credentials from the server's `--turn-url/--turn-secret`) exchange
//! video and audio, and each one's selected ICE pair has a relay candidate on its side, so
//! every packet both ways went through coturn. TURN over TCP is `tests/turn_tcp.rs`.
//! Skips (or fails under CI) when coturn is not installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestServer;
use common::report::{n, peer};
use meshcall::server::{ServerConfig, TurnConfig};
use serde_json::Value;

/// Each test runs two encoders and decoders; both at once would starve 2 cores.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    // Free for both UDP and TCP, as coturn listens on both.
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A coturn on 127.0.0.1 with `use-auth-secret`; `extra` adds flags.
struct Coturn {
    _child: Killed,
    port: u16,
    secret: String,
    dir: PathBuf,
}

impl Coturn {
    async fn start(tag: &str, extra: &[&str]) -> Self {
        let secret = format!("secret-{}-{tag}", std::process::id());
        let port = free_port();
        let relay_lo =
            42000 + (std::process::id() % 1000) as u16 * 20 + u16::from(tag == "tcp") * 10;
        let dir = std::env::temp_dir().join(format!("meshcall-relay-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
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
                "--simple-log",
                "-v",
            ])
            .args(extra)
            .arg(format!("--log-file={}", dir.join("turn.log").display()))
            .arg(format!("--userdb={}", dir.join("db").display()))
            .arg(format!("--pidfile={}", dir.join("pid").display()))
            .arg(format!("--min-port={relay_lo}"))
            .arg(format!("--max-port={}", relay_lo + 9))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        Self {
            _child: Killed(child),
            port,
            secret,
            dir,
        }
    }

    /// A signaling server handing out credentials for `url`.
    async fn server(&self, url: String) -> TestServer {
        TestServer::start(ServerConfig {
            turn: Some(TurnConfig {
                urls: vec![url],
                secret: self.secret.clone(),
                ttl_secs: 600,
            }),
            ..Default::default()
        })
        .await
    }

    /// coturn's log (its file name gets a date suffix on some builds).
    fn log(&self) -> String {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("turn"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Member {
    child: Child,
    report: PathBuf,
}

/// Starts `meshcall join --relay-only`; returns it and the room code when it made the room.
fn join(
    server: &TestServer,
    room: Option<&str>,
    name: &str,
    secs: &str,
) -> (Member, Option<String>) {
    let report =
        std::env::temp_dir().join(format!("meshcall-relay-{}-{name}.json", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshcall"));
    cmd.args([
        "join",
        "--relay-only",
        "--server",
        &server.ws_url(),
        "--name",
        name,
    ])
    .args(["--duration", secs, "--report"])
    .arg(&report)
    .env("MESHCALL_ICE_IP", "127.0.0.1")
    .env(
        "RUST_LOG",
        "warn,rtc_interceptor::registry=error,rtc_dtls=error,rtc_ice=error",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(room) = room {
        cmd.args(["--room", room]);
    }
    let mut child = cmd.spawn().unwrap();
    let code = room.is_none().then(|| {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim()
            .strip_prefix("room: ")
            .expect("first line is the room")
            .to_owned()
    });
    (Member { child, report }, code)
}

impl Member {
    /// Waits for the process; its report and what it logged.
    fn finish(self) -> (Value, String) {
        let out = self.child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "meshcall join failed: {}\n{log}",
            out.status
        );
        let text = std::fs::read_to_string(&self.report).unwrap();
        let _ = std::fs::remove_file(&self.report);
        (serde_json::from_str(&text).unwrap(), log)
    }
}

fn coturn_missing() -> bool {
    if have("turnserver") {
        return false;
    }
    common::skip::skip_or_fail("coturn is not installed (scripts/setup --test installs it)");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relay_only_members_exchange_video_and_audio_through_coturn() {
    if coturn_missing() {
        return;
    }
    let _heavy = HEAVY.lock().await;
    let turn = Coturn::start("udp", &[]).await;
    let s = turn.server(format!("turn:127.0.0.1:{}", turn.port)).await;
    let (a, room) = join(&s, None, "A", "10");
    let (b, _) = join(&s, Some(&room.unwrap()), "B", "9.5");
    let (ra, _) = a.finish();
    let (rb, _) = b.finish();
    for (me, r, other) in [("A", &ra, "B"), ("B", &rb, "A")] {
        let p = peer(r, other);
        println!(
            "{me} from {other}: video {} audio {} rms {:.2} candidate {} / {} rtt {} ms",
            p["video_frames"],
            p["audio_frames"],
            p["audio_rms"].as_f64().unwrap_or(0.0),
            p["candidate"],
            p["remote_candidate"],
            p["rtt_ms"]
        );
        assert!(n(&p["video_frames"]) >= 100, "{me} from {other}: {p}");
        assert!(n(&p["audio_frames"]) >= 200, "{me} from {other}: {p}");
        assert!(
            p["audio_rms"].as_f64().unwrap() > 0.2,
            "{me} from {other}: tone too quiet: {p}"
        );
        // Our side of the pair is a relay: everything we sent them left through coturn,
        // and (checked from their report) everything they sent us too.
        assert_eq!(p["candidate"], "relay", "{me} to {other}: {p}");
    }
    // coturn allocated for both (logged with -v).
    let log = turn.log();
    let allocations = log.matches("ALLOCATE processed, success").count();
    println!("coturn: {allocations} successful allocations");
    assert!(allocations >= 2, "coturn log:\n{log}");
}
