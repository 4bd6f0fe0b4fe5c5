//! Without any sound server the audio layer answers with typed errors, never a panic.
//! The real check runs in a child process so its environment (pointing PulseAudio at a
//! socket that does not exist) cannot disturb other tests.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use meshcall::media::audio::AudioError;
use meshcall::media::audio::capture::Capture;
use meshcall::media::audio::devices;
use meshcall::media::audio::playback::Playback;

const CHILD: &str = "child_opens_devices_without_a_sound_server";

#[test]
fn opening_devices_without_a_sound_server_gives_typed_errors() {
    let dir = std::env::temp_dir().join(format!("meshcall-nopulse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            CHILD,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "PULSE_SERVER",
            format!("unix:{}/no-such-socket", dir.display()),
        )
        .env("XDG_RUNTIME_DIR", &dir)
        .env("PULSE_RUNTIME_PATH", dir.join("pulse"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    // The child ran (not filtered away) and reported each outcome.
    for what in ["devices:", "microphone:", "speaker:"] {
        assert!(stdout.contains(what), "missing {what} in:\n{stdout}");
    }
}

#[test]
#[ignore = "run by opening_devices_without_a_sound_server_gives_typed_errors"]
fn child_opens_devices_without_a_sound_server() {
    // A machine with a real sound card may still open it through ALSA; either way there is
    // no panic and any error is one a person can act on.
    let typed = |e: &AudioError| {
        matches!(
            e,
            AudioError::NoSoundSystem { .. }
                | AudioError::NoDevice { .. }
                | AudioError::Stream { .. }
        )
    };
    match devices::list() {
        Ok(list) => println!(
            "devices: {} mics, {} speakers",
            list.microphones.len(),
            list.speakers.len()
        ),
        Err(e) => {
            assert!(typed(&e), "{e:?}");
            println!("devices: {e}");
        }
    }
    match Capture::open(None, 4) {
        Ok((c, _)) => println!("microphone: opened {}", c.device_name()),
        Err(e) => {
            assert!(typed(&e), "{e:?}");
            println!("microphone: {e}");
        }
    }
    match Playback::open(None) {
        Ok(p) => println!("speaker: opened {}", p.device_name()),
        Err(e) => {
            assert!(typed(&e), "{e:?}");
            println!("speaker: {e}");
        }
    }
}
