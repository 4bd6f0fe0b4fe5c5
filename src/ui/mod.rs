//! The desktop window (eframe/egui): the lobby, the call grid (or the spotlight on a
//! screen share), controls, chat and the share picker. It
//! talks to the call only through [`crate::session`]'s requests and notices; it never
//! awaits and never blocks. One file per screen or widget; widgets return what the
//! person asked for and [`app::MeshcallUi`] applies it.

pub mod app;
pub mod banners;
pub mod call_model;
pub mod call_view;
pub mod chat_panel;
pub mod control_bar;
pub mod device_pickers;
pub mod device_window;
pub mod grid;
pub mod lobby;
pub mod milestones;
pub mod room_input;
pub mod settings;
pub mod share_picker;
pub mod spotlight;
pub mod textures;
pub mod tile;

use crate::engine::EngineConfig;
use crate::session::Session;
use app::{MeshcallUi, repaint_waker};
use settings::{CameraPick, MicPick, Settings};

/// What the command line asks of the window; each `Some` overrides the remembered setting.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Signaling server.
    pub server: Option<String>,
    /// Room to join at once.
    pub room: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Video source.
    pub camera: Option<CameraPick>,
    /// Audio source.
    pub mic: Option<MicPick>,
    /// Engine settings (ICE addresses).
    pub engine: EngineConfig,
}

impl Launch {
    /// `settings` with the command line's choices on top.
    pub fn apply(&self, mut settings: Settings) -> Settings {
        if let Some(s) = &self.server {
            settings.server = s.clone();
        }
        if let Some(r) = &self.room {
            settings.room = r.clone();
        }
        if let Some(n) = &self.name {
            settings.name = n.clone();
        }
        if let Some(c) = &self.camera {
            settings.camera = c.clone();
        }
        if let Some(m) = &self.mic {
            settings.mic = m.clone();
        }
        if self.room.is_some() && settings.name.trim().is_empty() {
            settings.name = std::env::var("USER").unwrap_or_else(|_| "Guest".into());
        }
        settings
    }
}

/// The eframe app: the window state over a real [`Session`].
pub struct DesktopApp {
    ui: MeshcallUi<Session>,
    /// Our window's id was looked up (once: it does not change).
    window_known: bool,
}

impl eframe::App for DesktopApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        if !std::mem::replace(&mut self.window_known, true) {
            let id = x11_window_id(frame);
            tracing::info!("our X11 window: {id:?} (never offered for sharing)");
            self.ui.set_own_window(id);
        }
        self.ui.ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.ui.settings.save(storage);
    }
}

/// Opens the window and runs until it is closed.
pub fn run(launch: Launch) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("meshcall")
            .with_app_id("meshcall")
            .with_inner_size([1100.0, 720.0])
            .with_min_inner_size([640.0, 420.0]),
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    eframe::run_native(
        "meshcall",
        options,
        Box::new(move |cc| {
            let settings = launch.apply(Settings::load(cc.storage));
            let session = Session::start(
                launch.engine.clone(),
                MeshcallUi::<Session>::device_choice(&settings),
                repaint_waker(&cc.egui_ctx),
            )?;
            Ok(Box::new(DesktopApp {
                ui: MeshcallUi::new(session, settings, launch.room.is_some()),
                window_known: false,
            }))
        }),
    )
    .map_err(|e| anyhow::anyhow!("the window could not open: {e}"))
}

/// Our window's X11 id, for the share picker to leave out; None off X11 (Wayland, where
/// sharing is not supported yet anyway).
fn x11_window_id(frame: &eframe::Frame) -> Option<u32> {
    use raw_window_handle::{HasWindowHandle, RawWindowHandle};
    match frame.window_handle().ok()?.as_raw() {
        // X11 window ids are 29-bit values in a C `unsigned long`.
        RawWindowHandle::Xlib(h) => u32::try_from(h.window).ok(),
        RawWindowHandle::Xcb(h) => Some(h.window.get()),
        _ => None,
    }
}
