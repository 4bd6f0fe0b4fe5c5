//! Spatial layers: the sizes one captured frame is encoded at, each once, so every peer can
//! be sent the largest its link carries without an encoder per peer.
//!
//! The ladder halves the source until a picture would be narrower than 320 pixels, at most
//! three rungs: 640x360 gives 320x180 and 640x360; 1280x720 adds 1280x720. Halving by two
//! exactly keeps the scaler a 2x2 average (no resampling library needed for it) and keeps
//! the test pattern's time band readable at every rung: its cells shrink from 16 to 8
//! pixels, still above the reader's minimum.

use super::VideoError;
use super::frame::I420Frame;

/// Most rungs a ladder has.
pub const MAX_LAYERS: usize = 3;
/// The narrowest layer worth sending (a legible face in a small tile).
const MIN_WIDTH: u32 = 320;

/// One rung: a picture size and the bitrates it is sent at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Below this, H.264 at 30 fps turns to mush at this size: send a smaller layer.
    pub min_bps: u32,
    /// Above this, more bits stop improving the picture at this size.
    pub max_bps: u32,
}

/// What the encoder should do for one layer on the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOrder {
    /// Someone receives (or is about to receive) this layer: encode it.
    pub active: bool,
    /// Target bitrate, bits per second.
    pub bitrate_bps: u32,
    /// Make this layer's next frame a keyframe.
    pub keyframe: bool,
}

impl LayerSpec {
    /// A layer of this size, with bitrates scaled from its pixel count: 0.87 bit per pixel
    /// per second at the least (50 kbit/s at 320x180, 200 at 640x360, 800 at 1280x720) and
    /// 4.3 at the most (250 kbit/s, 1 Mbit/s, 4 Mbit/s).
    pub fn sized(width: u32, height: u32) -> Self {
        let pixels = f64::from(width) * f64::from(height);
        Self {
            width,
            height,
            min_bps: (pixels * 0.87) as u32,
            max_bps: (pixels * 4.3) as u32,
        }
    }

    /// `640x360`.
    pub fn name(&self) -> String {
        format!("{}x{}", self.width, self.height)
    }
}

/// The layers for a source of this size, smallest first.
pub fn ladder(width: u32, height: u32) -> Vec<LayerSpec> {
    let mut sizes = vec![(width, height)];
    while sizes.len() < MAX_LAYERS {
        let (w, h) = sizes[sizes.len() - 1];
        let (hw, hh) = ((w / 2) & !1, (h / 2) & !1);
        if hw < MIN_WIDTH || hh == 0 || w % 2 != 0 || h % 2 != 0 {
            break;
        }
        sizes.push((hw, hh));
    }
    let mut layers: Vec<LayerSpec> = sizes
        .into_iter()
        .rev()
        .map(|(w, h)| LayerSpec::sized(w, h))
        .collect();
    // The smallest layer is the last resort before pausing video: blocky but moving beats
    // frozen, so it may go down to 0.5 bit per pixel per second (29 kbit/s at 320x180).
    if let Some(smallest) = layers.first_mut() {
        smallest.min_bps = (f64::from(smallest.width) * f64::from(smallest.height) * 0.5) as u32;
    }
    layers
}

/// Averages 2x2 blocks of one plane (`w` x `h`, both even) into `out`.
fn halve_plane(src: &[u8], w: usize, h: usize, out: &mut Vec<u8>) {
    let (ow, oh) = (w / 2, h / 2);
    out.clear();
    out.reserve(ow * oh);
    for y in 0..oh {
        let top = &src[2 * y * w..2 * y * w + w];
        let bottom = &src[(2 * y + 1) * w..(2 * y + 1) * w + w];
        for x in 0..ow {
            let sum = u16::from(top[2 * x])
                + u16::from(top[2 * x + 1])
                + u16::from(bottom[2 * x])
                + u16::from(bottom[2 * x + 1]);
            out.push(((sum + 2) / 4) as u8);
        }
    }
}

/// The frame at half its width and height (a 2x2 average), keeping its capture time.
/// Needs a width and height divisible by four, so the chroma planes halve evenly too.
pub fn half(frame: &I420Frame) -> Result<I420Frame, VideoError> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    if w % 4 != 0 || h % 4 != 0 {
        return Err(VideoError::Encoder(format!(
            "cannot halve a {w}x{h} frame evenly"
        )));
    }
    let (mut y, mut u, mut v) = (Vec::new(), Vec::new(), Vec::new());
    halve_plane(frame.y(), w, h, &mut y);
    halve_plane(frame.u(), w / 2, h / 2, &mut u);
    halve_plane(frame.v(), w / 2, h / 2, &mut v);
    I420Frame::new(
        frame.width() / 2,
        frame.height() / 2,
        y,
        u,
        v,
        frame.timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::video::frame::FrameTime;
    use crate::media::video::{TestPattern, read_time_band};

    #[test]
    fn ladders_halve_down_to_320_wide() {
        let names = |w, h| ladder(w, h).iter().map(LayerSpec::name).collect::<Vec<_>>();
        assert_eq!(names(640, 360), ["320x180", "640x360"]);
        assert_eq!(names(1280, 720), ["320x180", "640x360", "1280x720"]);
        assert_eq!(names(1920, 1080), ["480x270", "960x540", "1920x1080"]);
        assert_eq!(names(320, 240), ["320x240"]);
        let l = ladder(640, 360);
        assert!(l[0].min_bps < l[1].min_bps && l[0].max_bps < l[1].max_bps);
        assert_eq!((l[0].min_bps, l[1].min_bps), (28_800, 200_448));
    }

    #[test]
    fn halving_averages_blocks_and_keeps_the_time_band_readable() {
        let f = I420Frame::filled(8, 4, (10, 20, 30), FrameTime::now()).unwrap();
        let h = half(&f).unwrap();
        assert_eq!((h.width(), h.height()), (4, 2));
        assert!(h.y().iter().all(|&p| p == 10) && h.u().iter().all(|&p| p == 20));
        assert!(half(&I420Frame::filled(6, 4, (0, 0, 0), FrameTime::now()).unwrap()).is_err());

        let mut pattern = TestPattern::new("A", 640, 360).unwrap();
        let frame = pattern.render(FrameTime::now());
        let sent = read_time_band(&frame).expect("full size band");
        assert_eq!(read_time_band(&half(&frame).unwrap()), Some(sent));
    }
}
