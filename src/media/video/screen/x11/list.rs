//! What can be shared, for the picker: the screen, its monitors and the top-level windows,
//! each with a name, a size and a small thumbnail.

use tracing::debug;
use x11rb::protocol::randr::ConnectionExt as _;
use x11rb::protocol::xproto::{Atom, AtomEnum, ConnectionExt as _, MapState, Window, WindowClass};

use super::super::super::convert::bgra_to_i420;
use super::super::super::frame::{FrameTime, I420Frame};
use super::super::super::scale::{downscale, fit_within};
use super::super::ScreenTarget;
use super::super::error::ScreenError;
use super::{Session, x11};

/// What kind of thing a [`ShareableSource`] is, for grouping in the picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// The whole X screen (all monitors).
    Screen,
    /// One monitor of it.
    Monitor,
    /// One application window.
    Window,
}

/// One entry of the picker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareableSource {
    /// Screen, monitor or window.
    pub kind: SourceKind,
    /// What to pass to the capture to share this.
    pub target: ScreenTarget,
    /// The window's title, the monitor's output name, or "Entire screen".
    pub name: String,
    /// Current width in pixels.
    pub width: u32,
    /// Current height in pixels.
    pub height: u32,
    /// A small picture of it now; None when it could not be read (e.g. unmapped).
    pub thumbnail: Option<I420Frame>,
}

/// What [`list_sources`] leaves out and how large its thumbnails are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOptions {
    /// Window ids never to list, e.g. our own window, so a share never mirrors itself.
    pub exclude: Vec<u32>,
    /// Thumbnails fit within this many pixels on each side; 0 for no thumbnails.
    pub thumbnail_size: u32,
}

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            exclude: Vec::new(),
            thumbnail_size: 240,
        }
    }
}

/// Lists the screen, its monitors (when there is more than one) and the named top-level
/// windows of `display` (None: `DISPLAY`), in stacking order from the bottom.
pub fn list_sources(
    display: Option<&str>,
    options: &ListOptions,
) -> Result<Vec<ShareableSource>, ScreenError> {
    let session = Session::connect(display)?;
    let atoms = Atoms::intern(&session)?;
    let (rw, rh) = session.root_size;
    let mut sources = vec![ShareableSource {
        kind: SourceKind::Screen,
        target: ScreenTarget::Screen,
        name: "Entire screen".into(),
        width: u32::from(rw),
        height: u32::from(rh),
        thumbnail: None,
    }];
    sources.extend(monitors(&session));
    for id in top_level_windows(&session, &atoms)? {
        if options.exclude.contains(&id) {
            continue;
        }
        // Windows may vanish between the listing and these requests: skip them quietly.
        let Some(name) = window_name(&session, &atoms, id) else {
            continue;
        };
        let Ok(Some(area)) = session.area(&ScreenTarget::Window { id }) else {
            continue;
        };
        sources.push(ShareableSource {
            kind: SourceKind::Window,
            target: ScreenTarget::Window { id },
            name,
            width: u32::from(area.width),
            height: u32::from(area.height),
            thumbnail: None,
        });
    }
    if options.thumbnail_size > 0 {
        for source in &mut sources {
            source.thumbnail = thumbnail(&session, &source.target, options.thumbnail_size);
        }
    }
    Ok(sources)
}

/// The title of window `id` on `display` (None: `DISPLAY`), as the picker shows it; None
/// when the window has none or the display cannot be reached.
pub fn window_title(display: Option<&str>, id: Window) -> Option<String> {
    let session = Session::connect(display).ok()?;
    let atoms = Atoms::intern(&session).ok()?;
    window_name(&session, &atoms, id)
}

/// Atoms looked up once per listing.
struct Atoms {
    net_client_list: Atom,
    net_wm_name: Atom,
    utf8_string: Atom,
}

impl Atoms {
    fn intern(session: &Session) -> Result<Self, ScreenError> {
        let atom = |name: &[u8]| -> Result<Atom, ScreenError> {
            Ok(session
                .conn
                .intern_atom(false, name)
                .map_err(x11)?
                .reply()
                .map_err(x11)?
                .atom)
        };
        Ok(Self {
            net_client_list: atom(b"_NET_CLIENT_LIST")?,
            net_wm_name: atom(b"_NET_WM_NAME")?,
            utf8_string: atom(b"UTF8_STRING")?,
        })
    }
}

/// The monitors RandR 1.5 reports, only when there are several (one is the whole screen).
fn monitors(session: &Session) -> Vec<ShareableSource> {
    let reply = session
        .conn
        .randr_get_monitors(session.root, true)
        .ok()
        .and_then(|c| c.reply().ok());
    let Some(reply) = reply.filter(|r| r.monitors.len() > 1) else {
        return Vec::new();
    };
    reply
        .monitors
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let name = session
                .conn
                .get_atom_name(m.name)
                .ok()
                .and_then(|c| c.reply().ok())
                .map(|r| String::from_utf8_lossy(&r.name).into_owned())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("Monitor {}", i + 1));
            ShareableSource {
                kind: SourceKind::Monitor,
                target: ScreenTarget::Monitor {
                    x: m.x,
                    y: m.y,
                    width: m.width,
                    height: m.height,
                },
                name,
                width: u32::from(m.width),
                height: u32::from(m.height),
                thumbnail: None,
            }
        })
        .collect()
}

/// The window manager's client list (EWMH); without a window manager, the root's mapped
/// InputOutput children.
fn top_level_windows(session: &Session, atoms: &Atoms) -> Result<Vec<Window>, ScreenError> {
    let listed = session
        .conn
        .get_property(
            false,
            session.root,
            atoms.net_client_list,
            AtomEnum::WINDOW,
            0,
            4096,
        )
        .map_err(x11)?
        .reply()
        .ok()
        .and_then(|r| r.value32().map(Iterator::collect::<Vec<Window>>))
        .filter(|ids| !ids.is_empty());
    if let Some(ids) = listed {
        return Ok(ids);
    }
    debug!("no _NET_CLIENT_LIST; listing the root window's children");
    let tree = session
        .conn
        .query_tree(session.root)
        .map_err(x11)?
        .reply()
        .map_err(x11)?;
    Ok(tree
        .children
        .into_iter()
        .filter(|&id| {
            session
                .conn
                .get_window_attributes(id)
                .ok()
                .and_then(|c| c.reply().ok())
                .is_some_and(|a| {
                    a.map_state == MapState::VIEWABLE && a.class == WindowClass::INPUT_OUTPUT
                })
        })
        .collect())
}

/// `_NET_WM_NAME` (UTF-8), else `WM_NAME` (Latin-1 in practice); None when unnamed.
fn window_name(session: &Session, atoms: &Atoms, id: Window) -> Option<String> {
    let read = |property: Atom, kind: Atom| {
        session
            .conn
            .get_property(false, id, property, kind, 0, 1024)
            .ok()?
            .reply()
            .ok()
            .filter(|r| r.format == 8 && !r.value.is_empty())
            .map(|r| r.value)
    };
    let name = read(atoms.net_wm_name, atoms.utf8_string)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .or_else(|| {
            read(AtomEnum::WM_NAME.into(), AtomEnum::ANY.into())
                .map(|v| v.iter().map(|&b| char::from(b)).collect())
        })?;
    let name = name.trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// A small picture of `target` now, read with plain GetImage (one-off, so no segment).
fn thumbnail(session: &Session, target: &ScreenTarget, size: u32) -> Option<I420Frame> {
    let area = session.area(target).ok()??;
    let pixels = session.get_image(&area).ok()??;
    let (w, h) = (u32::from(area.width), u32::from(area.height));
    let full = bgra_to_i420(w, h, &pixels, w * 4, FrameTime::now()).ok()?;
    let (tw, th) = fit_within(w, h, size, size);
    downscale(&full, tw, th).ok()
}
