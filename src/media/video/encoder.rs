//! H.264 encoder (openh264): constrained baseline, Annex-B, live bitrate and keyframe control.
//!
//! One encoder serves every peer of a call (the engine fans the bytes out), so it is `Send`
//! and keyframe requests from any peer simply force the next frame to be an IDR.

use std::os::raw::c_int;
use std::time::Instant;

use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, Profile, QpRange, RateControlMode,
    UsageType,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};
use tracing::{debug, warn};

use super::VideoError;
use super::frame::{FrameTime, I420Frame};

/// Lowest accepted target bitrate; below this openh264 rejects or starves every frame.
pub const MIN_BITRATE_BPS: u32 = 30_000;
/// Highest accepted target bitrate; far above anything a mesh call can send.
pub const MAX_BITRATE_BPS: u32 = 20_000_000;

/// Rate settings, changeable while encoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSettings {
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Expected input frame rate, which the rate control budgets bits by.
    pub frame_rate: f32,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            bitrate_bps: 800_000,
            frame_rate: 30.0,
        }
    }
}

impl EncoderSettings {
    fn validate(self) -> Result<Self, VideoError> {
        if !(MIN_BITRATE_BPS..=MAX_BITRATE_BPS).contains(&self.bitrate_bps) {
            return Err(VideoError::Encoder(format!(
                "bitrate {} bps is outside {MIN_BITRATE_BPS}..={MAX_BITRATE_BPS}",
                self.bitrate_bps
            )));
        }
        if !(1.0..=120.0).contains(&self.frame_rate) {
            return Err(VideoError::Encoder(format!(
                "frame rate {} is outside 1..=120",
                self.frame_rate
            )));
        }
        Ok(self)
    }
}

/// One encoded access unit: Annex-B NAL units with start codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Annex-B bytes; keyframes carry SPS and PPS in front of the IDR slice.
    pub data: Vec<u8>,
    /// True for an IDR picture, which a decoder can start from.
    pub keyframe: bool,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Capture time of the source frame.
    pub timestamp: FrameTime,
}

/// An H.264 encoder that keeps its identity across resolution and rate changes.
pub struct H264Encoder {
    settings: EncoderSettings,
    inner: Option<Inner>,
    keyframe_requested: bool,
    /// Origin of the monotonic timestamps openh264 receives.
    epoch: Instant,
    /// Camera or screen content: openh264 tunes motion search and rate control for each.
    usage: UsageType,
}

struct Inner {
    encoder: Encoder,
    width: u32,
    height: u32,
    /// openh264 initialises on the first encode; options and IDR requests need that done.
    started: bool,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("settings", &self.settings)
            .field("size", &self.inner.as_ref().map(|i| (i.width, i.height)))
            .finish_non_exhaustive()
    }
}

impl H264Encoder {
    /// Creates an encoder; the codec itself starts with the first frame, at that frame's size.
    pub fn new(settings: EncoderSettings) -> Result<Self, VideoError> {
        Self::with_usage(settings, UsageType::CameraVideoRealTime)
    }

    /// An encoder tuned for screen content (text, flat areas, few frames a second).
    pub fn for_screen(settings: EncoderSettings) -> Result<Self, VideoError> {
        Self::with_usage(settings, UsageType::ScreenContentRealTime)
    }

    fn with_usage(settings: EncoderSettings, usage: UsageType) -> Result<Self, VideoError> {
        Ok(Self {
            settings: settings.validate()?,
            inner: None,
            keyframe_requested: false,
            epoch: Instant::now(),
            usage,
        })
    }

    /// Current rate settings.
    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Encodes one frame; None when the rate control skipped it to stay within budget.
    pub fn encode(&mut self, frame: &I420Frame) -> Result<Option<EncodedFrame>, VideoError> {
        let (width, height) = (frame.width(), frame.height());
        if self
            .inner
            .as_ref()
            .is_none_or(|i| (i.width, i.height) != (width, height))
        {
            // A new codec instance starts with an IDR carrying the new SPS/PPS, so a size
            // change needs no separate keyframe request.
            debug!(width, height, "starting H.264 encoder");
            self.inner = Some(Inner {
                encoder: new_encoder(self.settings, self.usage)?,
                width,
                height,
                started: false,
            });
            self.keyframe_requested = false;
        }
        let inner = self
            .inner
            .as_mut()
            .expect("inner encoder was set just above");
        if std::mem::take(&mut self.keyframe_requested) && inner.started {
            inner.encoder.force_intra_frame();
        }
        let millis = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX / 2);
        let stream = inner
            .encoder
            .encode_at(&FrameSource(frame), Timestamp::from_millis(millis))
            .map_err(|e| VideoError::Encoder(e.to_string()))?;
        inner.started = true;
        let frame_type = stream.frame_type();
        if matches!(frame_type, FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        let data = stream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(EncodedFrame {
            data,
            keyframe: frame_type == FrameType::IDR,
            width,
            height,
            timestamp: frame.timestamp(),
        }))
    }

    /// Makes the next encoded frame an IDR (e.g. after a peer's PLI or a new peer joining).
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Changes the target bitrate; takes effect from the next frame, without a keyframe.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), VideoError> {
        let new = EncoderSettings {
            bitrate_bps,
            ..self.settings
        }
        .validate()?;
        if let Some(inner) = self.inner.as_mut().filter(|i| i.started) {
            live::set_bitrate(&mut inner.encoder, self.settings.bitrate_bps, bitrate_bps)?;
        }
        self.settings = new;
        Ok(())
    }

    /// Changes the expected frame rate; takes effect from the next frame.
    pub fn set_frame_rate(&mut self, frame_rate: f32) -> Result<(), VideoError> {
        let new = EncoderSettings {
            frame_rate,
            ..self.settings
        }
        .validate()?;
        if let Some(inner) = self.inner.as_mut().filter(|i| i.started) {
            live::set_frame_rate(&mut inner.encoder, frame_rate)?;
        }
        self.settings = new;
        Ok(())
    }
}

/// The least quantizer for screen content (see `new_encoder`).
const SCREEN_MIN_QP: u8 = 26;

fn new_encoder(settings: EncoderSettings, usage: UsageType) -> Result<Encoder, VideoError> {
    let config = EncoderConfig::new()
        .usage_type(usage)
        // openh264's baseline sets constraint_set1, i.e. constrained baseline (42e0xx),
        // which every WebRTC endpoint accepts.
        .profile(Profile::Baseline)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(settings.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(settings.frame_rate))
        // Skipping a frame beats blowing the budget on a congested link.
        .skip_frames(true)
        // One thread: output is deterministic and the other core stays free for decoding.
        .num_threads(1);
    // A screen's first IDR at openh264's own starting quantizer was 249 KB at 1080p (the
    // test screen's fine text), seconds of a link still climbing from its cautious start;
    // this floor keeps it a fraction of that while small text stays legible.
    let config = if matches!(usage, UsageType::ScreenContentRealTime) {
        config.qp(QpRange::new(SCREEN_MIN_QP, 51))
    } else {
        config
    };
    Encoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| VideoError::Encoder(e.to_string()))
}

/// Lets openh264 read an [`I420Frame`] in place, without copying.
struct FrameSource<'a>(&'a I420Frame);

impl YUVSource for FrameSource<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width() as usize, self.0.height() as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let w = self.0.width() as usize;
        (w, w / 2, w / 2)
    }

    fn y(&self) -> &[u8] {
        self.0.y()
    }

    fn u(&self) -> &[u8] {
        self.0.u()
    }

    fn v(&self) -> &[u8] {
        self.0.v()
    }
}

/// Live rate changes through openh264's `SetOption`, which the safe wrapper does not expose.
///
/// The alternative, a new encoder per change, would cost an IDR each time the congestion
/// controller moves the bitrate (every second or so), so a few audited lines of FFI win.
#[allow(unsafe_code)]
mod live {
    use super::*;
    use openh264_sys2::{
        ENCODER_OPTION, ENCODER_OPTION_BITRATE, ENCODER_OPTION_FRAME_RATE,
        ENCODER_OPTION_MAX_BITRATE, SBitrateInfo, SPATIAL_LAYER_0, SPATIAL_LAYER_ALL,
    };

    pub(super) fn set_bitrate(encoder: &mut Encoder, old: u32, new: u32) -> Result<(), VideoError> {
        let bps = c_int::try_from(new).map_err(|e| VideoError::Encoder(e.to_string()))?;
        let mut target = SBitrateInfo {
            iLayer: SPATIAL_LAYER_ALL,
            iBitrate: bps,
        };
        // openh264 rejects a target above the layer's maximum, which the wrapper set equal
        // to the initial target: raise the maximum first, or lower it last.
        let mut max = SBitrateInfo {
            iLayer: SPATIAL_LAYER_0,
            iBitrate: bps,
        };
        let (first, second) = if new > old {
            (
                (ENCODER_OPTION_MAX_BITRATE, &mut max),
                (ENCODER_OPTION_BITRATE, &mut target),
            )
        } else {
            (
                (ENCODER_OPTION_BITRATE, &mut target),
                (ENCODER_OPTION_MAX_BITRATE, &mut max),
            )
        };
        set_option(encoder, first.0, std::ptr::from_mut(first.1).cast())?;
        set_option(encoder, second.0, std::ptr::from_mut(second.1).cast())?;
        debug!(old, new, "H.264 bitrate changed");
        Ok(())
    }

    pub(super) fn set_frame_rate(encoder: &mut Encoder, fps: f32) -> Result<(), VideoError> {
        let mut value = fps;
        set_option(
            encoder,
            ENCODER_OPTION_FRAME_RATE,
            std::ptr::from_mut(&mut value).cast(),
        )
    }

    fn set_option(
        encoder: &mut Encoder,
        option: ENCODER_OPTION,
        value: *mut std::ffi::c_void,
    ) -> Result<(), VideoError> {
        // SAFETY: the wrapper only relies on the picture size and data format staying as it
        // configured them; rate options touch neither. `value` points to a live, correctly
        // typed local (SBitrateInfo for the bitrate options, f32 for the frame rate) that
        // openh264 reads during the call and does not keep. Callers only pass an encoder that
        // has encoded a frame, i.e. is initialised (openh264 would refuse otherwise anyway).
        let rc = unsafe { encoder.raw_api().set_option(option, value) };
        if rc == 0 {
            Ok(())
        } else {
            warn!(option, rc, "openh264 rejected a rate option");
            Err(VideoError::Encoder(format!(
                "openh264 rejected option {option} (code {rc})"
            )))
        }
    }
}
