//! Where the capture/encode pipelines hand in what they encode, and learn what to encode.
//! The call implements it (`engine::MediaInput`); one frame of video goes in as one
//! encoding per layer someone receives, then [`MediaOutlet::end_video_frame`].

use bytes::Bytes;

use crate::media::DeviceKind;
use crate::media::video::{LayerOrder, LayerSpec};

/// The call as the outgoing pipelines see it. Every method is cheap and never blocks: it is
/// called from capture threads for every frame.
pub trait MediaOutlet: Clone + Send + Sync + 'static {
    /// Whether the camera is on; when off, capture goes on (the self-view) but nothing is
    /// encoded.
    fn video_on(&self) -> bool;
    /// Whether the microphone is on.
    fn audio_on(&self) -> bool;
    /// Peers our video goes to; none (the lobby's self-preview) means nothing to encode.
    fn video_peers(&self) -> usize;
    /// Declares the layers the video encoder makes, smallest first (see
    /// [`crate::media::video::ladder`]).
    fn set_video_layers(&self, layers: &[LayerSpec]);
    /// What to encode for the next captured frame, one order per declared layer.
    fn video_orders(&self) -> Vec<LayerOrder>;
    /// `layer`'s encoding (an Annex-B access unit) of the current frame.
    fn send_video_layer(&self, layer: usize, access_unit: &Bytes, keyframe: bool);
    /// Ends the current frame, which lasted `ticks` of the 90 kHz clock; `sent`: something
    /// of it was encoded and handed in.
    fn end_video_frame(&self, ticks: u32, sent: bool);
    /// A frame not encoded (camera off, nobody to send to) that lasted `ticks`.
    fn skip_video(&self, ticks: u32);
    /// One 20 ms Opus packet.
    fn send_audio(&self, packet: &Bytes);
    /// A 20 ms audio frame not encoded (muted).
    fn skip_audio(&self);
    /// The loss (percent) the Opus encoder should plan in-band FEC for.
    fn expected_audio_loss(&self) -> u32;
    /// A source stopped by itself (camera unplugged, microphone stream killed).
    fn device_failed(&self, kind: DeviceKind, message: String);
    /// Whether we share our screen; when not, the share's capture goes on unencoded.
    fn screen_on(&self) -> bool {
        false
    }
    /// Peers the share goes to; none means nothing to encode.
    fn screen_peers(&self) -> usize {
        0
    }
    /// What to encode for the next screen frame (bitrate, keyframe).
    fn screen_order(&self) -> LayerOrder {
        LayerOrder {
            active: false,
            bitrate_bps: 0,
            keyframe: false,
        }
    }
    /// One encoded screen frame (Annex-B) lasting `ticks` of the 90 kHz clock.
    fn send_screen(&self, _access_unit: &Bytes, _ticks: u32) {}
    /// A screen frame not encoded that lasted `ticks`.
    fn skip_screen(&self, _ticks: u32) {}
}
