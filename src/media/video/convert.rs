//! Colour conversions through the `yuv` crate (SIMD): I420 to RGBA for display, camera input to I420.
//!
//! Everything here uses BT.601 limited range: it is what openh264 assumes when the stream
//! carries no colour description, so encoder input, decoder output and display agree.

use yuv::{
    BufferStoreMut, YuvConversionMode, YuvPackedImage, YuvPlanarImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

use super::VideoError;
use super::frame::{FrameTime, I420Frame, plane_sizes};

const RANGE: YuvRange = YuvRange::Limited;
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;

/// An 8-bit RGBA picture, rows packed (`width * 4` bytes each), ready for a GPU texture.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbaImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes, alpha always 255.
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for RgbaImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RgbaImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// Converts a frame to RGBA for display.
pub fn i420_to_rgba(frame: &I420Frame) -> Result<RgbaImage, VideoError> {
    let mut pixels = Vec::new();
    i420_to_rgba_into(frame, &mut pixels)?;
    Ok(RgbaImage {
        width: frame.width(),
        height: frame.height(),
        pixels,
    })
}

/// Converts a frame to RGBA into `out`, reusing its allocation (resized to fit).
pub fn i420_to_rgba_into(frame: &I420Frame, out: &mut Vec<u8>) -> Result<(), VideoError> {
    let (w, h) = (frame.width(), frame.height());
    out.resize(w as usize * h as usize * 4, 0);
    let planar = YuvPlanarImage {
        y_plane: frame.y(),
        y_stride: w,
        u_plane: frame.u(),
        u_stride: w / 2,
        v_plane: frame.v(),
        v_stride: w / 2,
        width: w,
        height: h,
    };
    yuv::yuv420_to_rgba(&planar, out, w * 4, RANGE, MATRIX).map_err(conversion)
}

/// Converts packed RGB (3 bytes a pixel, rows packed) to an I420 frame.
pub fn rgb_to_i420(
    width: u32,
    height: u32,
    rgb: &[u8],
    timestamp: FrameTime,
) -> Result<I420Frame, VideoError> {
    let mut frame = I420Frame::filled(width, height, (0, 128, 128), timestamp)?;
    let (y, u, v) = frame.planes_mut();
    let mut planar = planar_mut(width, height, y, u, v);
    yuv::rgb_to_yuv420(
        &mut planar,
        rgb,
        width * 3,
        RANGE,
        MATRIX,
        YuvConversionMode::Balanced,
    )
    .map_err(conversion)?;
    Ok(frame)
}

/// Converts BGRA or BGRX (X11's 32-bit pixels; the fourth byte is ignored), `stride` bytes
/// a row, to an I420 frame.
pub fn bgra_to_i420(
    width: u32,
    height: u32,
    bgra: &[u8],
    stride: u32,
    timestamp: FrameTime,
) -> Result<I420Frame, VideoError> {
    let mut frame = I420Frame::filled(width, height, (0, 128, 128), timestamp)?;
    let (y, u, v) = frame.planes_mut();
    let mut planar = planar_mut(width, height, y, u, v);
    yuv::bgra_to_yuv420(
        &mut planar,
        bgra,
        stride,
        RANGE,
        MATRIX,
        YuvConversionMode::Balanced,
    )
    .map_err(conversion)?;
    Ok(frame)
}

/// Converts packed YUYV 4:2:2 (the common raw webcam format) to an I420 frame.
pub fn yuyv_to_i420(
    width: u32,
    height: u32,
    yuyv: &[u8],
    timestamp: FrameTime,
) -> Result<I420Frame, VideoError> {
    plane_sizes(width, height)?;
    let mut frame = I420Frame::filled(width, height, (0, 128, 128), timestamp)?;
    let (y, u, v) = frame.planes_mut();
    let mut planar = planar_mut(width, height, y, u, v);
    let packed = YuvPackedImage {
        yuy: yuyv,
        yuy_stride: width * 2,
        width,
        height,
    };
    yuv::yuyv422_to_yuv420(&mut planar, &packed).map_err(conversion)?;
    Ok(frame)
}

fn planar_mut<'a>(
    width: u32,
    height: u32,
    y: &'a mut [u8],
    u: &'a mut [u8],
    v: &'a mut [u8],
) -> YuvPlanarImageMut<'a, u8> {
    YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(y),
        y_stride: width,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: width / 2,
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: width / 2,
        width,
        height,
    }
}

fn conversion(e: yuv::YuvError) -> VideoError {
    VideoError::Conversion(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_range_grey_levels_map_to_full_range_rgb() {
        for (luma, expected) in [(16u8, 0u8), (235, 255), (126, 128)] {
            let frame = I420Frame::filled(16, 8, (luma, 128, 128), FrameTime::now()).unwrap();
            let rgba = i420_to_rgba(&frame).unwrap();
            assert_eq!(rgba.pixels.len(), 16 * 8 * 4);
            for px in rgba.pixels.chunks(4) {
                for &c in &px[..3] {
                    assert!(
                        c.abs_diff(expected) <= 2,
                        "Y {luma} gave {c}, want {expected}"
                    );
                }
                assert_eq!(px[3], 255);
            }
        }
    }

    #[test]
    fn rgb_round_trip_keeps_colours() {
        let rgb: Vec<u8> = [200u8, 30, 40].repeat(16 * 8);
        let frame = rgb_to_i420(16, 8, &rgb, FrameTime::now()).unwrap();
        let back = i420_to_rgba(&frame).unwrap();
        for px in back.pixels.chunks(4) {
            assert!(px[0].abs_diff(200) <= 4 && px[1].abs_diff(30) <= 4 && px[2].abs_diff(40) <= 4);
        }
    }

    #[test]
    fn bgra_with_padded_rows_converts_and_short_input_is_refused() {
        // 4x2 pixels of pure red in BGRX, rows padded to 20 bytes with garbage.
        let mut bgra = Vec::new();
        for _ in 0..2 {
            bgra.extend([0u8, 0, 255, 0].repeat(4));
            bgra.extend([77u8; 4]);
        }
        let frame = bgra_to_i420(4, 2, &bgra, 20, FrameTime::now()).unwrap();
        let back = i420_to_rgba(&frame).unwrap();
        for px in back.pixels.chunks(4) {
            assert!(px[0] >= 250 && px[1] <= 5 && px[2] <= 5, "{px:?}");
        }
        assert!(bgra_to_i420(4, 2, &bgra[..30], 20, FrameTime::now()).is_err());
    }

    #[test]
    fn yuyv_converts_and_rejects_short_input() {
        let yuyv: Vec<u8> = [100u8, 90, 100, 160].repeat(8 * 8);
        let frame = yuyv_to_i420(16, 8, &yuyv, FrameTime::now()).unwrap();
        assert!(frame.y().iter().all(|&p| p == 100));
        assert!(frame.u().iter().all(|&p| p == 90));
        assert!(frame.v().iter().all(|&p| p == 160));
        assert!(yuyv_to_i420(16, 8, &yuyv[..10], FrameTime::now()).is_err());
    }
}
