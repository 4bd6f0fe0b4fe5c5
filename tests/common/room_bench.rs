//! One room of N headless members (`meshcall join`), as a full mesh or on Janus, measured
//! over a fixed window once everyone is in: what each member put on the wire (nftables
//! byte counters on its own ICE address), its CPU (utime+stime from `/proc`), Janus' CPU,
//! and from the members' reports whether each one received every other one.
//!
//! Must run inside a private network namespace with only `lo` (the caller's `unshare -n`):
//! it starts Janus (`scripts/janus`), `meshcall serve` and the members there, pins member i
//! to 127.0.1.(i+1) so the counters can tell them apart, and installs an nftables table.
//! Used by `benches/room_size.rs` and its smoke test `tests/room_size.rs`.

// The smoke test reads only part of what the benchmark prints.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How the room carries media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every member sends to every other (`meshcall serve --max-room-size N`).
    Mesh,
    /// The room moves onto Janus at its second member (`--sfu-above 1`).
    Sfu,
}

impl Mode {
    /// Its name in tables and paths.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mesh => "mesh",
            Self::Sfu => "sfu",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RoomSpec {
    /// Members in the room.
    pub members: usize,
    /// Mesh or SFU.
    pub mode: Mode,
    /// From the last join to the start of the measured window.
    pub settle: Duration,
    /// The measured window; members leave right after it.
    pub window: Duration,
    /// Decode every stream instead of counting complete access units (`--count-only`).
    pub decode: bool,
    /// The `meshcall` binary.
    pub binary: PathBuf,
    /// Where logs and reports go (made if missing; kept).
    pub work: PathBuf,
    /// Signaling server port; Janus listens on `port + 1`.
    pub port: u16,
}

/// One member's numbers.
#[derive(Debug, Clone)]
pub struct MemberResult {
    /// Display name (`m00`, …).
    pub name: String,
    /// Its ICE address.
    pub ip: String,
    /// UDP bytes it sent (IP packet length, all its connections) during the window.
    pub uplink_bytes: u64,
    /// Its CPU time during the window, seconds (None: the process was gone).
    pub cpu_s: Option<f64>,
    /// Its exit status as text, `0` for success.
    pub exit: String,
    /// Its report (None: it wrote none).
    pub report: Option<Value>,
    /// Its log (stderr).
    pub log: PathBuf,
}

/// Receive figures over all ordered pairs (receiver, sender).
#[derive(Debug, Clone, Default)]
pub struct Pairs {
    /// N × (N − 1).
    pub expected: usize,
    /// Pairs where the receiver got video units from the sender.
    pub with_video: usize,
    /// Pairs where the receiver got audio frames from the sender.
    pub with_audio: usize,
    /// Lowest per-pair video rate over the receiver's last 10 s (report `fps`).
    pub min_fps: f64,
    /// Mean of those rates.
    pub mean_fps: f64,
    /// Pairs below [`KEEPING_UP_FPS`].
    pub behind: usize,
    /// "receiver<-sender" for every pair that got no video or no audio.
    pub missing: Vec<String>,
    /// The layer each sender was sending each receiver at the end (report `layer`, from
    /// the receiver's view of the sender's report), counted: `640x360` → pairs.
    pub layers: std::collections::BTreeMap<String, usize>,
}

/// The test pattern runs at 30 fps; a pair at 80 % of that or less is falling behind.
pub const KEEPING_UP_FPS: f64 = 24.0;

/// What one room measured.
#[derive(Debug, Clone)]
pub struct RoomResult {
    /// What was run.
    pub spec: RoomSpec,
    /// Per member, in join order.
    pub members: Vec<MemberResult>,
    /// The measured window's real length, seconds.
    pub window_s: f64,
    /// Janus' CPU during the window, % of one core (SFU only).
    pub janus_cpu_pct: Option<f64>,
    /// UDP bytes Janus sent during the window (SFU only).
    pub janus_bytes: Option<u64>,
    /// `meshcall serve`'s CPU during the window, % of one core.
    pub serve_cpu_pct: Option<f64>,
    /// `/proc/loadavg`'s 1-minute figure at the window's start and end.
    pub load: (f64, f64),
    /// Who received whom.
    pub pairs: Pairs,
    /// Anything that went wrong outside the members' own reports.
    pub errors: Vec<String>,
}

/// How a run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everyone exited 0 and received everyone at ≥ [`KEEPING_UP_FPS`].
    Ok,
    /// Everyone received everyone, but some pairs at a lower rate.
    Behind,
    /// A member failed, or some pair received nothing.
    Broken,
}

impl RoomResult {
    /// Each member's uplink, kbit/s over the window.
    pub fn uplink_kbps(&self) -> Vec<f64> {
        self.members
            .iter()
            .map(|m| m.uplink_bytes as f64 * 8.0 / self.window_s / 1000.0)
            .collect()
    }

    /// Each member's CPU, % of one core over the window (members that were gone left out).
    pub fn cpu_pct(&self) -> Vec<f64> {
        self.members
            .iter()
            .filter_map(|m| m.cpu_s)
            .map(|s| s * 100.0 / self.window_s)
            .collect()
    }

    /// All members' CPU plus Janus', % of one core (the machine has 200).
    pub fn total_cpu_pct(&self) -> f64 {
        self.cpu_pct().iter().sum::<f64>() + self.janus_cpu_pct.unwrap_or(0.0)
    }

    /// Ok, behind, or broken.
    pub fn verdict(&self) -> Verdict {
        let failed = self
            .members
            .iter()
            .any(|m| m.exit != "0" || m.report.is_none());
        let p = &self.pairs;
        if failed
            || !self.errors.is_empty()
            || p.with_video < p.expected
            || p.with_audio < p.expected
        {
            Verdict::Broken
        } else if p.behind > 0 {
            Verdict::Behind
        } else {
            Verdict::Ok
        }
    }
}

/// (mean, max) of some numbers; (0, 0) for none.
pub fn mean_max(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (mean, v.iter().copied().fold(f64::MIN, f64::max))
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Clock ticks per second for `/proc/PID/stat` (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (all its threads), seconds; None once it is gone.
fn cpu_seconds(pid: u32, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name: state is field 3, utime and stime 14 and 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn member_ip(i: usize) -> String {
    format!("127.0.1.{}", i + 1)
}

/// Janus' ICE address in a namespace with only `lo` (`scripts/janus`).
const JANUS_IP: &str = "127.0.0.2";
const TABLE: &str = "roombench";

/// Runs `nft -f -` with `script`.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("nft: no stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nft failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A fresh table counting UDP bytes sent from each member's address and from Janus'.
/// The output hook sees every packet a local socket sends, before anything can drop it.
fn install_counters(members: usize) -> Result<(), String> {
    // Deleting a table that is not there fails; an earlier run's is replaced.
    let _ = nft(&format!("delete table inet {TABLE}\n"));
    let mut s = format!(
        "add table inet {TABLE}\nadd chain inet {TABLE} out {{ type filter hook output priority 0; }}\n"
    );
    let mut count = |name: &str, ip: &str| {
        s.push_str(&format!("add counter inet {TABLE} {name}\n"));
        s.push_str(&format!(
            "add rule inet {TABLE} out ip saddr {ip} meta l4proto udp counter name {name}\n"
        ));
    };
    for i in 0..members {
        count(&format!("m{i:02}"), &member_ip(i));
    }
    count("janus", JANUS_IP);
    nft(&s)
}

/// Every counter's bytes, by name.
fn read_counters() -> Result<std::collections::HashMap<String, u64>, String> {
    let out = Command::new("nft")
        .args(["-j", "list", "counters", "table", "inet", TABLE])
        .output()
        .map_err(|e| format!("nft: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nft list counters: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("nft JSON: {e}"))?;
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let c = e.get("counter")?;
            Some((c["name"].as_str()?.to_owned(), c["bytes"].as_u64()?))
        })
        .collect())
}

fn wait_port(port: u16, what: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not listen (log: {})", log.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits until the log at `path` contains `line`.
fn wait_log(path: &Path, line: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !std::fs::read_to_string(path).is_ok_and(|t| t.contains(line)) {
        if Instant::now() > deadline {
            return Err(format!(
                "no {line:?} within {limit:?} in {}",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Proc, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    cmd.stdout(out)
        .stderr(err)
        .spawn()
        .map(Proc)
        .map_err(|e| format!("could not start {cmd:?}: {e}"))
}

/// A member process; the room's creator keeps its stdout open (it printed the room code
/// there, and a closed pipe would fail its later writes).
struct Member {
    name: String,
    ip: String,
    proc: Proc,
    report: PathBuf,
    log: PathBuf,
    _stdout: Option<BufReader<ChildStdout>>,
}

fn join(
    spec: &RoomSpec,
    i: usize,
    room: Option<&str>,
    stay: Duration,
) -> Result<(Member, Option<String>), String> {
    let name = format!("m{i:02}");
    let report = spec.work.join(format!("{name}.json"));
    let _ = std::fs::remove_file(&report);
    let log = spec.work.join(format!("{name}.log"));
    let ip = member_ip(i);
    let mut cmd = Command::new(&spec.binary);
    cmd.args(["join", "--server", &format!("ws://127.0.0.1:{}", spec.port)])
        .args(["--name", &name])
        .args(["--duration", &format!("{:.1}", stay.as_secs_f64())])
        .arg("--report")
        .arg(&report)
        .env("MESHCALL_ICE_IP", &ip)
        .env(
            "RUST_LOG",
            "warn,meshcall::engine=info,rtc_interceptor::registry=error,rtc_dtls=error,rtc_ice=error",
        )
        .stdout(if room.is_none() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?);
    if !spec.decode {
        cmd.arg("--count-only");
    }
    if let Some(room) = room {
        cmd.args(["--room", room]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", spec.binary.display()))?;
    let mut stdout = child.stdout.take().map(BufReader::new);
    let proc = Proc(child);
    let code = match (&mut stdout, room) {
        (Some(out), None) => {
            let mut line = String::new();
            out.read_line(&mut line)
                .map_err(|e| format!("{name}: {e}"))?;
            let code = line.trim().strip_prefix("room: ").ok_or_else(|| {
                format!(
                    "{name} printed {line:?}, not the room (log: {})",
                    log.display()
                )
            })?;
            Some(code.to_owned())
        }
        _ => None,
    };
    let member = Member {
        name,
        ip,
        proc,
        report,
        log,
        _stdout: stdout,
    };
    Ok((member, code))
}

/// Runs the room and measures it. Setup failures (Janus or the server not starting, nft
/// refusing) are an `Err`; anything after that is in the result.
pub fn run_room(spec: &RoomSpec) -> Result<RoomResult, String> {
    std::fs::create_dir_all(&spec.work).map_err(|e| format!("{}: {e}", spec.work.display()))?;
    let ticks = clock_ticks();
    install_counters(spec.members)?;
    let janus_port = spec.port + 1;
    let janus = match spec.mode {
        Mode::Mesh => None,
        Mode::Sfu => {
            let log = spec.work.join("janus.log");
            let janus = spawn_logged(
                Command::new(repo().join("scripts/janus"))
                    .args(["--port", &janus_port.to_string()])
                    .env("TMPDIR", &spec.work),
                &log,
            )?;
            wait_port(janus_port, "Janus", &log)?;
            Some(janus)
        }
    };
    let log = spec.work.join("serve.log");
    let mut serve = Command::new(&spec.binary);
    serve
        .args(["serve", "--bind", &format!("127.0.0.1:{}", spec.port)])
        .env("RUST_LOG", "info");
    match spec.mode {
        // The mesh cap must let every member in.
        Mode::Mesh => serve.args(["--max-room-size", &spec.members.max(2).to_string()]),
        Mode::Sfu => serve
            .args(["--sfu", &format!("ws://127.0.0.1:{janus_port}")])
            .args(["--sfu-above", "1"])
            .args([
                "--sfu-max-room-size",
                &(spec.members + 1).max(3).to_string(),
            ]),
    };
    let serve = spawn_logged(&mut serve, &log)?;
    wait_port(spec.port, "meshcall serve", &log)?;

    // Joins 0.7 s apart; on Janus the second join moves the room, and a join while it
    // moves is refused ("try again in a few seconds", which `meshcall join` does not), so
    // the third waits for the server to say everyone is on Janus. Then `settle`, then the
    // window; at its end everyone is told to leave (SIGTERM, which writes the report), so
    // each report's last-10-s rates end with the window. `--duration` is only a backstop.
    let gap = Duration::from_millis(700);
    let backstop = Duration::from_secs(300) + spec.settle + spec.window;
    let mut members: Vec<Member> = Vec::new();
    let mut errors = Vec::new();
    let (first, room) = join(spec, 0, None, backstop)?;
    members.push(first);
    let room = room.ok_or("the first member printed no room")?;
    for i in 1..spec.members {
        if spec.mode == Mode::Sfu
            && i == 2
            && let Err(e) = wait_log(&log, "every member is on the SFU", Duration::from_secs(30))
        {
            errors.push(e);
        }
        std::thread::sleep(gap);
        match join(spec, i, Some(&room), backstop) {
            Ok((m, _)) => members.push(m),
            Err(e) => errors.push(e),
        }
    }
    let window_start = Instant::now() + spec.settle;
    let window_end = window_start + spec.window;

    let pids: Vec<u32> = members.iter().map(|m| m.proc.0.id()).collect();
    let janus_pid = janus.as_ref().map(|j| j.0.id());
    let serve_pid = serve.0.id();
    let sample = || {
        let cpu: Vec<Option<f64>> = pids.iter().map(|&p| cpu_seconds(p, ticks)).collect();
        (
            Instant::now(),
            cpu,
            janus_pid.and_then(|p| cpu_seconds(p, ticks)),
            cpu_seconds(serve_pid, ticks),
            read_counters(),
            loadavg(),
        )
    };
    std::thread::sleep(window_start.saturating_duration_since(Instant::now()));
    let before = sample();
    std::thread::sleep(window_end.saturating_duration_since(Instant::now()));
    let after = sample();
    let window_s = after.0.duration_since(before.0).as_secs_f64();
    let (counters0, counters1) = match (before.4, after.4) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            errors.push(e);
            Default::default()
        }
    };
    let sent = |name: &str| {
        counters1
            .get(name)
            .copied()
            .unwrap_or(0)
            .saturating_sub(counters0.get(name).copied().unwrap_or(0))
    };
    let pct = |a: Option<f64>, b: Option<f64>| Some((b? - a?) * 100.0 / window_s);

    for m in &members {
        let _ = Command::new("kill")
            .args(["-TERM", &m.proc.0.id().to_string()])
            .status();
    }
    // A member still there long after being told to leave is stuck.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut results = Vec::new();
    for (i, mut m) in members.into_iter().enumerate() {
        let exit = loop {
            match m.proc.0.try_wait() {
                Ok(Some(status)) => {
                    break status
                        .code()
                        .map_or_else(|| status.to_string(), |c| c.to_string());
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(None) => break "still running 30 s after SIGTERM (killed)".to_owned(),
                Err(e) => break format!("wait failed: {e}"),
            }
        };
        let report = std::fs::read_to_string(&m.report)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let cpu_s = match (before.1[i], after.1[i]) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        results.push(MemberResult {
            uplink_bytes: sent(&m.name),
            cpu_s,
            exit,
            report,
            log: m.log.clone(),
            name: std::mem::take(&mut m.name),
            ip: std::mem::take(&mut m.ip),
        });
    }
    drop(serve);
    drop(janus);
    let pairs = pairs(&results);
    Ok(RoomResult {
        spec: spec.clone(),
        members: results,
        window_s,
        janus_cpu_pct: pct(before.2, after.2),
        janus_bytes: janus_pid.map(|_| sent("janus")),
        serve_cpu_pct: pct(before.3, after.3),
        load: (before.5, after.5),
        pairs,
        errors,
    })
}

/// Who received whom, from the reports (a member without a report received nobody).
fn pairs(members: &[MemberResult]) -> Pairs {
    let mut p = Pairs {
        expected: members.len() * members.len().saturating_sub(1),
        min_fps: f64::INFINITY,
        ..Pairs::default()
    };
    let mut fps_sum = 0.0;
    for me in members {
        for other in members.iter().filter(|o| o.name != me.name) {
            let peer = me.report.as_ref().and_then(|r| {
                r["peers"]
                    .as_object()?
                    .values()
                    .find(|v| v["name"] == other.name.as_str())
                    .cloned()
            });
            let video = peer
                .as_ref()
                .and_then(|v| v["video_frames"].as_u64())
                .unwrap_or(0);
            let audio = peer
                .as_ref()
                .and_then(|v| v["audio_frames"].as_u64())
                .unwrap_or(0);
            let fps = peer.as_ref().and_then(|v| v["fps"].as_f64()).unwrap_or(0.0);
            p.with_video += usize::from(video > 0);
            p.with_audio += usize::from(audio > 0);
            if video == 0 || audio == 0 {
                p.missing.push(format!(
                    "{}<-{} (video {video}, audio {audio})",
                    me.name, other.name
                ));
            }
            // `layer` in my report is what I send that member.
            let layer = me.report.as_ref().and_then(|r| {
                r["peers"]
                    .as_object()?
                    .values()
                    .find(|v| v["name"] == other.name.as_str())?["layer"]
                    .as_str()
                    .map(str::to_owned)
            });
            *p.layers
                .entry(layer.unwrap_or_else(|| "none".to_owned()))
                .or_default() += 1;
            p.behind += usize::from(fps < KEEPING_UP_FPS);
            p.min_fps = p.min_fps.min(fps);
            fps_sum += fps;
        }
    }
    if p.expected > 0 {
        p.mean_fps = fps_sum / p.expected as f64;
    } else {
        p.min_fps = 0.0;
    }
    p
}
