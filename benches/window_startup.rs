//! The desktop window's start-up, timed from outside on a real X display (Xvfb, Mesa's
//! software OpenGL): from launching `meshcall --room …` to its first frame drawn, its
//! self-preview shown, the room joined, and a remote member's video on screen. The window
//! logs each milestone once (`meshcall::timing`); this reads them as they happen.
//! Run: `cargo bench --bench window_startup` (uses $DISPLAY, or starts Xvfb itself).
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const MILESTONES: [&str; 4] = [
    "first frame drawn",
    "self-preview shown",
    "joined",
    "remote video shown",
];

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_meshcall")
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The X display to use: $DISPLAY, or a private Xvfb started here.
fn display() -> (Option<Kill>, String) {
    if let Ok(d) = std::env::var("DISPLAY") {
        return (None, d);
    }
    let d = format!(":{}", 150 + std::process::id() % 100);
    let x = Command::new("Xvfb")
        .args([
            d.as_str(),
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("no DISPLAY and no Xvfb");
    std::thread::sleep(Duration::from_millis(800));
    (Some(Kill(x)), d)
}

fn server() -> (Kill, String) {
    let mut server = Command::new(bin())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("RUST_LOG", "meshcall=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(at) = line.find("ws://") {
            break line[at..].split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Kill(server), url)
}

/// Wall-clock ms from launch to each milestone, and the window's own ms from join to
/// remote video.
fn one_run(url: &str, display: &str, run: usize) -> (Vec<Option<f64>>, Option<f64>) {
    let room = format!("bench-start-{run}");
    let _sender = Kill(
        Command::new(bin())
            .args(["join", "--server", url, "--room", &room, "--name", "Sender"])
            .args(["--duration", "30", "--ice-ip", "127.0.0.1"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let data = std::env::temp_dir().join(format!(
        "meshcall-bench-window-{}-{run}",
        std::process::id()
    ));
    std::fs::create_dir_all(&data).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["--server", url, "--room", &room, "--name", "Bench"])
        .args([
            "--video",
            "test",
            "--audio",
            "tone",
            "--ice-ip",
            "127.0.0.1",
        ])
        .env("XDG_DATA_HOME", &data)
        .env("XDG_CONFIG_HOME", &data)
        .env("RUST_LOG", "meshcall::timing=info,error")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .env("DISPLAY", display)
        .stderr(Stdio::piped());
    let launched = Instant::now();
    let mut window = Kill(cmd.spawn().unwrap());
    let stderr = window.0.stderr.take().unwrap();
    let mut seen = vec![None; MILESTONES.len()];
    let mut join_to_video = None;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let deadline = launched + Duration::from_secs(30);
    while seen.iter().any(Option::is_none) && Instant::now() < deadline {
        let Ok((at, line)) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        for (i, m) in MILESTONES.iter().enumerate() {
            if seen[i].is_none() && line.contains(m) {
                seen[i] = Some(at.duration_since(launched).as_secs_f64() * 1000.0);
                if *m == "remote video shown" {
                    // "…: 1234 ms after start, 456 ms after join"
                    join_to_video = line
                        .split(", ")
                        .find_map(|part| part.strip_suffix(" ms after join"))
                        .and_then(|v| v.trim().parse().ok());
                }
            }
        }
    }
    (seen, join_to_video)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn main() {
    let (_x, display) = display();
    let (_server, url) = server();
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); MILESTONES.len()];
    let mut join_video = Vec::new();
    for run in 0..RUNS {
        let (seen, jv) = one_run(&url, &display, run);
        let cells: Vec<String> = seen
            .iter()
            .map(|v| v.map_or("—".into(), |ms| format!("{ms:.0}")))
            .collect();
        println!("run {run}: launch → {} ms", cells.join(" / "));
        for (i, v) in seen.into_iter().enumerate() {
            if let Some(v) = v {
                all[i].push(v);
            }
        }
        join_video.extend(jv);
    }
    println!("\nmedian of {RUNS} launches (ms from launch, wall clock):");
    for (m, values) in MILESTONES.iter().zip(all) {
        let n = values.len();
        match median(values) {
            Some(ms) => println!("  {m:<20} {ms:>6.0}   ({n}/{RUNS} runs reached it)"),
            None => println!("  {m:<20}      —   (never reached)"),
        }
    }
    if let Some(ms) = median(join_video) {
        println!("  join sent → remote video on screen: {ms:.0} ms (window's own clock)");
    }
}
