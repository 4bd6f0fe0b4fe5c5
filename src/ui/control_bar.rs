//! The bar under the call: mic, camera, share, chat, leave, the room code and how many are here.

use egui::{Button, Color32, RichText, Ui};

/// What the person pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarAction {
    /// Toggle the microphone.
    ToggleMic,
    /// Toggle the camera.
    ToggleCamera,
    /// Open or close the chat.
    ToggleChat,
    /// Open or close the device window.
    ToggleDevices,
    /// Leave the call.
    Leave,
    /// Copy the invite link.
    CopyLink,
    /// Open the screen-share picker.
    Share,
    /// Stop sharing our screen.
    StopShare,
}

/// What the bar shows.
pub struct BarState<'a> {
    /// Microphone on.
    pub mic_on: bool,
    /// Camera on.
    pub camera_on: bool,
    /// Whether there is a camera/test pattern to turn on at all.
    pub camera_available: bool,
    /// Whether there is a microphone/tone to unmute at all.
    pub mic_available: bool,
    /// Chat messages not yet read.
    pub unread: usize,
    /// Room code.
    pub room: &'a str,
    /// People in the call, us included.
    pub people: usize,
    /// We are sharing our screen.
    pub sharing: bool,
}

/// Draws the bar; returns what was pressed.
pub fn show(ui: &mut Ui, s: &BarState<'_>) -> Option<BarAction> {
    let mut action = None;
    ui.horizontal_centered(|ui| {
        let mic_on = s.mic_on && s.mic_available;
        let mic = if mic_on { "Mute" } else { "Unmute" };
        if ui
            .add_enabled(s.mic_available, toggle_button(mic, mic_on))
            .on_hover_text("Microphone (Ctrl+D)")
            .on_disabled_hover_text("No microphone or test tone chosen")
            .clicked()
        {
            action = Some(BarAction::ToggleMic);
        }
        let cam = if s.camera_on {
            "Stop video"
        } else {
            "Start video"
        };
        if ui
            .add_enabled(s.camera_available, toggle_button(cam, s.camera_on))
            .on_hover_text("Camera (Ctrl+E)")
            .on_disabled_hover_text("No camera or test pattern chosen")
            .clicked()
        {
            action = Some(BarAction::ToggleCamera);
        }
        let (share, share_action) = if s.sharing {
            ("Stop sharing", BarAction::StopShare)
        } else {
            ("Share screen", BarAction::Share)
        };
        if ui
            .button(share)
            .on_hover_text("Share a screen or a window (Ctrl+Shift+S)")
            .clicked()
        {
            action = Some(share_action);
        }
        let chat = ui.button("Chat");
        if s.unread > 0 {
            ui.label(
                RichText::new(format!("{} unread", s.unread))
                    .color(Color32::WHITE)
                    .background_color(Color32::from_rgb(200, 60, 60)),
            );
        }
        if chat.clicked() {
            action = Some(BarAction::ToggleChat);
        }
        if ui
            .button("Devices")
            .on_hover_text("Switch camera, microphone or speaker")
            .clicked()
        {
            action = Some(BarAction::ToggleDevices);
        }
        if ui
            .add(
                Button::new(RichText::new("Leave").color(Color32::WHITE))
                    .fill(Color32::from_rgb(190, 50, 50)),
            )
            .clicked()
        {
            action = Some(BarAction::Leave);
        }
        ui.separator();
        ui.label(format!("Room {}", s.room));
        if ui
            .button("Copy link")
            .on_hover_text("Copy the invite link")
            .clicked()
        {
            action = Some(BarAction::CopyLink);
        }
        ui.separator();
        let people = if s.people == 1 {
            "1 person".to_owned()
        } else {
            format!("{} people", s.people)
        };
        ui.label(people);
    });
    action
}

fn toggle_button(text: &str, on: bool) -> Button<'_> {
    let b = Button::new(text);
    if on {
        b
    } else {
        // Off is the state people forget they are in: make it stand out.
        b.fill(Color32::from_rgb(150, 50, 50))
    }
}
