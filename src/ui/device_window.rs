//! The in-call window for switching camera, microphone and speaker without leaving.

use egui::Context;

use super::settings::Settings;
use crate::session::DeviceLists;

/// What the person did in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAction {
    /// A picker changed.
    Changed,
    /// Look for devices again (one was plugged in).
    Refresh,
}

/// Draws the window while `open`; its close button clears `open`.
pub fn show(
    ctx: &Context,
    open: &mut bool,
    settings: &mut Settings,
    devices: Option<&DeviceLists>,
) -> Option<DeviceAction> {
    let mut action = None;
    egui::Window::new("Devices")
        .open(open)
        .collapsible(false)
        .resizable(false)
        .default_width(380.0)
        .show(ctx, |ui| {
            if super::device_pickers::show(ui, settings, devices) {
                action = Some(DeviceAction::Changed);
            }
            if ui.small_button("Look for devices again").clicked() {
                action = Some(DeviceAction::Refresh);
            }
            ui.weak("Changes apply at once; nobody else has to do anything.");
        });
    action
}
