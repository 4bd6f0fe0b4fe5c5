//! Downscaling I420 frames to fit a bound, for screens larger than what we send and for
//! picker thumbnails.
//!
//! An area average (box filter): every output pixel is the mean of the source pixels it
//! covers. For the shrink factors screens need (2560 -> 1920, 3840 -> 1920, 1920 -> 240) it
//! keeps thin text strokes as grey instead of dropping them, which point sampling would;
//! the layers' exact 2x2 halving is the special case of a factor of two.

use super::VideoError;
use super::frame::{I420Frame, plane_sizes};

/// The size a `width`×`height` picture gets to fit within `max_width`×`max_height`: aspect
/// kept, never enlarged, both sides even and at least 2.
pub fn fit_within(width: u32, height: u32, max_width: u32, max_height: u32) -> (u32, u32) {
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let (mw, mh) = (u64::from(max_width.max(2)), u64::from(max_height.max(2)));
    let (fw, fh) = if w <= mw && h <= mh {
        (w, h)
    } else if w * mh >= h * mw {
        // Width is the limiting side.
        (mw, (h * mw + w / 2) / w)
    } else {
        ((w * mh + h / 2) / h, mh)
    };
    let even = |d: u64| (u32::try_from(d).unwrap_or(u32::MAX) & !1).max(2);
    (even(fw), even(fh))
}

/// Shrinks `frame` to `width`×`height` (each no larger than the frame's), keeping its timestamp.
pub fn downscale(frame: &I420Frame, width: u32, height: u32) -> Result<I420Frame, VideoError> {
    let (luma, chroma) = plane_sizes(width, height)?;
    if width > frame.width() || height > frame.height() {
        return Err(VideoError::InvalidDimensions { width, height });
    }
    if (width, height) == (frame.width(), frame.height()) {
        return Ok(frame.clone());
    }
    let (sw, sh) = (frame.width() as usize, frame.height() as usize);
    let (dw, dh) = (width as usize, height as usize);
    let mut y = vec![0; luma];
    let mut u = vec![0; chroma];
    let mut v = vec![0; chroma];
    scale_plane(frame.y(), (sw, sh), &mut y, (dw, dh));
    scale_plane(frame.u(), (sw / 2, sh / 2), &mut u, (dw / 2, dh / 2));
    scale_plane(frame.v(), (sw / 2, sh / 2), &mut v, (dw / 2, dh / 2));
    I420Frame::new(width, height, y, u, v, frame.timestamp())
}

/// Source index ranges each output index averages over: `[i*s/d, ceil((i+1)*s/d))`.
fn spans(src: usize, dst: usize) -> Vec<(usize, usize)> {
    (0..dst)
        .map(|i| {
            let start = i * src / dst;
            let end = ((i + 1) * src).div_ceil(dst).clamp(start + 1, src);
            (start, end)
        })
        .collect()
}

/// Box-filters one plane (rows packed) from `sw`×`sh` into `dw`×`dh` (each no larger).
fn scale_plane(src: &[u8], (sw, sh): (usize, usize), dst: &mut [u8], (dw, dh): (usize, usize)) {
    let cols = spans(sw, dw);
    let rows = spans(sh, dh);
    // Column sums of the current output row's source rows, reused across its pixels.
    let mut column_sums = vec![0u32; sw];
    for (oy, &(y0, y1)) in rows.iter().enumerate() {
        column_sums.fill(0);
        for row in src.chunks_exact(sw).skip(y0).take(y1 - y0) {
            for (sum, &p) in column_sums.iter_mut().zip(row) {
                *sum += u32::from(p);
            }
        }
        let out = &mut dst[oy * dw..(oy + 1) * dw];
        for (o, &(x0, x1)) in out.iter_mut().zip(&cols) {
            let count = ((x1 - x0) * (y1 - y0)) as u32;
            let sum: u32 = column_sums[x0..x1].iter().sum();
            *o = ((sum + count / 2) / count) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::video::FrameTime;

    #[test]
    fn fit_keeps_aspect_and_evenness() {
        assert_eq!(fit_within(1920, 1080, 1920, 1080), (1920, 1080));
        assert_eq!(fit_within(1280, 720, 1920, 1080), (1280, 720));
        assert_eq!(fit_within(2560, 1440, 1920, 1080), (1920, 1080));
        assert_eq!(fit_within(3840, 2160, 1920, 1080), (1920, 1080));
        // Ultra-wide: width limits.
        assert_eq!(fit_within(5120, 1440, 1920, 1080), (1920, 540));
        // Portrait: height limits.
        assert_eq!(fit_within(1080, 1920, 1920, 1080), (608, 1080));
        // Odd sizes come out even; tiny ones at least 2.
        assert_eq!(fit_within(801, 601, 1920, 1080), (800, 600));
        assert_eq!(fit_within(1, 1, 240, 240), (2, 2));
        assert_eq!(fit_within(1920, 1080, 240, 240), (240, 134));
    }

    #[test]
    fn halving_averages_two_by_two_blocks() {
        let big = I420Frame::new(
            4,
            4,
            vec![0, 4, 100, 200, 8, 12, 50, 50, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![10, 30, 20, 40],
            vec![1, 1, 1, 1],
            FrameTime::now(),
        )
        .unwrap();
        let out = downscale(&big, 2, 2).unwrap();
        assert_eq!(out.y(), &[6, 100, 0, 0]);
        assert_eq!(out.u(), &[25]);
        assert_eq!(out.v(), &[1]);
    }

    #[test]
    fn non_integer_factors_keep_flat_areas_flat_and_edges_between() {
        // Left half black, right half white, shrunk by 3/4.
        let (w, h) = (16u32, 8u32);
        let y: Vec<u8> = (0..w * h)
            .map(|i| if i % w < w / 2 { 16 } else { 235 })
            .collect();
        let frame =
            I420Frame::new(w, h, y, vec![128; 32], vec![128; 32], FrameTime::now()).unwrap();
        let out = downscale(&frame, 12, 6).unwrap();
        for row in out.y().chunks(12) {
            assert!(row[..5].iter().all(|&p| p == 16), "{row:?}");
            assert!(row[7..].iter().all(|&p| p == 235), "{row:?}");
            assert!(row[5..7].iter().all(|&p| (16..=235).contains(&p)));
        }
        assert!(out.u().iter().chain(out.v()).all(|&p| p == 128));
    }

    #[test]
    fn same_size_is_a_copy_and_larger_is_refused() {
        let frame = I420Frame::filled(8, 4, (50, 60, 70), FrameTime::now()).unwrap();
        assert_eq!(downscale(&frame, 8, 4).unwrap(), frame);
        assert!(downscale(&frame, 10, 4).is_err());
        assert!(downscale(&frame, 7, 4).is_err());
    }
}
