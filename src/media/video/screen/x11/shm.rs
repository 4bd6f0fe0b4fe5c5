//! MIT-SHM: the X server writes captured pixels straight into memory we share with it.
//!
//! Plain GetImage of a 1920×1080 screen costs ~14 ms under Xvfb (8 MB serialised through
//! the socket); ShmGetImage into a shared segment ~1.3 ms. At 10 fps that is 13 % of a core
//! saved, so this file holds the capture's one `unsafe` call: mapping the segment.
//!
//! The segment is created by the server (SHM 1.2 `CreateSegment`) and handed to us as a
//! file descriptor, so no SysV ids or permissions are involved and it dies with the
//! connection. Servers without SHM 1.2, or remote ones, make [`ShmSegment::create`] fail
//! and the caller falls back to GetImage.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;

use memmap2::{MmapMut, MmapOptions};
use tracing::debug;
use x11rb::connection::Connection;
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xproto::ImageFormat;
use x11rb::rust_connection::RustConnection;

use super::super::error::ScreenError;
use super::{Area, not_viewable_is_none};

/// A server-created shared segment mapped into this process.
pub(super) struct ShmSegment {
    seg: shm::Seg,
    map: MmapMut,
}

impl ShmSegment {
    /// A segment of `size` bytes, or why the server would not give one.
    pub(super) fn create(conn: &RustConnection, size: usize) -> Result<Self, String> {
        let version = conn
            .shm_query_version()
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?;
        if (version.major_version, version.minor_version) < (1, 2) {
            return Err(format!(
                "MIT-SHM {}.{} cannot create segments",
                version.major_version, version.minor_version
            ));
        }
        let bytes = u32::try_from(size).map_err(|e| e.to_string())?;
        let seg = conn.generate_id().map_err(|e| e.to_string())?;
        let reply = conn
            .shm_create_segment(seg, bytes, false)
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?;
        let fd: OwnedFd = reply.shm_fd;
        // SAFETY: mapping is unsafe because another party may change or truncate the file
        // while it is mapped. The fd is a fresh anonymous segment the server made for this
        // connection alone and never resizes, so truncation cannot happen. The server
        // writes into it only while executing our ShmGetImage on this segment, and
        // `grab` below hands out the bytes only after that request's reply and borrows
        // `self` mutably for as long as they are used, so the next request (the only
        // next write) cannot be sent while a slice is alive. Other X clients could in
        // principle name our segment in their own requests; they can read and draw any
        // window anyway, and stray writes could only change pixel values, never sizes.
        let map =
            unsafe { MmapOptions::new().len(size).map_mut(&fd) }.map_err(|e| e.to_string())?;
        debug!(size, "MIT-SHM segment mapped");
        Ok(Self { seg, map })
    }

    /// Bytes the segment holds.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Reads `area` into the segment and returns its pixels (BGRX, rows of `width * 4`);
    /// None while the window is not viewable.
    pub(super) fn grab(
        &mut self,
        conn: &RustConnection,
        area: &Area,
    ) -> Result<Option<&mut [u8]>, ScreenError> {
        let size = usize::from(area.width) * usize::from(area.height) * 4;
        if size > self.map.len() {
            return Err(ScreenError::X11(format!(
                "{size} bytes do not fit the {}-byte shared segment",
                self.map.len()
            )));
        }
        let cookie = conn
            .shm_get_image(
                area.drawable,
                area.x,
                area.y,
                area.width,
                area.height,
                !0,
                ImageFormat::Z_PIXMAP.into(),
                self.seg,
                0,
            )
            .map_err(|e| ScreenError::X11(e.to_string()))?;
        match cookie.reply() {
            Ok(_) => Ok(Some(&mut self.map[..size])),
            Err(e) => not_viewable_is_none(e, area.drawable),
        }
    }

    /// Tells the server to drop the segment (the mapping goes with `self`).
    pub(super) fn release(self, conn: &RustConnection) {
        let _ = conn.shm_detach(self.seg);
    }
}
