//! Issue 14's benchmark: the same room of N headless members (`meshcall join`, test pattern
//! 640x360@30 + tone) as a full mesh and on Janus VideoRoom, for N = 4, 8, 12, each in turn
//! so both modes see the same machine. Prints per N and mode: each member's uplink kbit/s
//! (nftables byte counters on its own ICE address: UDP it sent on all its connections, IP
//! packet length), each member's CPU (% of one core, utime+stime over the window), Janus'
//! CPU and what it sent, and whether every member received every other one — a broken run
//! shows as BROKEN, not as a number.
//!
//! Run as root (a private network namespace, nftables, Janus: `scripts/setup --test`):
//! `cargo bench --profile dev --bench room_size` (the dev build; without `--profile dev`
//! cargo builds everything in release first). Knobs: `ROOM_SIZES=4,8,12`,
//! `ROOM_MODES=mesh,sfu`, `ROOM_WINDOW=15` (seconds measured), `ROOM_SETTLE=8` (seconds
//! from the last join to the window), `ROOM_DECODE=1` (decode instead of `--count-only`),
//! `ROOM_BINARY=path` (another meshcall build). Logs and reports stay in
//! `target/tmp/room_size/`. Exits 1 if a run was broken.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[path = "../tests/common/netns.rs"]
#[allow(dead_code)]
mod netns;
#[path = "../tests/common/room_bench.rs"]
mod room_bench;
#[path = "../tests/common/skip.rs"]
#[allow(dead_code)]
mod skip;

use room_bench::{Mode, RoomResult, RoomSpec, Verdict, mean_max};

/// Set in the environment of the copy of this binary that runs inside the namespace.
const INSIDE: &str = "MESHCALL_ROOM_SIZE_NETNS";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn seconds(name: &str, default: &str) -> Duration {
    let v = env_or(name, default);
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s < 600.0 => Duration::from_secs_f64(s),
        _ => {
            eprintln!("room_size: {name}={v:?} is not a number of seconds (0–600)");
            std::process::exit(2);
        }
    }
}

fn main() {
    if std::env::var_os(INSIDE).is_none() {
        std::process::exit(enter_namespace());
    }
    let sizes: Vec<usize> = env_or("ROOM_SIZES", "4,8,12")
        .split(',')
        .map(|s| match s.trim().parse() {
            Ok(n) if (2..=40).contains(&n) => n,
            _ => {
                eprintln!("room_size: ROOM_SIZES wants numbers 2–40, not {s:?}");
                std::process::exit(2);
            }
        })
        .collect();
    let modes: Vec<Mode> = env_or("ROOM_MODES", "mesh,sfu")
        .split(',')
        .map(|m| match m.trim() {
            "mesh" => Mode::Mesh,
            "sfu" => Mode::Sfu,
            other => {
                eprintln!("room_size: ROOM_MODES wants mesh and/or sfu, not {other:?}");
                std::process::exit(2);
            }
        })
        .collect();
    let window = seconds("ROOM_WINDOW", "15");
    let settle = seconds("ROOM_SETTLE", "8");
    let decode = env_or("ROOM_DECODE", "0") == "1";
    let binary = std::env::var_os("ROOM_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_meshcall")),
        PathBuf::from,
    );
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("room_size");

    println!(
        "room_size: {} s measured from {} s after the last join; members {}; binary {}",
        window.as_secs_f64(),
        settle.as_secs_f64(),
        if decode {
            "decode every stream"
        } else {
            "count complete access units (--count-only, no decoding)"
        },
        binary.display()
    );
    println!("logs and reports: {}", work.display());
    println!();
    println!(
        "| N | mode | uplink kbit/s per member, mean (max) | CPU % of a core per member, mean (max) | Janus CPU % | members + Janus CPU % | Janus sent kbit/s | serve CPU % | received (pairs with video / all) | fps per pair, mean (min) | pairs < {} fps | mesh: layer sent to each member at the end (pairs) | load 1 min | verdict |",
        room_bench::KEEPING_UP_FPS
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut results = Vec::new();
    let mut port = 8700;
    for &n in &sizes {
        for &mode in &modes {
            let spec = RoomSpec {
                members: n,
                mode,
                settle,
                window,
                decode,
                binary: binary.clone(),
                work: work.join(format!("{}-{n}", mode.name())),
                port,
            };
            port += 2;
            match room_bench::run_room(&spec) {
                Ok(r) => {
                    println!("{}", row(&r));
                    results.push(r);
                }
                Err(e) => {
                    println!("| {n} | {} | could not run: {e} |", mode.name());
                    results.push(RoomResult {
                        spec,
                        members: Vec::new(),
                        window_s: 0.0,
                        janus_cpu_pct: None,
                        janus_bytes: None,
                        serve_cpu_pct: None,
                        load: (f64::NAN, f64::NAN),
                        pairs: Default::default(),
                        errors: vec![e],
                    });
                }
            }
        }
    }
    println!();
    let mut broken = false;
    for r in &results {
        details(r);
        broken |= r.verdict() == Verdict::Broken;
    }
    // Uplink ratios within this run: the mesh sends N−1 copies, the SFU one.
    for &n in &sizes {
        let up = |mode| {
            results
                .iter()
                .find(|r| r.spec.members == n && r.spec.mode == mode && !r.members.is_empty())
                .map(|r| mean_max(&r.uplink_kbps()).0)
        };
        if let (Some(mesh), Some(sfu)) = (up(Mode::Mesh), up(Mode::Sfu))
            && sfu > 0.0
        {
            println!(
                "N = {n}: mesh uplink / SFU uplink = {:.1} (N − 1 = {})",
                mesh / sfu,
                n - 1
            );
        }
    }
    if broken {
        println!("a run was BROKEN (see above)");
        std::process::exit(1);
    }
}

fn row(r: &RoomResult) -> String {
    let (up_mean, up_max) = mean_max(&r.uplink_kbps());
    let (cpu_mean, cpu_max) = mean_max(&r.cpu_pct());
    let opt = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"));
    let p = &r.pairs;
    format!(
        "| {} | {} | {up_mean:.0} ({up_max:.0}) | {cpu_mean:.0} ({cpu_max:.0}) | {} | {:.0} | {} | {} | {} / {} | {:.1} ({:.1}) | {} | {} | {:.1}–{:.1} | {} |",
        r.spec.members,
        r.spec.mode.name(),
        opt(r.janus_cpu_pct),
        r.total_cpu_pct(),
        opt(r.janus_bytes.map(|b| b as f64 * 8.0 / r.window_s / 1000.0)),
        opt(r.serve_cpu_pct),
        p.with_video,
        p.expected,
        p.mean_fps,
        p.min_fps,
        p.behind,
        // On Janus a member sends one stream and the engine reports no per-member layer.
        if r.spec.mode == Mode::Sfu {
            "–".to_owned()
        } else {
            p.layers
                .iter()
                .map(|(l, n)| format!("{l}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        r.load.0,
        r.load.1,
        match r.verdict() {
            Verdict::Ok => "ok",
            Verdict::Behind => "behind",
            Verdict::Broken => "BROKEN",
        }
    )
}

/// Per-member lines for a run that did not go well (and a short one for those that did).
fn details(r: &RoomResult) {
    let verdict = r.verdict();
    println!(
        "{} N = {}: {:?}, window {:.1} s",
        r.spec.mode.name(),
        r.spec.members,
        verdict,
        r.window_s
    );
    for e in &r.errors {
        println!("  error: {e}");
    }
    if verdict == Verdict::Ok {
        return;
    }
    let kbps = r.uplink_kbps();
    for (m, up) in r.members.iter().zip(kbps) {
        println!(
            "  {} ({}): exit {}, uplink {up:.0} kbit/s, CPU {}, report {}, log {}",
            m.name,
            m.ip,
            m.exit,
            m.cpu_s.map_or_else(
                || "–".to_owned(),
                |s| format!("{:.0} %", s * 100.0 / r.window_s)
            ),
            if m.report.is_some() { "yes" } else { "NONE" },
            m.log.display()
        );
    }
    for miss in &r.pairs.missing {
        println!("  nothing received: {miss}");
    }
}

/// Re-runs this binary inside a fresh network namespace with only `lo`; its exit code.
fn enter_namespace() -> i32 {
    if let Some(reason) = netns::janus_missing() {
        eprintln!("room_size: cannot run: {reason}");
        return 2;
    }
    if netns::which("nft").is_none() {
        eprintln!("room_size: cannot run: `nft` is not installed (scripts/setup --test)");
        return 2;
    }
    let status = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\""])
        .arg(std::env::current_exe().unwrap())
        .env(INSIDE, "1")
        .status();
    match status {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("room_size: could not start unshare: {e}");
            1
        }
    }
}
