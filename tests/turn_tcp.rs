//! A call through TURN over TCP (`turn:host:port?transport=tcp`), which webrtc-rs 0.21
//! cannot do itself: the engine bridges it (`engine/turn_tcp`). Everything runs in a
//! network namespace this test makes (`unshare -n`, only `lo`): a real coturn on 127.0.0.4
//! (`use-auth-secret`), `meshcall serve --turn-url …?transport=tcp --turn-secret`, and two
//! `meshcall join --relay-only` members on 127.0.0.2 and 127.0.0.3. nftables drops every
//! UDP datagram between the members' addresses and every one to coturn's address from
//! anywhere but coturn itself (its relayed ports talk to each other over UDP; that is
//! TURN). So the only way media can flow is member → TCP → coturn → UDP relay → coturn →
//! TCP → member. The second test runs the same rules with a TURN-over-UDP URL and shows
//! they bite: no link forms and the dropped datagrams are counted.
//!
//! Needs root, coturn, nftables, util-linux (`unshare`, `nsenter`) and iproute2
//! (`scripts/setup --test`); skips without them (fails under CI).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::report::{n, peer};
use serde_json::Value;

/// Each test runs two encoders and decoders; both at once would starve 2 cores.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

const TURN_IP: &str = "127.0.0.4";
const TURN_PORT: u16 = 3478;
const SIGNALING: &str = "127.0.0.1:8787";

/// The namespace's rules: UDP between the members and UDP to coturn dropped, counted.
const RULES: &str = r#"
table inet turntcp {
  counter udp_to_turn_dropped {}
  counter members_udp_dropped {}
  counter tcp_to_turn {}
  chain in {
    type filter hook input priority 0; policy accept;
    ip saddr 127.0.0.2 ip daddr 127.0.0.3 meta l4proto udp counter name members_udp_dropped drop
    ip saddr 127.0.0.3 ip daddr 127.0.0.2 meta l4proto udp counter name members_udp_dropped drop
    ip daddr 127.0.0.4 ip saddr != 127.0.0.4 meta l4proto udp counter name udp_to_turn_dropped drop
    ip daddr 127.0.0.4 tcp dport 3478 counter name tcp_to_turn
  }
}
"#;

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

fn missing() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let absent: Vec<&str> = ["turnserver", "nft", "unshare", "nsenter", "ip"]
        .into_iter()
        .filter(|c| !have(c))
        .collect();
    if root && absent.is_empty() {
        return false;
    }
    common::skip::skip_or_fail(&format!(
        "needs root and turnserver, nft, unshare, nsenter, ip (missing: {absent:?}, root: {root}; scripts/setup --test)"
    ));
    true
}

/// A private network namespace holding only `lo` (up), alive while a `sleep` holds it;
/// everything started through [`Netns::command`] runs inside it and dies with the test.
struct Netns {
    holder: Killed,
    children: Vec<Killed>,
    dir: PathBuf,
}

impl Netns {
    fn new(tag: &str) -> Self {
        let mut holder = Command::new("unshare")
            .args([
                "-n",
                "sh",
                "-c",
                "ip link set lo up && echo up && exec sleep 600",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "up", "the namespace did not come up");
        let dir =
            std::env::temp_dir().join(format!("meshcall-turntcp-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ns = Self {
            holder: Killed(holder),
            children: Vec::new(),
            dir,
        };
        // Refuse to touch anything but our own namespace.
        let links = ns.output("ip", &["-o", "link", "show"]);
        assert_eq!(links.lines().count(), 1, "not a lo-only namespace: {links}");
        ns
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.holder.0.id()))
            .arg("--")
            .arg(program);
        c
    }

    fn output(&self, program: &str, args: &[&str]) -> String {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn install_rules(&self) {
        let path = self.dir.join("rules.nft");
        std::fs::write(&path, RULES).unwrap();
        self.output("nft", &["-f", path.to_str().unwrap()]);
    }

    fn counter_bytes(&self, name: &str) -> u64 {
        let json: Value = serde_json::from_str(
            &self.output("nft", &["-j", "list", "counter", "inet", "turntcp", name]),
        )
        .unwrap();
        json["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|o| o["counter"]["bytes"].as_u64())
            .unwrap_or_else(|| panic!("no counter {name}: {json}"))
    }

    fn start_coturn(&mut self, secret: &str) {
        let child = self
            .command("turnserver")
            .args([
                "-n",
                &format!("--listening-ip={TURN_IP}"),
                &format!("--relay-ip={TURN_IP}"),
            ])
            .arg(format!("--listening-port={TURN_PORT}"))
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
                "--min-port=49152",
                "--max-port=49200",
            ])
            .arg(format!(
                "--log-file={}",
                self.dir.join("turn.log").display()
            ))
            .arg(format!("--userdb={}", self.dir.join("db").display()))
            .arg(format!("--pidfile={}", self.dir.join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(Killed(child));
        std::thread::sleep(Duration::from_millis(800));
    }

    /// `meshcall serve` handing out `turn_url`; returns its ws:// URL once it listens.
    fn start_server(&mut self, turn_url: &str, secret: &str) -> String {
        let mut child = self
            .command(env!("CARGO_BIN_EXE_meshcall"))
            .args(["serve", "--bind", SIGNALING, "--turn-url", turn_url])
            .args(["--turn-secret", secret])
            .env("RUST_LOG", "meshcall=info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        self.children.push(Killed(child));
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
        url
    }

    /// `meshcall join --relay-only` from `ip`; the room code when it made the room.
    fn join(&self, url: &str, room: Option<&str>, name: &str, ip: &str, secs: &str) -> Member {
        let report = self.dir.join(format!("{name}.json"));
        let mut cmd = self.command(env!("CARGO_BIN_EXE_meshcall"));
        cmd.args(["join", "--relay-only", "--server", url, "--name", name])
            .args(["--ice-ip", ip, "--duration", secs, "--report"])
            .arg(&report)
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
        let room = room.is_none().then(|| {
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            line.trim()
                .strip_prefix("room: ")
                .unwrap_or_else(|| panic!("first line is the room, got {line:?}"))
                .to_owned()
        });
        Member {
            child: Some(child),
            report,
            room,
        }
    }

    fn coturn_log(&self) -> String {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("turn"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Children first, then the namespace's holder (field order would do the opposite).
        self.children.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Member {
    child: Option<Child>,
    report: PathBuf,
    room: Option<String>,
}

impl Member {
    /// Waits for the process; its report and what it logged.
    fn finish(mut self) -> (Value, String) {
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "meshcall join failed: {}\n{log}",
            out.status
        );
        let text = std::fs::read_to_string(&self.report).unwrap();
        (serde_json::from_str(&text).unwrap(), log)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs A and B for about `secs` under the rules with the server handing out `turn_url`.
fn call(tag: &str, turn_url: &str, secs: &str) -> (Netns, [(Value, String); 2]) {
    let secret = format!("secret-{}-{tag}", std::process::id());
    let mut ns = Netns::new(tag);
    ns.install_rules();
    ns.start_coturn(&secret);
    let url = ns.start_server(turn_url, &secret);
    let mut a = ns.join(&url, None, "A", "127.0.0.2", secs);
    let room = a.room.take().unwrap();
    let b = ns.join(&url, Some(&room), "B", "127.0.0.3", secs);
    let ra = a.finish();
    let rb = b.finish();
    (ns, [ra, rb])
}

#[test]
fn relay_only_members_exchange_video_and_audio_over_turn_tcp_with_udp_dropped() {
    if missing() {
        return;
    }
    let _heavy = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (ns, [(ra, log_a), (rb, _)]) = call(
        "tcp",
        &format!("turn:{TURN_IP}:{TURN_PORT}?transport=tcp"),
        "10",
    );
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
        assert!(
            n(&p["video_frames"]) >= 100,
            "{me} from {other}: {p}\nA's log:\n{log_a}"
        );
        assert!(n(&p["audio_frames"]) >= 200, "{me} from {other}: {p}");
        assert!(
            p["audio_rms"].as_f64().unwrap() > 0.2,
            "{me} from {other}: tone too quiet: {p}"
        );
        assert_eq!(p["candidate"], "relay", "{me} to {other}: {p}");
        assert_eq!(p["remote_candidate"], "relay", "{me} to {other}: {p}");
    }
    let tcp = ns.counter_bytes("tcp_to_turn");
    let udp_dropped = ns.counter_bytes("udp_to_turn_dropped");
    println!("to coturn: {tcp} bytes over TCP, {udp_dropped} bytes of UDP dropped");
    // Two members' video and audio for ~9 s went up to coturn over TCP.
    assert!(tcp > 200_000, "only {tcp} bytes reached coturn over TCP");
    let log = ns.coturn_log();
    let allocations = log.matches("ALLOCATE processed, success").count();
    println!("coturn: {allocations} successful allocations");
    assert!(allocations >= 2, "coturn log:\n{log}");
    assert!(
        !log_a.contains("Skipping unsupported non-UDP TURN url"),
        "webrtc-rs was handed the TCP URL itself:\n{log_a}"
    );
}

#[test]
fn the_same_rules_stop_turn_over_udp() {
    if missing() {
        return;
    }
    let _heavy = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (ns, [(ra, _), (rb, _)]) = call("udp", &format!("turn:{TURN_IP}:{TURN_PORT}"), "5");
    for (me, r, other) in [("A", &ra, "B"), ("B", &rb, "A")] {
        let p = peer(r, other);
        println!("{me} from {other}: {p}");
        assert_eq!(n(&p["video_frames"]), 0, "{me} from {other}: {p}");
        assert!(p["candidate"].is_null(), "{me} from {other}: {p}");
    }
    let udp_dropped = ns.counter_bytes("udp_to_turn_dropped");
    println!("UDP to coturn dropped: {udp_dropped} bytes");
    assert!(udp_dropped > 0, "the members never tried coturn over UDP");
    assert!(
        !ns.coturn_log().contains("ALLOCATE processed, success"),
        "coturn allocated over UDP through the drop rule:\n{}",
        ns.coturn_log()
    );
}
