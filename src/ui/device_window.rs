//! The in-call window for switching camera, microphone and speaker without leaving.

use egui::Context;

use super::settings::Settings;
use crate::session::DeviceLists;

/// Draws the window while `open`; true when a choice changed. Its close button clears
/// `open`.
pub fn show(
    ctx: &Context,
    open: &mut bool,
    settings: &mut Settings,
    devices: Option<&DeviceLists>,
) -> bool {
    let mut changed = false;
    egui::Window::new("Devices")
        .open(open)
        .collapsible(false)
        .resizable(false)
        .default_width(380.0)
        .show(ctx, |ui| {
            changed = super::device_pickers::show(ui, settings, devices);
            ui.weak("Changes apply at once; nobody else has to do anything.");
        });
    changed
}
