//! Skipping a test whose dependency is missing: allowed on a developer's machine, where it
//! is printed and recorded for `scripts/test`'s summary; a failure under CI, which installs
//! everything the suite needs (`scripts/setup --test`), so a skip there hides a broken setup.

use std::io::Write;
use std::path::PathBuf;

/// Where skips are recorded: `MESHCALL_TEST_SKIPS` (set by `scripts/test`), else
/// `target/test-skips` beside this build's files.
fn records() -> PathBuf {
    std::env::var_os("MESHCALL_TEST_SKIPS").map_or_else(
        || {
            let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            tmp.parent().unwrap_or(&tmp).join("test-skips")
        },
        PathBuf::from,
    )
}

/// Whether this run is CI: `CI` set to anything but empty, `false` or `0`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

/// The calling test cannot run because `reason` (a missing dependency); the caller returns
/// right after. Under CI this panics instead.
pub fn skip_or_fail(reason: &str) {
    if under_ci() {
        panic!("{}: {reason}; CI must run this test", test_name());
    }
    skipped(reason);
}

/// Prints and records a skip that is not a missing dependency (so CI only counts it).
pub fn skipped(reason: &str) {
    let name = test_name();
    // One line per skip, so the summary can count lines (tools' messages span several).
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    println!("SKIPPED {name}: {reason}");
    let dir = records();
    // A record that cannot be written must not fail the test: the SKIPPED line is printed.
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("skipped.txt"))?;
        // One write per line: appends from parallel tests do not interleave.
        file.write_all(format!("{name}: {reason}\n").as_bytes())
    });
    if let Err(e) = written {
        eprintln!("could not record the skip in {}: {e}", dir.display());
    }
}

/// `crate::test` as libtest names it (its thread carries the test's name).
fn test_name() -> String {
    let krate = env!("CARGO_CRATE_NAME");
    match std::thread::current().name() {
        Some(test) if test != "main" => format!("{krate}::{test}"),
        _ => krate.to_owned(),
    }
}
