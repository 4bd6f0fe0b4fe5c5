//! Video: synthetic, camera and screen sources, H.264 coding and colour conversion, on plain threads.

mod access_unit;
pub mod camera;
pub mod convert;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod frame;
pub mod layers;
pub mod mailbox;
pub mod pattern;
pub mod scale;
pub mod screen;
pub mod source;

pub(crate) use access_unit::{AccessUnit, has_idr};
pub use camera::{Camera, CameraInfo, CameraRequest, list_cameras};
pub use convert::{RgbaImage, i420_to_rgba, i420_to_rgba_into};
pub use decoder::H264Decoder;
pub use encoder::{EncodedFrame, EncoderSettings, H264Encoder};
pub use error::VideoError;
pub use frame::{FrameTime, I420Frame, unix_now_ms};
pub use layers::{LayerOrder, LayerSpec, ladder};
pub use pattern::{TestPattern, read_time_band};
pub use scale::{downscale, fit_within};
pub use screen::{
    ScreenCapture, ScreenConfig, ScreenError, ScreenSource, ScreenTarget, TestScreen,
};
pub use source::{CaptureConfig, VideoCapture, VideoSource};
