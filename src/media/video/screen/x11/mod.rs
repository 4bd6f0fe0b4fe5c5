//! X11 capture through `x11rb`'s pure-Rust connection: one connection per capture or listing.
//!
//! Pixels come from GetImage, or MIT-SHM where the server offers it (about ten times
//! cheaper at 1920×1080 under Xvfb: ~1.3 ms against ~14 ms). Only 32-bit true-colour
//! pixels are read (depth 24 or 32), which is every desktop of the last twenty years.

mod grab;
mod list;
#[cfg(unix)]
mod shm;

use std::ffi::OsString;

use tracing::debug;
use x11rb::connection::Connection;
use x11rb::errors::ReplyError;
use x11rb::protocol::ErrorKind;
use x11rb::protocol::xfixes::ConnectionExt as _;
use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat, ImageOrder, MapState, Window};
use x11rb::rust_connection::RustConnection;

use super::ScreenTarget;
use super::cursor::CursorImage;
use super::error::ScreenError;

pub use grab::{GrabOptions, RawScreen, ScreenGrabber};
pub use list::{ListOptions, ShareableSource, SourceKind, list_sources, window_title};

/// The display to use: `explicit` if given, else `DISPLAY` (passed in as `env`).
pub(crate) fn display_name(
    explicit: Option<&str>,
    env: Option<OsString>,
) -> Result<String, ScreenError> {
    let chosen = match explicit {
        Some(name) => name.to_owned(),
        None => env
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let chosen = chosen.trim();
    if chosen.is_empty() {
        return Err(ScreenError::NoDisplay);
    }
    Ok(chosen.to_owned())
}

/// A part of a drawable to read, and where it sits on the root window (for the pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Area {
    pub drawable: u32,
    pub x: i16,
    pub y: i16,
    /// Even width; GetImage reads exactly this much.
    pub width: u16,
    /// Even height.
    pub height: u16,
    /// Root coordinates of the area's top-left pixel.
    pub origin: (i32, i32),
}

/// An open connection and what we learned about the server once.
pub(crate) struct Session {
    pub conn: RustConnection,
    pub root: Window,
    pub root_size: (u16, u16),
    /// Whether XFIXES (1.0+) answered, i.e. the pointer image can be fetched.
    xfixes: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("root", &self.root)
            .field("root_size", &self.root_size)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects to `display` (or `DISPLAY`) and checks the pixel format.
    pub fn connect(display: Option<&str>) -> Result<Self, ScreenError> {
        let name = display_name(display, std::env::var_os("DISPLAY"))?;
        let (conn, screen) =
            RustConnection::connect(Some(&name)).map_err(|e| ScreenError::DisplayUnreachable {
                display: name.clone(),
                reason: e.to_string(),
            })?;
        let setup = conn.setup();
        let Some(info) = setup.roots.get(screen) else {
            return Err(ScreenError::X11(format!(
                "display {name} has no screen {screen}"
            )));
        };
        let (root, root_size) = (info.root, (info.width_in_pixels, info.height_in_pixels));
        let bits_per_pixel = bits_per_pixel(&conn, info.root_depth);
        if !matches!(info.root_depth, 24 | 32)
            || bits_per_pixel != 32
            || setup.image_byte_order != ImageOrder::LSB_FIRST
        {
            return Err(ScreenError::PixelFormat {
                depth: info.root_depth,
                bits_per_pixel,
            });
        }
        // XFIXES must be told our version before any other request of it.
        let xfixes = conn
            .xfixes_query_version(4, 0)
            .ok()
            .and_then(|c| c.reply().ok())
            .is_some();
        if !xfixes {
            debug!(display = %name, "no XFIXES: shares will show no pointer");
        }
        debug!(display = %name, root, ?root_size, "X11 capture connected");
        Ok(Self {
            conn,
            root,
            root_size,
            xfixes,
        })
    }

    /// Where `target` is now; None while it cannot be read (a window unmapped or
    /// minimised, a monitor off the screen).
    pub fn area(&self, target: &ScreenTarget) -> Result<Option<Area>, ScreenError> {
        let whole = |x: i16, y: i16, w: u16, h: u16| {
            (w >= 2 && h >= 2).then_some(Area {
                drawable: self.root,
                x,
                y,
                width: w & !1,
                height: h & !1,
                origin: (i32::from(x), i32::from(y)),
            })
        };
        match *target {
            ScreenTarget::Screen => Ok(whole(0, 0, self.root_size.0, self.root_size.1)),
            ScreenTarget::Monitor {
                x,
                y,
                width,
                height,
            } => {
                // Clip to the root window: GetImage fails on any pixel outside it.
                let (rw, rh) = (i32::from(self.root_size.0), i32::from(self.root_size.1));
                let (x0, y0) = (i32::from(x).max(0), i32::from(y).max(0));
                let x1 = (i32::from(x) + i32::from(width)).min(rw);
                let y1 = (i32::from(y) + i32::from(height)).min(rh);
                if x1 - x0 < 2 || y1 - y0 < 2 {
                    return Ok(None);
                }
                // In range by the clipping above: 0 <= x0 < x1 <= root size (a u16).
                let fit = |v: i32| u16::try_from(v).unwrap_or(u16::MAX);
                Ok(whole(
                    fit(x0) as i16,
                    fit(y0) as i16,
                    fit(x1 - x0),
                    fit(y1 - y0),
                ))
            }
            ScreenTarget::Window { id } => self.window_area(id),
        }
    }

    fn window_area(&self, id: u32) -> Result<Option<Area>, ScreenError> {
        let gone = |e| window_error(e, id);
        let attributes = self
            .conn
            .get_window_attributes(id)
            .map_err(x11)?
            .reply()
            .map_err(gone)?;
        let geometry = self
            .conn
            .get_geometry(id)
            .map_err(x11)?
            .reply()
            .map_err(gone)?;
        let bits = bits_per_pixel(&self.conn, geometry.depth);
        if !matches!(geometry.depth, 24 | 32) || bits != 32 {
            return Err(ScreenError::PixelFormat {
                depth: geometry.depth,
                bits_per_pixel: bits,
            });
        }
        if attributes.map_state != MapState::VIEWABLE {
            return Ok(None);
        }
        let at = self
            .conn
            .translate_coordinates(id, self.root, 0, 0)
            .map_err(x11)?
            .reply()
            .map_err(gone)?;
        // GetImage refuses a window rectangle that is not on the screen: read the part
        // that is (a window dragged half off-screen shrinks instead of freezing).
        let (ox, oy) = (i32::from(at.dst_x), i32::from(at.dst_y));
        let (rw, rh) = (i32::from(self.root_size.0), i32::from(self.root_size.1));
        let (x0, y0) = ((-ox).max(0), (-oy).max(0));
        let x1 = i32::from(geometry.width).min(rw - ox);
        let y1 = i32::from(geometry.height).min(rh - oy);
        let (w, h) = ((x1 - x0) & !1, (y1 - y0) & !1);
        if w < 2 || h < 2 {
            return Ok(None);
        }
        // All four lie within 0..=u16::MAX: they are clipped to the window's u16 size.
        let small = |v: i32| u16::try_from(v).unwrap_or(u16::MAX);
        Ok(Some(Area {
            drawable: id,
            x: small(x0) as i16,
            y: small(y0) as i16,
            width: small(w),
            height: small(h),
            origin: (ox + x0, oy + y0),
        }))
    }

    /// Reads an area with plain GetImage: BGRX, rows of `width * 4` bytes. None when the
    /// server refuses because the window is not viewable right now.
    pub fn get_image(&self, area: &Area) -> Result<Option<Vec<u8>>, ScreenError> {
        let reply = self
            .conn
            .get_image(
                ImageFormat::Z_PIXMAP,
                area.drawable,
                area.x,
                area.y,
                area.width,
                area.height,
                !0,
            )
            .map_err(x11)?
            .reply();
        match reply {
            Ok(image) => Ok(Some(image.data)),
            Err(e) => not_viewable_is_none(e, area.drawable),
        }
    }

    /// The pointer's image and place; None without XFIXES or when the server fails it.
    pub fn cursor(&self) -> Option<CursorImage> {
        if !self.xfixes {
            return None;
        }
        let reply = self.conn.xfixes_get_cursor_image().ok()?.reply().ok()?;
        Some(CursorImage {
            left: i32::from(reply.x) - i32::from(reply.xhot),
            top: i32::from(reply.y) - i32::from(reply.yhot),
            width: usize::from(reply.width),
            height: usize::from(reply.height),
            argb: reply.cursor_image,
        })
    }
}

/// Bits per pixel the server uses for images of `depth` (0 if it lists none).
fn bits_per_pixel(conn: &RustConnection, depth: u8) -> u8 {
    conn.setup()
        .pixmap_formats
        .iter()
        .find(|f| f.depth == depth)
        .map_or(0, |f| f.bits_per_pixel)
}

/// A request that could not even be sent: the connection is broken.
fn x11(e: impl std::fmt::Display) -> ScreenError {
    ScreenError::X11(e.to_string())
}

/// Maps a failed request about window `id`: BadWindow/BadDrawable mean it is gone.
pub(crate) fn window_error(e: ReplyError, id: u32) -> ScreenError {
    match e {
        ReplyError::X11Error(ref x)
            if matches!(x.error_kind, ErrorKind::Window | ErrorKind::Drawable) =>
        {
            ScreenError::WindowGone { id }
        }
        other => x11(other),
    }
}

/// GetImage's BadMatch means "not viewable (now)"; anything else is an error.
pub(crate) fn not_viewable_is_none<T>(
    e: ReplyError,
    drawable: u32,
) -> Result<Option<T>, ScreenError> {
    match e {
        ReplyError::X11Error(ref x) if x.error_kind == ErrorKind::Match => Ok(None),
        other => Err(window_error(other, drawable)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_display_comes_from_the_caller_then_the_environment() {
        assert_eq!(display_name(Some(":3"), Some(":0".into())).unwrap(), ":3");
        assert_eq!(display_name(None, Some(" :0 ".into())).unwrap(), ":0");
        for (explicit, env) in [
            (None, None),
            (None, Some(String::new())),
            (Some(""), Some(":0".to_owned())),
        ] {
            let err = display_name(explicit, env.map(OsString::from)).unwrap_err();
            assert!(matches!(err, ScreenError::NoDisplay), "{err}");
            assert!(err.is_unsupported());
            assert!(err.to_string().contains("not supported here yet"));
        }
    }

    #[test]
    fn an_unreachable_display_is_unsupported_not_a_panic() {
        // Display numbers this high are never served; the socket simply is not there.
        let err = Session::connect(Some(":6543")).unwrap_err();
        assert!(
            matches!(err, ScreenError::DisplayUnreachable { .. }),
            "{err}"
        );
        assert!(err.is_unsupported());
    }
}
