//! Cameras through nokhwa: listing, opening at a sensible format, frames converted to I420.
//!
//! nokhwa's errors are logged for developers and mapped to a few plain [`VideoError`]
//! variants for people; its wording never reaches the UI.

use nokhwa::NokhwaError;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use tracing::{debug, info, warn};

use super::VideoError;
use super::convert::{rgb_to_i420, yuyv_to_i420};
use super::frame::{FrameTime, I420Frame};

/// A camera the system offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    /// Backend device index; pass it to [`Camera::open`].
    pub index: u32,
    /// Name to show people, e.g. "Integrated Webcam".
    pub name: String,
}

/// The format to aim for; the camera's closest offer is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraRequest {
    /// Wanted width in pixels.
    pub width: u32,
    /// Wanted height in pixels.
    pub height: u32,
    /// Wanted frames per second.
    pub fps: u32,
}

impl Default for CameraRequest {
    fn default() -> Self {
        Self {
            width: 640,
            height: 360,
            fps: 30,
        }
    }
}

/// Lists the cameras present now; empty when there are none or the system cannot tell.
pub fn list_cameras() -> Vec<CameraInfo> {
    ensure_initialized();
    match nokhwa::query(ApiBackend::Auto) {
        Ok(cameras) => cameras
            .iter()
            .filter_map(|c| {
                let index = c.index().as_index().ok()?;
                Some(CameraInfo {
                    index,
                    name: c.human_name(),
                })
            })
            .collect(),
        Err(e) => {
            warn!(error = %e, "listing cameras failed");
            Vec::new()
        }
    }
}

/// An open, streaming camera. Not `Send` on every platform: use it on the thread that opened it.
pub struct Camera {
    camera: nokhwa::Camera,
    format: CameraFormat,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Camera {
    /// Opens camera `index` at the offered format closest to `request`, and starts streaming.
    pub fn open(index: u32, request: CameraRequest) -> Result<Self, VideoError> {
        ensure_initialized();
        let any_format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::None);
        let mut camera = nokhwa::Camera::new(CameraIndex::Index(index), any_format)
            .map_err(|e| open_error(index, &e))?;
        match camera.compatible_camera_formats() {
            Ok(formats) => {
                if let Some(chosen) = choose_format(&formats, request) {
                    let exact =
                        RequestedFormat::new::<RgbFormat>(RequestedFormatType::Exact(chosen));
                    if let Err(e) = camera.set_camera_requset(exact) {
                        // The default format still works, just not at the preferred size.
                        warn!(error = %e, ?chosen, "camera refused the chosen format");
                    }
                }
            }
            Err(e) => warn!(error = %e, "camera did not list its formats"),
        }
        camera.open_stream().map_err(|e| open_error(index, &e))?;
        let format = camera.camera_format();
        info!(index, %format, "camera streaming");
        Ok(Self { camera, format })
    }

    /// The format the camera actually delivers.
    pub fn format(&self) -> CameraFormat {
        self.format
    }

    /// Waits for the next picture and converts it to I420, stamped with the time it arrived.
    pub fn capture(&mut self) -> Result<I420Frame, VideoError> {
        let buffer = self.camera.frame().map_err(|e| stream_error(&e))?;
        let timestamp = FrameTime::now();
        let res = buffer.resolution();
        let (width, height) = (res.width(), res.height());
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            warn!(width, height, "camera delivered an odd frame size");
            return Err(VideoError::CameraFailed);
        }
        match buffer.source_frame_format() {
            // The raw webcam format converts directly; everything else goes through RGB.
            FrameFormat::YUYV => yuyv_to_i420(width, height, buffer.buffer(), timestamp),
            _ => {
                let rgb = buffer.decode_image::<RgbFormat>().map_err(|e| {
                    warn!(error = %e, "camera frame could not be decoded");
                    VideoError::CameraFailed
                })?;
                rgb_to_i420(width, height, rgb.as_raw(), timestamp)
            }
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        if let Err(e) = self.camera.stop_stream() {
            debug!(error = %e, "stopping camera stream");
        }
    }
}

/// Picks the offered format closest to the request: nearest size first, then nearest rate,
/// then formats that need no JPEG decoding.
pub fn choose_format(formats: &[CameraFormat], request: CameraRequest) -> Option<CameraFormat> {
    formats.iter().copied().min_by_key(|f| {
        let dx = i64::from(f.width()) - i64::from(request.width);
        let dy = i64::from(f.height()) - i64::from(request.height);
        let size_distance = dx * dx + dy * dy;
        let fps_distance = (i64::from(f.frame_rate()) - i64::from(request.fps)).abs();
        let needs_decoding = f.format() == FrameFormat::MJPEG;
        (size_distance, fps_distance, needs_decoding)
    })
}

/// Maps a failure to open a camera to what a person needs to know.
fn open_error(index: u32, error: &NokhwaError) -> VideoError {
    warn!(index, error = %error, "opening camera failed");
    let text = error.to_string().to_lowercase();
    if is_busy(&text) {
        VideoError::CameraBusy
    } else if text.contains("no such file")
        || text.contains("no such device")
        || text.contains("not found")
        || text.contains("does not exist")
        || text.contains("out of range")
    {
        VideoError::CameraNotFound
    } else {
        VideoError::CameraFailed
    }
}

/// Maps a failure while streaming: a vanished device is by far the usual cause.
fn stream_error(error: &NokhwaError) -> VideoError {
    warn!(error = %error, "camera capture failed");
    let text = error.to_string().to_lowercase();
    if is_busy(&text) {
        VideoError::CameraBusy
    } else if text.contains("no such device")
        || text.contains("disconnected")
        || text.contains("no such file")
        || text.contains("broken pipe")
    {
        VideoError::CameraDisconnected
    } else {
        VideoError::CameraFailed
    }
}

fn is_busy(text: &str) -> bool {
    text.contains("busy") || text.contains("in use")
}

/// nokhwa needs a one-time permission request on macOS; other systems need nothing.
fn ensure_initialized() {
    #[cfg(target_os = "macos")]
    {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| nokhwa::nokhwa_initialize(|granted| info!(granted, "camera access")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(w: u32, h: u32, fps: u32, format: FrameFormat) -> CameraFormat {
        CameraFormat::new_from(w, h, format, fps)
    }

    #[test]
    fn prefers_nearest_size_then_rate_then_raw() {
        let offered = [
            fmt(1920, 1080, 30, FrameFormat::MJPEG),
            fmt(640, 480, 30, FrameFormat::YUYV),
            fmt(640, 360, 15, FrameFormat::YUYV),
            fmt(640, 360, 30, FrameFormat::MJPEG),
            fmt(640, 360, 30, FrameFormat::YUYV),
        ];
        let want = CameraRequest::default();
        assert_eq!(
            choose_format(&offered, want),
            Some(fmt(640, 360, 30, FrameFormat::YUYV))
        );
        let hd = CameraRequest {
            width: 1280,
            height: 720,
            fps: 30,
        };
        assert_eq!(
            choose_format(&offered[..3], hd),
            Some(fmt(640, 480, 30, FrameFormat::YUYV)),
            "no 720p offered: 640x480 is nearer than 1080p"
        );
        assert_eq!(choose_format(&[], want), None);
    }

    #[test]
    fn errors_map_to_plain_words() {
        let missing = NokhwaError::OpenDeviceError(
            "0".into(),
            "V4L2 Error: No such file or directory".into(),
        );
        assert!(matches!(
            open_error(0, &missing),
            VideoError::CameraNotFound
        ));
        let busy = NokhwaError::OpenStreamError("Device or resource busy".into());
        assert!(matches!(open_error(0, &busy), VideoError::CameraBusy));
        let gone = NokhwaError::ReadFrameError("No such device (os error 19)".into());
        assert!(matches!(
            stream_error(&gone),
            VideoError::CameraDisconnected
        ));
    }
}
