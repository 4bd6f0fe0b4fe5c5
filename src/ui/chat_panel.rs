//! The chat panel: the room's history and a line to write in.

use egui::{Key, RichText, ScrollArea, TextEdit, Ui};

use crate::proto::{ChatMessage, MAX_CHAT_CHARS};

/// Draws the messages and the input; returns a message to send.
pub fn show(
    ui: &mut Ui,
    chat: &[ChatMessage],
    self_id: &str,
    draft: &mut String,
) -> Option<String> {
    ui.heading("Chat");
    let mut send = None;
    let input_h = 36.0;
    ScrollArea::vertical()
        .max_height((ui.available_height() - input_h).max(40.0))
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show(ui, |ui| {
            if chat.is_empty() {
                ui.weak("No messages yet.");
            }
            for m in chat {
                let who = if m.from == self_id {
                    "You"
                } else {
                    m.name.as_str()
                };
                ui.label(RichText::new(who).strong());
                ui.label(&m.text);
                ui.add_space(4.0);
            }
        });
    ui.separator();
    ui.horizontal(|ui| {
        let label = ui.label("Message");
        let edit = ui.add(
            TextEdit::singleline(draft)
                .char_limit(MAX_CHAT_CHARS)
                .hint_text("Say something")
                .desired_width(ui.available_width() - 60.0),
        );
        let edit = edit.labelled_by(label.id);
        let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
        if ui.button("Send").clicked() || entered {
            let text = draft.trim().to_owned();
            if !text.is_empty() {
                send = Some(text);
                draft.clear();
            }
            if entered {
                edit.request_focus();
            }
        }
    });
    send
}
