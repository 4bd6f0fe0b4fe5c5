//! Running a test inside its own network namespace (only `lo`) with Janus: the outer test
//! re-runs one ignored test of the same binary under `unshare -n`, in its own process group
//! so a run over its time limit is killed with everything it started.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `name` found on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Why this machine cannot run a Janus test in a namespace, if it cannot.
pub fn janus_missing() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("needs Linux network namespaces".to_owned());
    }
    for tool in ["unshare", "ip", "janus"] {
        if which(tool).is_none() {
            return Some(format!(
                "`{tool}` is not installed (scripts/setup --test installs janus)"
            ));
        }
    }
    let ns = Command::new("unshare")
        .args(["-n", "ip", "link", "set", "lo", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !ns.is_ok_and(|s| s.success()) {
        return Some("cannot make a network namespace (unshare -n needs root)".to_owned());
    }
    None
}

/// Runs the ignored test `inner` of this binary inside a fresh namespace with `inside_env`
/// set, killing it after `limit`; skips (fails under CI) when the machine cannot.
pub fn run_in_namespace(inner: &str, inside_env: &str, limit: Duration) {
    if let Some(reason) = janus_missing() {
        super::skip::skip_or_fail(&reason);
        return;
    }
    let started = Instant::now();
    let mut child = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" --exact \"$1\" --ignored --nocapture --test-threads=1",
        ])
        .arg(std::env::current_exe().unwrap())
        .arg(inner)
        .env(inside_env, "1")
        .process_group(0)
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("{inner} took over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("{inner}: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        status.success(),
        "{inner} failed inside the namespace: {status}"
    );
}
