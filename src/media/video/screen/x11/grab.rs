//! One capture target read on demand: pixels (MIT-SHM or GetImage), the pointer drawn in,
//! converted to I420 and scaled down to the bound.

use tracing::{debug, warn};

use super::super::super::convert::bgra_to_i420;
use super::super::super::frame::{FrameTime, I420Frame};
use super::super::super::scale::{downscale, fit_within};
use super::super::ScreenTarget;
use super::super::cursor::blend_cursor;
use super::super::error::ScreenError;
#[cfg(unix)]
use super::shm::ShmSegment;
use super::{Area, Session};

/// How a grabber reads and sizes pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrabOptions {
    /// Draw the mouse pointer in (needs XFIXES; silently absent without it).
    pub cursor: bool,
    /// Use MIT-SHM when the server offers it; false forces plain GetImage.
    pub shm: bool,
    /// Pictures wider than this are scaled down to fit, aspect kept.
    pub max_width: u32,
    /// Pictures taller than this are scaled down to fit, aspect kept.
    pub max_height: u32,
}

impl Default for GrabOptions {
    fn default() -> Self {
        Self {
            cursor: true,
            shm: true,
            max_width: 1920,
            max_height: 1080,
        }
    }
}

/// Captured pixels before conversion: BGRX (fourth byte undefined), rows of `stride` bytes.
#[derive(Debug)]
pub struct RawScreen<'a> {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Bytes from one row to the next.
    pub stride: u32,
    /// The pixels.
    pub bgrx: &'a [u8],
}

impl RawScreen<'_> {
    /// To I420, scaled down to fit `max_width`×`max_height` (aspect kept).
    pub fn to_frame(
        &self,
        max_width: u32,
        max_height: u32,
        timestamp: FrameTime,
    ) -> Result<I420Frame, ScreenError> {
        let frame = bgra_to_i420(self.width, self.height, self.bgrx, self.stride, timestamp)?;
        let (w, h) = fit_within(self.width, self.height, max_width, max_height);
        if (w, h) == (self.width, self.height) {
            Ok(frame)
        } else {
            Ok(downscale(&frame, w, h)?)
        }
    }
}

/// Reads one screen, monitor or window of an X11 display whenever asked.
pub struct ScreenGrabber {
    session: Session,
    target: ScreenTarget,
    options: GrabOptions,
    #[cfg(unix)]
    shm: Option<ShmSegment>,
    /// Set once the server refused a segment, so we stop asking.
    shm_refused: bool,
    plain: Vec<u8>,
}

impl std::fmt::Debug for ScreenGrabber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScreenGrabber")
            .field("target", &self.target)
            .field("options", &self.options)
            .field("shm", &self.uses_shm())
            .finish_non_exhaustive()
    }
}

impl ScreenGrabber {
    /// Connects to `display` (None: `DISPLAY`); a target that does not exist fails here.
    pub fn open(
        display: Option<&str>,
        target: ScreenTarget,
        options: GrabOptions,
    ) -> Result<Self, ScreenError> {
        let session = Session::connect(display)?;
        session.area(&target)?;
        Ok(Self {
            session,
            target,
            options,
            #[cfg(unix)]
            shm: None,
            shm_refused: !options.shm,
            plain: Vec::new(),
        })
    }

    /// What this grabber reads.
    pub fn target(&self) -> &ScreenTarget {
        &self.target
    }

    /// True once pictures come through MIT-SHM rather than GetImage.
    pub fn uses_shm(&self) -> bool {
        #[cfg(unix)]
        return self.shm.is_some();
        #[cfg(not(unix))]
        return false;
    }

    /// Reads the target now, pointer drawn in; None while it cannot be seen (unmapped).
    pub fn grab_raw(&mut self) -> Result<Option<RawScreen<'_>>, ScreenError> {
        let Some(area) = self.session.area(&self.target)? else {
            return Ok(None);
        };
        let cursor = if self.options.cursor {
            self.session.cursor()
        } else {
            None
        };
        let Some(pixels) = self.read(&area)? else {
            return Ok(None);
        };
        let (w, h) = (usize::from(area.width), usize::from(area.height));
        if let Some(cursor) = cursor {
            blend_cursor(pixels, w * 4, (w, h), area.origin, &cursor);
        }
        Ok(Some(RawScreen {
            width: u32::from(area.width),
            height: u32::from(area.height),
            stride: u32::from(area.width) * 4,
            bgrx: pixels,
        }))
    }

    /// Captures one frame: [`grab_raw`](Self::grab_raw), to I420, scaled down to the bound.
    pub fn grab(&mut self, timestamp: FrameTime) -> Result<Option<I420Frame>, ScreenError> {
        let (max_width, max_height) = (self.options.max_width, self.options.max_height);
        let Some(raw) = self.grab_raw()? else {
            return Ok(None);
        };
        raw.to_frame(max_width, max_height, timestamp).map(Some)
    }

    /// The area's pixels through MIT-SHM when possible, else GetImage.
    fn read(&mut self, area: &Area) -> Result<Option<&mut [u8]>, ScreenError> {
        let size = usize::from(area.width) * usize::from(area.height) * 4;
        #[cfg(unix)]
        if !self.shm_refused {
            self.ensure_segment(size);
            if let Some(segment) = self.shm.as_mut() {
                return segment.grab(&self.session.conn, area);
            }
        }
        let Some(data) = self.session.get_image(area)? else {
            return Ok(None);
        };
        self.plain = data;
        if self.plain.len() < size {
            return Err(ScreenError::X11(format!(
                "GetImage returned {} bytes for {}x{}",
                self.plain.len(),
                area.width,
                area.height
            )));
        }
        Ok(Some(&mut self.plain[..size]))
    }

    /// Makes sure a segment of at least `size` bytes exists, or marks SHM as refused.
    #[cfg(unix)]
    fn ensure_segment(&mut self, size: usize) {
        if self.shm.as_ref().is_some_and(|s| s.len() >= size) {
            return;
        }
        if let Some(old) = self.shm.take() {
            old.release(&self.session.conn);
        }
        // Room for the whole screen at once: a window can grow up to it without a new segment.
        let (rw, rh) = self.session.root_size;
        let want = size.max(usize::from(rw) * usize::from(rh) * 4);
        match ShmSegment::create(&self.session.conn, want) {
            Ok(segment) => {
                debug!(bytes = want, "screen capture uses MIT-SHM");
                self.shm = Some(segment);
            }
            Err(reason) => {
                warn!(%reason, "MIT-SHM unavailable; screen capture falls back to GetImage");
                self.shm_refused = true;
            }
        }
    }
}
