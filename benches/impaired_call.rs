//! Three-member calls with member C's downlink impaired (clean, 5 % loss, 400 kbit/s cap,
//! both), 30 s each, in a private network namespace: `scripts/impaired-call` per scenario
//! (nftables loss and counters, an htb rate cap; `scripts/impair/lib.sh`). Prints the table
//! of issue 11 for meshcall and, in the same run, for three Chromium instances on our
//! browser page under the same impairment (`scripts/impair/chromium-call`, when it exists
//! and Chromium is installed).
//!
//! Run as root: `cargo bench --bench impaired_call` (about 3 minutes per tool).
//! `IMPAIRED_SCENARIOS=clean,loss5` picks scenarios, `IMPAIRED_DURATION=20` the length,
//! `IMPAIRED_SKIP_CHROMIUM=1` leaves Chromium out.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const SCENARIOS: [&str; 4] = ["clean", "loss5", "cap400", "cap400loss5"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs one scenario with `script`; the parsed JSON result or why there is none.
fn run(script: &Path, scenario: &str, duration: u64) -> Result<Value, String> {
    let out = std::env::temp_dir().join(format!(
        "impaired-call-bench-{}-{scenario}.json",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&out);
    let status = Command::new(script)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_meshcall"))
        .args(["--scenario", scenario, "--duration", &duration.to_string()])
        .arg("--out")
        .arg(&out)
        .status()
        .map_err(|e| format!("could not start {}: {e}", script.display()))?;
    let text = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    let text = text.map_err(|e| format!("{} wrote no result ({status}): {e}", script.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: bad JSON: {e}", script.display()))
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// "a–b" for two numbers (one if equal), "–" for none.
fn range(a: Option<f64>, b: Option<f64>, decimals: usize) -> String {
    match (a, b) {
        (Some(a), Some(b)) => {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            if format!("{lo:.decimals$}") == format!("{hi:.decimals$}") {
                format!("{lo:.decimals$}")
            } else {
                format!("{lo:.decimals$}–{hi:.decimals$}")
            }
        }
        (Some(x), None) | (None, Some(x)) => format!("{x:.decimals$}"),
        (None, None) => "–".to_owned(),
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |x| format!("{x:.decimals$}"))
}

/// What `receiver` got from `sender`, field `key`.
fn from(r: &Value, receiver: &str, sender: &str, key: &str) -> Option<f64> {
    num(&r["members"][receiver]["from"][sender][key])
}

fn row(tool: &str, scenario: &str, r: &Value) -> String {
    let ab_kbps = range(num(&r["kbps"]["A->B"]), num(&r["kbps"]["B->A"]), 0);
    let captured = range(
        num(&r["members"]["A"]["captured_frames"]),
        num(&r["members"]["B"]["captured_frames"]),
        0,
    );
    let ab_frames = format!(
        "{} (of {captured})",
        range(
            from(r, "B", "A", "video_frames"),
            from(r, "A", "B", "video_frames"),
            0
        )
    );
    let c_video = format!(
        "{}, {}",
        opt(from(r, "C", "A", "video_frames"), 0),
        opt(from(r, "C", "B", "video_frames"), 0)
    );
    let pct = |s: &str| num(&r["audio_vs_clean"][s]["pct"]);
    let c_audio = format!(
        "{}, {} ({}, {} %)",
        opt(from(r, "C", "A", "audio_frames"), 0),
        opt(from(r, "C", "B", "audio_frames"), 0),
        opt(pct("A"), 0),
        opt(pct("B"), 0)
    );
    let c_latency = format!(
        "{} / {} ms",
        range(
            from(r, "C", "A", "latency_p50_ms"),
            from(r, "C", "B", "latency_p50_ms"),
            0
        ),
        range(
            from(r, "C", "A", "latency_p95_ms"),
            from(r, "C", "B", "latency_p95_ms"),
            0
        )
    );
    let freezes = format!(
        "{}, {}; A↔B {}",
        opt(from(r, "C", "A", "freezes"), 0),
        opt(from(r, "C", "B", "freezes"), 0),
        range(
            from(r, "B", "A", "freezes"),
            from(r, "A", "B", "freezes"),
            0
        )
    );
    let cpu = ["A", "B", "C"]
        .iter()
        .map(|m| opt(num(&r["members"][*m]["cpu_pct"]), 0))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "| {tool} | {scenario} | {ab_kbps} | {ab_frames} | {c_video} | {c_audio} | {c_latency} | {freezes} | {cpu} |"
    )
}

const HEADER: &str = "| tool | C's downlink | A↔B kbps | A↔B video frames | C's video frames from A, B | C's audio frames from A, B (% of B's / A's) | C's latency p50 / p95 | C's freezes from A, B; A↔B | CPU % of a core, A, B, C |\n|---|---|---|---|---|---|---|---|---|";

fn main() {
    let duration: u64 = std::env::var("IMPAIRED_DURATION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let scenarios: Vec<String> = std::env::var("IMPAIRED_SCENARIOS").map_or_else(
        |_| SCENARIOS.iter().map(|s| (*s).to_owned()).collect(),
        |v| v.split(',').map(str::to_owned).collect(),
    );

    let mut tools: Vec<(&str, PathBuf)> = vec![("meshcall", repo().join("scripts/impaired-call"))];
    let chromium_script = repo().join("scripts/impair/chromium-call");
    let chromium_bin = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| which(n));
    if std::env::var_os("IMPAIRED_SKIP_CHROMIUM").is_some() {
        println!("Chromium rows skipped: IMPAIRED_SKIP_CHROMIUM is set");
    } else if !chromium_script.is_file() {
        println!(
            "Chromium rows skipped: {} does not exist",
            chromium_script.display()
        );
    } else if chromium_bin.is_none() {
        println!("Chromium rows skipped: no chromium on PATH (scripts/setup --test installs it)");
    } else {
        tools.push(("Chromium", chromium_script));
    }

    println!(
        "impaired calls: 3 members, {duration} s each, C's downlink impaired; kbps from nft counters over 40–90 % of the call"
    );
    let mut rows = Vec::new();
    for (tool, script) in &tools {
        for scenario in &scenarios {
            println!("running {tool} {scenario} ...");
            match run(script, scenario, duration) {
                Ok(r) => {
                    let line = row(tool, scenario, &r);
                    println!("{line}");
                    if let Some(errors) = r["errors"].as_array().filter(|e| !e.is_empty()) {
                        for e in errors {
                            println!("  {tool} {scenario}: {}", e.as_str().unwrap_or("?"));
                        }
                    }
                    rows.push(line);
                }
                Err(e) => {
                    println!("  {tool} {scenario}: no result: {e}");
                    rows.push(format!(
                        "| {tool} | {scenario} | no result: {e} | | | | | | |"
                    ));
                }
            }
        }
    }
    println!("\n{HEADER}");
    for r in rows {
        println!("{r}");
    }
}
