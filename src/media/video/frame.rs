//! The owned I420 picture that every video stage passes along.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::VideoError;

/// An owned I420 (YUV 4:2:0, 8 bit, BT.601 limited range) picture with tightly packed planes.
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: u32,
    height: u32,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
    timestamp: FrameTime,
}

/// When a frame came to be: captured (sources) or decoded (decoder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTime {
    /// Wall-clock time in Unix milliseconds; comparable across machines.
    pub unix_ms: u64,
    /// Monotonic time of this process; for local pacing and latency.
    pub instant: Instant,
}

impl FrameTime {
    /// The current time.
    pub fn now() -> Self {
        Self {
            unix_ms: unix_now_ms(),
            instant: Instant::now(),
        }
    }
}

/// The current wall-clock time in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl I420Frame {
    /// Builds a frame from tightly packed planes; dimensions must be even and non-zero.
    pub fn new(
        width: u32,
        height: u32,
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
        timestamp: FrameTime,
    ) -> Result<Self, VideoError> {
        let (luma, chroma) = plane_sizes(width, height)?;
        if y.len() != luma || u.len() != chroma || v.len() != chroma {
            return Err(VideoError::PlaneSize {
                width,
                height,
                y: y.len(),
                u: u.len(),
                v: v.len(),
            });
        }
        Ok(Self {
            width,
            height,
            y,
            u,
            v,
            timestamp,
        })
    }

    /// A uniform frame of the given luma and chroma values.
    pub fn filled(
        width: u32,
        height: u32,
        (y, u, v): (u8, u8, u8),
        timestamp: FrameTime,
    ) -> Result<Self, VideoError> {
        let (luma, chroma) = plane_sizes(width, height)?;
        Self::new(
            width,
            height,
            vec![y; luma],
            vec![u; chroma],
            vec![v; chroma],
            timestamp,
        )
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Luma plane, `width * height` bytes, row stride `width`.
    pub fn y(&self) -> &[u8] {
        &self.y
    }

    /// Cb plane, `width/2 * height/2` bytes, row stride `width/2`.
    pub fn u(&self) -> &[u8] {
        &self.u
    }

    /// Cr plane, `width/2 * height/2` bytes, row stride `width/2`.
    pub fn v(&self) -> &[u8] {
        &self.v
    }

    /// All three planes, mutable, for producers that draw into a frame.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        (&mut self.y, &mut self.u, &mut self.v)
    }

    /// When this frame was captured (or decoded, for decoder output).
    pub fn timestamp(&self) -> FrameTime {
        self.timestamp
    }

    /// Replaces the timestamp, e.g. with the capture time carried alongside the stream.
    pub fn set_timestamp(&mut self, timestamp: FrameTime) {
        self.timestamp = timestamp;
    }
}

impl std::fmt::Debug for I420Frame {
    // Planes are hundreds of kilobytes: never dump them into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

/// Byte sizes of the luma and of each chroma plane, after validating the dimensions.
pub(crate) fn plane_sizes(width: u32, height: u32) -> Result<(usize, usize), VideoError> {
    // 4:2:0 halves both axes, and H.264 macroblocks want even sizes; 8192 keeps sizes sane.
    let valid = |d: u32| d > 0 && d.is_multiple_of(2) && d <= 8192;
    if !valid(width) || !valid(height) {
        return Err(VideoError::InvalidDimensions { width, height });
    }
    let luma = width as usize * height as usize;
    Ok((luma, luma / 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_odd_or_zero_dimensions() {
        for (w, h) in [(641, 360), (640, 361), (0, 360), (640, 0)] {
            let err = I420Frame::filled(w, h, (16, 128, 128), FrameTime::now()).unwrap_err();
            assert!(
                matches!(err, VideoError::InvalidDimensions { .. }),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn rejects_wrong_plane_sizes() {
        let err =
            I420Frame::new(4, 2, vec![0; 8], vec![0; 2], vec![0; 1], FrameTime::now()).unwrap_err();
        assert!(matches!(err, VideoError::PlaneSize { .. }));
        assert!(I420Frame::new(4, 2, vec![0; 8], vec![0; 2], vec![0; 2], FrameTime::now()).is_ok());
    }
}
