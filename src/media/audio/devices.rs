//! Finding microphones and speakers, and choosing the audio backend.
//!
//! PulseAudio (or PipeWire's PulseAudio server) is preferred: its devices have real names
//! and "is a sound server running" has a clear answer. Without it we fall back to cpal's
//! default host (ALSA on Linux).

use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait};

use super::error::AudioError;

/// One device as the settings screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDevice {
    /// Stable identifier to open it by (PulseAudio: the sink/source name, e.g. `speaker`).
    pub id: String,
    /// Human-readable name (PulseAudio: the description, e.g. "Null Output").
    pub name: String,
    /// True for the system's default device of its kind.
    pub is_default: bool,
}

/// Every microphone and speaker at the moment of asking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioDevices {
    /// Input devices.
    pub microphones: Vec<AudioDevice>,
    /// Output devices.
    pub speakers: Vec<AudioDevice>,
}

/// Which backend a [`cpal::Host`] came from; errors are worded differently for each.
pub(crate) struct ChosenHost {
    pub host: cpal::Host,
    /// Why PulseAudio was not used, when it was not.
    pub pulse_problem: Option<String>,
}

/// Lists the devices now; call again to refresh after a device is plugged in or removed.
pub fn list() -> Result<AudioDevices, AudioError> {
    let chosen = listing_host()?;
    let host = &chosen.host;
    let default_in = host.default_input_device().and_then(|d| device_id(&d));
    let default_out = host.default_output_device().and_then(|d| device_id(&d));
    let describe = |d: cpal::Device, default: &Option<String>| {
        let id = device_id(&d)?;
        Some(AudioDevice {
            is_default: default.as_deref() == Some(id.as_str()),
            name: device_name(&d),
            id,
        })
    };
    let microphones = host
        .input_devices()
        .map_err(|e| no_sound_system(&chosen, &e.to_string()))?
        .filter_map(|d| describe(d, &default_in))
        .collect();
    let speakers = host
        .output_devices()
        .map_err(|e| no_sound_system(&chosen, &e.to_string()))?
        .filter_map(|d| describe(d, &default_out))
        .collect();
    Ok(AudioDevices {
        microphones,
        speakers,
    })
}

/// The backend to use: PulseAudio when reachable, otherwise the platform default.
pub(crate) fn host() -> Result<ChosenHost, AudioError> {
    #[cfg(target_os = "linux")]
    {
        match cpal::host_from_id(cpal::HostId::PulseAudio) {
            Ok(host) => Ok(ChosenHost {
                host,
                pulse_problem: None,
            }),
            Err(e) => {
                tracing::info!("PulseAudio not reachable ({e}); using the default audio host");
                Ok(ChosenHost {
                    host: cpal::default_host(),
                    pulse_problem: Some(e.to_string()),
                })
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(ChosenHost {
            host: cpal::default_host(),
            pulse_problem: None,
        })
    }
}

/// The host that lists devices, kept for the whole process when it is PulseAudio.
///
/// A PulseAudio host opens a client connection whose reader thread (inside the
/// `pulseaudio` crate) only notices it was dropped at the next message from the server. A
/// stream's teardown brings one, but after listing devices none comes, so a fresh host per
/// list (the lobby lists on every refresh) would leave a sleeping thread behind each time.
/// Streams keep their own hosts: opening two on one shared client fails here.
fn listing_host() -> Result<Arc<ChosenHost>, AudioError> {
    static PULSE: Mutex<Option<Arc<ChosenHost>>> = Mutex::new(None);
    let mut kept = PULSE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(chosen) = kept.as_ref() {
        return Ok(Arc::clone(chosen));
    }
    let chosen = Arc::new(host()?);
    // The fallback is not kept: PulseAudio may be reachable by the next call.
    if cfg!(target_os = "linux") && chosen.pulse_problem.is_none() {
        *kept = Some(Arc::clone(&chosen));
    }
    Ok(chosen)
}

/// Direction of a device, for lookups and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Microphone,
    Speaker,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Microphone => "microphone",
            Kind::Speaker => "speaker",
        }
    }
}

/// The default device of `kind`, or the one whose id or name is `wanted`.
pub(crate) fn find(
    chosen: &ChosenHost,
    kind: Kind,
    wanted: Option<&str>,
) -> Result<cpal::Device, AudioError> {
    let host = &chosen.host;
    let Some(wanted) = wanted else {
        let default = match kind {
            Kind::Microphone => host.default_input_device(),
            Kind::Speaker => host.default_output_device(),
        };
        return default.ok_or_else(|| match &chosen.pulse_problem {
            Some(_) => no_sound_system(chosen, "no default device"),
            None => AudioError::NoDevice { kind: kind.label() },
        });
    };
    let devices = match kind {
        Kind::Microphone => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        Kind::Speaker => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    }
    .map_err(|e| no_sound_system(chosen, &e.to_string()))?;
    devices
        .into_iter()
        .find(|d| device_id(d).as_deref() == Some(wanted) || device_name(d) == wanted)
        .ok_or_else(|| AudioError::DeviceNotFound {
            kind: kind.label(),
            name: wanted.to_owned(),
        })
}

/// The error for "nothing answered", mentioning PulseAudio's problem when it had one.
/// The error for a device stream that would not open: when PulseAudio was unreachable that,
/// not the fallback device's complaint, is what the person needs to hear.
pub(crate) fn stream_error(
    chosen: &ChosenHost,
    kind: &'static str,
    name: &str,
    detail: String,
) -> AudioError {
    if chosen.pulse_problem.is_some() {
        no_sound_system(chosen, &detail)
    } else {
        AudioError::Stream {
            kind,
            name: name.to_owned(),
            detail,
        }
    }
}

pub(crate) fn no_sound_system(chosen: &ChosenHost, detail: &str) -> AudioError {
    let detail = match &chosen.pulse_problem {
        Some(pulse) => format!("PulseAudio: {pulse}; fallback: {detail}"),
        None => detail.to_owned(),
    };
    AudioError::NoSoundSystem { detail }
}

/// The stable id of a device (without the host prefix).
pub(crate) fn device_id(device: &cpal::Device) -> Option<String> {
    device.id().ok().map(|id| id.id().to_string())
}

/// A device's human-readable name.
pub(crate) fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .unwrap_or_else(|_| "unknown device".to_owned())
}

/// The device's default format with 20 ms buffers where the device allows it. Left at its
/// default, PulseAudio buffers up to two seconds of playback, which is no use in a call.
pub(crate) fn low_latency_config(supported: &cpal::SupportedStreamConfig) -> cpal::StreamConfig {
    let mut config: cpal::StreamConfig = supported.config();
    let frames = supported.sample_rate() / 50;
    if let cpal::SupportedBufferSize::Range { min, max } = supported.buffer_size()
        && (*min..=*max).contains(&frames)
    {
        config.buffer_size = cpal::BufferSize::Fixed(frames);
    }
    config
}
