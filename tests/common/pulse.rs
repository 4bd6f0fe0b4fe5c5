//! The private PulseAudio daemon's virtual devices (see `scripts/lib/pulse.sh`): whether
//! they are here, and sinks a test loads for itself and unloads however it ends.

use std::process::Command;

/// Why the virtual devices cannot be used here, if they cannot.
pub fn skip_reason() -> Option<String> {
    let info = Command::new("pactl").arg("info").output();
    match info {
        Err(e) => return Some(format!("pactl not runnable ({e}): no PulseAudio tools")),
        Ok(o) if !o.status.success() => {
            return Some(format!(
                "no PulseAudio server reachable ({}); run `source scripts/lib/pulse.sh; pulse_start`",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(_) => {}
    }
    let sinks = Command::new("pactl")
        .args(["list", "short", "sinks"])
        .output()
        .ok()?;
    let sinks = String::from_utf8_lossy(&sinks.stdout).to_string();
    let has = |name: &str| sinks.lines().any(|l| l.split('\t').nth(1) == Some(name));
    if !has("mic") || !has("speaker") {
        return Some(
            "PulseAudio is up but has no `mic`/`speaker` null sinks (see scripts/lib/pulse.sh)"
                .into(),
        );
    }
    None
}

/// Unloads a PulseAudio module when the test ends, however it ends.
pub struct Module(pub String);

impl Drop for Module {
    fn drop(&mut self) {
        let _ = Command::new("pactl")
            .args(["unload-module", &self.0])
            .status();
    }
}

/// Loads a PulseAudio module (`module` and its `key=value` arguments), unloaded when the
/// returned guard drops.
pub fn load_module(module: &str, args: &[&str]) -> Module {
    let out = Command::new("pactl")
        .arg("load-module")
        .arg(module)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Module(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Loads a 48 kHz null sink named `name`; its monitor hears what is played into it.
pub fn load_null_sink(name: &str) -> Module {
    load_module(
        "module-null-sink",
        &[&format!("sink_name={name}"), "rate=48000"],
    )
}

/// Suspends a sink (and so its monitor source, which then delivers nothing) or resumes it.
pub fn suspend_sink(name: &str, suspend: bool) {
    let status = Command::new("pactl")
        .args(["suspend-sink", name, if suspend { "1" } else { "0" }])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "pactl suspend-sink {name} {suspend}: {status}"
    );
}

/// `pacat` playing into a sink; killed and reaped however the test ends.
pub struct Player {
    child: std::process::Child,
    feeder: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
    }
}

/// Plays `samples` (48 kHz mono, -1..1) into `sink`.
pub fn play_into(sink: &str, samples: &[f32]) -> Player {
    use std::io::Write;
    let mut child = Command::new("pacat")
        .args([
            "-p",
            "--latency-msec=100",
            &format!("--device={sink}"),
            "--format=s16le",
            "--rate=48000",
            "--channels=1",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let bytes: Vec<u8> = samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    Player {
        child,
        feeder: Some(feeder),
    }
}
