//! What `tests/interop_aiortc.rs` and `tests/interop_gstreamer.rs` share: running one call
//! between a headless `meshcall join` and a foreign WebRTC member (`tests/interop/run.py`)
//! inside a private network namespace holding only `lo`, and judging what both received.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

/// A call runs real encoders and decoders on both sides; two at once would starve 2 cores.
static HEAVY: Mutex<()> = Mutex::new(());

/// A call takes about 11 s; one running past this is stuck.
const LIMIT: Duration = Duration::from_secs(90);

/// Who joins the room first. The one who joins second makes the offer (protocol.md).
#[derive(Debug, Clone, Copy)]
pub enum Order {
    /// The foreign member is in the room first: meshcall offers, the foreign stack answers.
    ForeignFirst,
    /// meshcall is in the room first: the foreign stack offers, meshcall answers.
    ForeignSecond,
}

impl Order {
    fn arg(self) -> &'static str {
        match self {
            Self::ForeignFirst => "foreign-first",
            Self::ForeignSecond => "foreign-second",
        }
    }
}

pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The Python that `run.py` itself runs with: Debian's, which `scripts/setup --test` installs.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why no interop call can run here at all, if it cannot.
fn missing_common() -> Option<String> {
    if !Path::new(SYSTEM_PYTHON).exists() {
        return Some(format!("no {SYSTEM_PYTHON}"));
    }
    if !succeeds(Command::new("unshare").args(["-n", "ip", "link", "set", "lo", "up"])) {
        return Some("cannot make a network namespace (unshare -n needs root)".into());
    }
    None
}

/// Runs one call of `stack` (`aiortc` or `gstreamer`, its member run by `python`) in
/// `order`. `missing` is why the stack's own dependencies are absent, if they are; then
/// (or when the namespace cannot be made) this skips, or fails under CI, and gives None.
pub fn call(stack: &str, python: &Path, order: Order, missing: Option<String>) -> Option<Value> {
    if let Some(reason) = missing.or_else(missing_common) {
        common::skip::skip_or_fail(&reason);
        return None;
    }
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = std::env::temp_dir();
    let tag = format!(
        "meshcall-interop-{}-{stack}-{}",
        std::process::id(),
        order.arg()
    );
    let out = tmp.join(format!("{tag}.json"));
    let log = tmp.join(format!("{tag}.log"));
    let _ = std::fs::remove_file(&out);
    let log_file = std::fs::File::create(&log).unwrap();
    let start = Instant::now();
    let mut child = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" run.py \"$1\" \"$2\" \"$3\"",
            SYSTEM_PYTHON,
            stack,
            order.arg(),
        ])
        .arg(&out)
        .current_dir(interop_dir())
        .env("MESHCALL_BIN", env!("CARGO_BIN_EXE_meshcall"))
        .env("INTEROP_PYTHON", python)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("{stack} {order:?}: run.py failed ({s}); its log:\n{text}"),
        None => panic!("{stack} {order:?}: ran over {LIMIT:?}; its log:\n{text}"),
    }
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    println!(
        "{stack} {order:?} took {:.1} s: {result:#}",
        start.elapsed().as_secs_f64()
    );
    Some(result)
}

fn n(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The entry of `report`'s `peers` whose `name` is `name`.
fn peer<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["peers"]
        .as_object()
        .and_then(|peers| peers.values().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no peer named {name} in {report:#}"))
}

/// Both sides decoded the other's video and audio for most of the ~7 s call: meshcall's
/// report counts what came from the foreign member, the foreign member's what came from us.
pub fn assert_media_both_ways(r: &Value, stack: &str) {
    // meshcall's side: decoded frames from the foreign member (30 fps sent, 50 audio
    // frames a second), and its tone is not silence.
    let got = peer(&r["meshcall"], stack);
    assert!(
        n(&got["video_frames"]) > 60.0,
        "meshcall from {stack}: {got:#}"
    );
    assert!(
        n(&got["audio_frames"]) > 150.0,
        "meshcall from {stack}: {got:#}"
    );
    assert!(n(&got["audio_rms"]) > 0.01, "silence from {stack}: {got:#}");
    // The foreign side: it connected, decoded our H.264 and heard our tone.
    let got = peer(&r["foreign"], "meshcall");
    assert!(
        got["connected_ms"].is_u64(),
        "{stack} never connected: {got:#}"
    );
    let codecs = &got["codecs"];
    assert!(
        codecs["video"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case("video/H264")),
        "{stack}: {got:#}"
    );
    assert!(
        codecs["audio"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case("audio/opus")),
        "{stack}: {got:#}"
    );
    assert!(
        n(&got["video_frames"]) > 60.0,
        "{stack} from meshcall: {got:#}"
    );
    assert!(
        n(&got["audio_ms"]) > 3000.0,
        "{stack} from meshcall: {got:#}"
    );
    assert!(
        n(&got["audio_rms"]) > 100.0,
        "silence from meshcall: {got:#}"
    );
}
