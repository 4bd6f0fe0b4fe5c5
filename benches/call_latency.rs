//! Calls of N headless participants (`meshcall join`, release build) on 127.0.0.1 with the
//! 640x360@30 test pattern and a tone. Prints glass-to-glass latency (from the pattern's
//! time band), join time, and CPU per participant as N grows.
//! Run: `cargo bench --bench call_latency` (numbers go to docs/benchmarks.md).
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECONDS: u64 = 10;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_meshcall")
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn join(url: &str, room: Option<&str>, name: &str, secs: u64, report: &std::path::Path) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args([
        "join",
        "--server",
        url,
        "--name",
        name,
        "--duration",
        &secs.to_string(),
    ])
    .arg("--report")
    .arg(report)
    .env("MESHCALL_ICE_IP", "127.0.0.1")
    .env("RUST_LOG", "error")
    .stdout(Stdio::piped());
    if let Some(r) = room {
        cmd.args(["--room", r]);
    }
    cmd.spawn().unwrap()
}

fn run(n: usize, url: &str) {
    let dir = std::env::temp_dir();
    let reports: Vec<_> = (0..n)
        .map(|i| {
            dir.join(format!(
                "meshcall-bench-{}-{n}-{i}.json",
                std::process::id()
            ))
        })
        .collect();
    let mut first = join(url, None, "p0", SECONDS + 1, &reports[0]);
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let room = line.trim().trim_start_matches("room: ").to_owned();
    let mut children = vec![first];
    for (i, report) in reports.iter().enumerate().skip(1) {
        children.push(join(url, Some(&room), &format!("p{i}"), SECONDS, report));
    }
    let started = Instant::now();
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    // Sample CPU just before the processes end, when /proc still has them.
    std::thread::sleep(Duration::from_secs(SECONDS) - Duration::from_millis(300));
    let cpu: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let wall = started.elapsed().as_secs_f64();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let mut lat50 = Vec::new();
    let mut lat95 = Vec::new();
    let mut joins = Vec::new();
    for r in &reports {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(r).unwrap()).unwrap();
        let _ = std::fs::remove_file(r);
        if let Some(j) = v["join_ms"].as_u64() {
            joins.push(j);
        }
        for p in v["peers"].as_object().unwrap().values() {
            if let Some(l) = p["latency_ms"].as_object() {
                lat50.push(l["p50"].as_u64().unwrap());
                lat95.push(l["p95"].as_u64().unwrap());
            }
        }
    }
    lat50.sort_unstable();
    lat95.sort_unstable();
    joins.sort_unstable();
    let med = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
    let cpu_mean = cpu.iter().sum::<f64>() / cpu.len() as f64 / wall * 100.0;
    println!(
        "{n} participants: latency p50 {} ms (median of {} streams), p95 {} ms; join_ms median {} (late joiners {:?}); CPU {:.0}% of a core per participant",
        med(&lat50),
        lat50.len(),
        med(&lat95),
        med(&joins),
        &joins,
        cpu_mean
    );
}

fn main() {
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
    for n in [2, 3, 4] {
        run(n, &url);
    }
    let _ = server.kill();
    let _ = server.wait();
}
