//! The lobby: name, room, devices with a self-preview and mic meter, and where to meet.

use egui::{Color32, RichText, TextEdit, TextureId, Ui, vec2};

use super::settings::{CameraPick, Settings};
use crate::session::DeviceLists;

/// The lobby's own state (what is not remembered between runs).
#[derive(Debug, Default)]
pub struct LobbyState {
    /// Passcode typed for the room.
    pub passcode: String,
    /// The room asked for a passcode: show the field.
    pub need_passcode: bool,
    /// Passcode for the next new room (optional, under Advanced).
    pub new_room_passcode: String,
    /// Why the last attempt failed, for people.
    pub error: Option<String>,
    /// Something we decided for the person ("No camera found…").
    pub notice: Option<String>,
    /// A join is under way.
    pub joining: bool,
}

/// What the person asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LobbyAction {
    /// Join the room in the room field.
    Join,
    /// Create a new room.
    NewRoom,
    /// A device picker changed.
    DevicesChanged,
    /// The microphone toggle.
    ToggleMic,
    /// The camera toggle.
    ToggleCamera,
    /// Look for devices again.
    RefreshDevices,
}

/// What the lobby shows besides the settings.
pub struct LobbyView<'a> {
    /// Remembered settings, edited in place.
    pub settings: &'a mut Settings,
    /// The lobby's own state.
    pub state: &'a mut LobbyState,
    /// Devices, once listed.
    pub devices: Option<&'a DeviceLists>,
    /// Our camera's texture and size.
    pub preview: Option<(TextureId, [usize; 2])>,
    /// Microphone level (linear RMS).
    pub mic_level: f32,
}

/// Draws the lobby; returns what the person asked for.
pub fn show(ui: &mut Ui, v: LobbyView<'_>) -> Option<LobbyAction> {
    let mut action = None;
    ui.vertical_centered(|ui| {
        ui.add_space(12.0);
        ui.heading(RichText::new("meshcall").size(28.0));
        ui.label("Video calls with everyone in a room, peer to peer.");
        ui.add_space(12.0);
    });
    ui.columns(2, |cols| {
        self_check(&mut cols[0], &v, &mut action);
        join_form(&mut cols[1], v, &mut action);
    });
    action
}

fn self_check(ui: &mut Ui, v: &LobbyView<'_>, action: &mut Option<LobbyAction>) {
    let width = ui.available_width().min(480.0);
    let size = vec2(width, width * 9.0 / 16.0);
    match v.preview {
        Some((id, [w, h])) if v.settings.camera_on && w > 0 && h > 0 => {
            let area = super::grid::fit(
                egui::Rect::from_min_size(egui::Pos2::ZERO, size),
                w as f32 / h as f32,
            );
            ui.add(egui::Image::new((id, area.size())).alt_text("Your camera"));
        }
        _ => {
            let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
            ui.painter()
                .rect_filled(rect, 8.0, Color32::from_rgb(40, 42, 48));
            let text = if !v.settings.camera_on {
                "Camera is off"
            } else if v.settings.camera == CameraPick::None {
                "No video source chosen"
            } else {
                "Starting camera…"
            };
            ui.put(rect, egui::Label::new(text).selectable(false));
        }
    }
    ui.horizontal(|ui| {
        ui.label("Mic level");
        let level = if v.settings.mic_on { v.mic_level } else { 0.0 };
        // RMS of speech sits around 0.05–0.2: a square-root scale makes it visible.
        ui.add(
            egui::ProgressBar::new(level.sqrt().clamp(0.0, 1.0))
                .desired_width(ui.available_width() - 8.0)
                .desired_height(10.0),
        );
    });
    ui.horizontal(|ui| {
        let mic = if v.settings.mic_on { "Mute" } else { "Unmute" };
        if ui
            .button(mic)
            .on_hover_text("Microphone on or off when you join")
            .clicked()
        {
            *action = Some(LobbyAction::ToggleMic);
        }
        let cam = if v.settings.camera_on {
            "Stop video"
        } else {
            "Start video"
        };
        if ui
            .button(cam)
            .on_hover_text("Camera on or off when you join")
            .clicked()
        {
            *action = Some(LobbyAction::ToggleCamera);
        }
    });
}

fn join_form(ui: &mut Ui, v: LobbyView<'_>, action: &mut Option<LobbyAction>) {
    let LobbyView {
        settings,
        state,
        devices,
        ..
    } = v;
    let busy = state.joining;
    labelled_field(ui, "Your name", &mut settings.name, "Ada Lovelace");
    let room = labelled_field(ui, "Room code or link", &mut settings.room, "abc-defg-hij");
    if state.need_passcode {
        labelled_field(ui, "Passcode", &mut state.passcode, "");
    }
    let enter = room.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    ui.horizontal(|ui| {
        if ui.add_enabled(!busy, egui::Button::new("Join")).clicked() || (enter && !busy) {
            *action = Some(LobbyAction::Join);
        }
        if ui
            .add_enabled(!busy, egui::Button::new("New room"))
            .clicked()
        {
            *action = Some(LobbyAction::NewRoom);
        }
        if busy {
            ui.spinner();
            ui.label("Joining…");
        }
    });
    if let Some(error) = &state.error {
        ui.label(RichText::new(error).color(Color32::from_rgb(230, 90, 90)));
    }
    if let Some(notice) = &state.notice {
        ui.label(notice.as_str());
    }
    ui.add_space(8.0);
    ui.separator();
    ui.add_enabled_ui(!busy, |ui| {
        if super::device_pickers::show(ui, settings, devices) {
            *action = Some(LobbyAction::DevicesChanged);
        }
        if ui.small_button("Look for devices again").clicked() {
            *action = Some(LobbyAction::RefreshDevices);
        }
        egui::CollapsingHeader::new("Advanced").show(ui, |ui| {
            labelled_field(
                ui,
                "Server",
                &mut settings.server,
                super::settings::DEFAULT_SERVER,
            );
            labelled_field(
                ui,
                "Passcode for a new room (optional)",
                &mut state.new_room_passcode,
                "",
            );
            if let Some(hint) = passcode_hint(&state.new_room_passcode) {
                ui.label(RichText::new(hint).color(Color32::from_rgb(230, 170, 60)));
            }
            ui.checkbox(
                &mut settings.lan,
                "Let other computers on my network join (when meshcall hosts the room)",
            );
            ui.weak(
                "When the server is on this computer and not running, meshcall runs it for you.",
            );
            ui.checkbox(
                &mut settings.relay_only,
                "Relay only: send all media through the server's TURN relay",
            )
            .on_hover_text(
                "For networks that block direct connections, or to hide your address from \
                 the others. Needs a server that hands out TURN (meshcall serve --turn-url).",
            );
        });
    });
}

/// Passcodes shorter than this are easy to guess; the lobby says so.
pub const SUGGESTED_PASSCODE_CHARS: usize = 8;

/// The lobby's hint for a new room's passcode, when it is set but short.
pub fn passcode_hint(passcode: &str) -> Option<&'static str> {
    let chars = passcode.trim().chars().count();
    (1..SUGGESTED_PASSCODE_CHARS)
        .contains(&chars)
        .then_some("Use at least 8 characters: a short passcode can be guessed.")
}

fn labelled_field(ui: &mut Ui, label: &str, value: &mut String, hint: &str) -> egui::Response {
    let label = ui.label(label);
    ui.add(
        TextEdit::singleline(value)
            .hint_text(hint)
            .desired_width(f32::INFINITY),
    )
    .labelled_by(label.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_passcodes_get_a_hint() {
        assert_eq!(passcode_hint(""), None);
        assert_eq!(passcode_hint("   "), None);
        assert!(passcode_hint("4821").is_some());
        assert!(passcode_hint("seven77").is_some());
        assert_eq!(passcode_hint("eight888"), None);
        assert_eq!(passcode_hint("pässwörd"), None);
    }
}
