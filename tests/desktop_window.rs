//! The real window under Xvfb (glow on Mesa's software OpenGL), in a real call.
//!
//! `scripts/test` starts Xvfb and exports DISPLAY; without a display or ImageMagick's
//! `import`, these tests print `SKIPPED: <reason>` and pass (and fail under CI; see
//! `common::skip`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;

/// Windows, codecs and software GL all at once are heavy on two cores: one test at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BIN: &str = env!("CARGO_BIN_EXE_meshcall");

fn skip_reason() -> Option<String> {
    if std::env::var_os("DISPLAY").is_none() {
        return Some("no DISPLAY (scripts/test runs Xvfb)".into());
    }
    let import = Command::new("import").arg("-version").output();
    if !import.is_ok_and(|o| o.status.success()) {
        return Some("ImageMagick's `import` is missing (scripts/setup --test)".into());
    }
    None
}

/// Kills the child when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// The window, with its settings kept in a temporary folder (nothing goes in $HOME).
fn window(args: &[&str], data: &Path) -> Proc {
    let child = Command::new(BIN)
        .args(args)
        .args(["--ice-ip", "127.0.0.1"])
        .env("XDG_DATA_HOME", data)
        .env("XDG_CONFIG_HOME", data)
        .env("RUST_LOG", "meshcall=info,warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.join("window.log")).expect("log"))
        .spawn()
        .expect("start the window");
    Proc(child)
}

fn participant(server: &str, room: &str, video: &str, seconds: u32) -> Child {
    Command::new(BIN)
        .args([
            "join", "--server", server, "--room", room, "--name", "Pattern",
        ])
        .args(["--video", video, "--audio", "tone", "--ice-ip", "127.0.0.1"])
        .args(["--duration", &seconds.to_string(), "--report", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the participant")
}

fn screenshot(path: &Path) -> image::RgbaImage {
    let status = Command::new("import")
        .args(["-window", "root"])
        .arg(path)
        .status()
        .expect("run import");
    assert!(status.success(), "import failed");
    image::open(path).expect("read screenshot").to_rgba8()
}

/// Fraction of pixels that differ noticeably between two shots.
fn changed_fraction(a: &image::RgbaImage, b: &image::RgbaImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let changed = a
        .pixels()
        .zip(b.pixels())
        .filter(|(p, q)| (0..3).any(|c| p[c].abs_diff(q[c]) > 24))
        .count();
    changed as f64 / f64::from(a.width() * a.height())
}

/// Fraction of strongly coloured pixels: the pattern's gradient is, the UI's greys are not.
fn colourful_fraction(img: &image::RgbaImage) -> f64 {
    let n = img
        .pixels()
        .filter(|p| {
            let (max, min) = (p[0].max(p[1]).max(p[2]), p[0].min(p[1]).min(p[2]));
            max - min > 60
        })
        .count();
    n as f64 / f64::from(img.width() * img.height())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_window_shows_a_remote_test_pattern_moving() {
    if let Some(reason) = skip_reason() {
        common::skip::skip_or_fail(&reason);
        return;
    }
    let _heavy = HEAVY.lock().await;
    let server = TestServer::default().await;
    let url = format!("ws://{}", server.addr);
    let room = "desk-top-test";
    let _sender = Proc(participant(&url, room, "test", 40));
    let data = tempdir();
    // Our own camera and mic off, so only the remote tile can change between shots.
    let _window = window(
        &[
            "--server", &url, "--room", room, "--name", "Viewer", "--video", "none", "--audio",
            "none",
        ],
        &data,
    );
    let dir = artifacts();
    let (first, second) = (
        dir.join("desktop-call-1.png"),
        dir.join("desktop-call-2.png"),
    );
    // Wait for the pattern to show (joining, ICE, first keyframe), then two shots apart.
    let deadline = Instant::now() + Duration::from_secs(25);
    let shot1 = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let shot = screenshot(&first);
        if colourful_fraction(&shot) > 0.05 {
            break shot;
        }
        assert!(
            Instant::now() < deadline,
            "no video in the window after 25 s; see {} and {}",
            first.display(),
            data.join("window.log").display()
        );
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let shot2 = screenshot(&second);
    let colour = colourful_fraction(&shot2);
    let changed = changed_fraction(&shot1, &shot2);
    println!(
        "window: {:.1} % of the screen is video colour, {:.1} % changed in 0.7 s; shots in {}",
        colour * 100.0,
        changed * 100.0,
        dir.display()
    );
    assert!(colour > 0.05, "the remote video is gone in the second shot");
    assert!(
        changed > 0.02,
        "the remote pattern is not moving ({:.2} % changed)",
        changed * 100.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_window_hosts_the_room_when_no_server_answers() {
    if let Some(reason) = skip_reason() {
        common::skip::skip_or_fail(&reason);
        return;
    }
    let _heavy = HEAVY.lock().await;
    // A port where nothing listens: the window must start the server inside itself.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("ws://127.0.0.1:{port}");
    let room = "host-ed-here";
    let data = tempdir();
    let _window = window(
        &[
            "--server", &url, "--room", room, "--name", "Host", "--video", "test", "--audio",
            "tone",
        ],
        &data,
    );
    // The participant retries until the window's server is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let out = tokio::task::spawn_blocking({
            let url = url.clone();
            move || participant(&url, room, "none", 8).wait_with_output()
        })
        .await
        .expect("join")
        .expect("participant output");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "nobody served {url}; see {}",
            data.join("window.log").display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let json_start = report.find('{').expect("a JSON report");
    let report: serde_json::Value = serde_json::from_str(&report[json_start..]).expect("report");
    let peers = report["peers"].as_object().expect("peers");
    let host = peers
        .values()
        .find(|p| p["name"] == "Host")
        .unwrap_or_else(|| panic!("the window's member is missing: {report}"));
    let (video, audio) = (host["video_frames"].as_u64(), host["audio_frames"].as_u64());
    println!("from the window in 8 s: {video:?} video frames, {audio:?} audio frames");
    assert!(video.unwrap_or(0) > 100, "{host}");
    assert!(audio.unwrap_or(0) > 200, "{host}");
}

/// The id eframe gives the window is the one the share picker's listing uses, so leaving it
/// out works: listed without the exclusion (named "meshcall"), gone with it.
#[tokio::test(flavor = "multi_thread")]
async fn the_share_picker_leaves_our_own_window_out() {
    use meshcall::media::video::screen::{ListOptions, ScreenTarget, list_sources};
    if let Some(reason) = skip_reason() {
        common::skip::skip_or_fail(&reason);
        return;
    }
    let _heavy = HEAVY.lock().await;
    let data = tempdir();
    let _window = window(&["--video", "none", "--audio", "none"], &data);
    let log = data.join("window.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    let id: u32 = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("our X11 window: ").nth(1) {
            let value = rest.split_whitespace().next().unwrap_or_default();
            let digits = value.trim_start_matches("Some(").trim_end_matches(')');
            break digits
                .parse()
                .unwrap_or_else(|_| panic!("the window has no X11 id: {value}; see {log:?}"));
        }
        assert!(
            Instant::now() < deadline,
            "no window id logged; see {log:?}"
        );
    };
    let ours = ScreenTarget::Window { id };
    let list = |exclude: Vec<u32>| {
        let options = ListOptions {
            exclude,
            thumbnail_size: 0,
        };
        list_sources(None, &options).expect("list the display")
    };
    // The window may be mapped a moment after it logged its id.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        if let Some(s) = list(Vec::new()).into_iter().find(|s| s.target == ours) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "window {id:#x} is not among {:?}",
            list(Vec::new())
                .iter()
                .map(|s| (&s.name, s.target))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(listed.name, "meshcall");
    let without = list(vec![id]);
    assert!(
        without.iter().all(|s| s.target != ours),
        "excluded yet listed: {without:?}"
    );
    println!(
        "our window {id:#x} is left out; {} sources remain",
        without.len()
    );
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meshcall-window-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}
