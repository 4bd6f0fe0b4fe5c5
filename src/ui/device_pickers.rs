//! Camera, microphone and speaker pickers: in the lobby, and in a call's device window.

use egui::{Color32, ComboBox, RichText, Ui};

use super::settings::{CameraPick, MicPick, Settings, SpeakerPick};
use crate::session::DeviceLists;

/// The three pickers; true when a choice changed.
pub fn show(ui: &mut Ui, s: &mut Settings, devices: Option<&DeviceLists>) -> bool {
    let Some(devices) = devices else {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Looking for cameras and microphones…");
        });
        return false;
    };
    let before = (s.camera.clone(), s.mic.clone(), s.speaker.clone());
    let camera_name = |pick: &CameraPick| match pick {
        CameraPick::TestPattern => "Test pattern".to_owned(),
        CameraPick::None => "No video".to_owned(),
        CameraPick::Camera(i) => devices
            .cameras
            .iter()
            .find(|c| c.index == *i)
            .map_or_else(|| format!("Camera {i}"), |c| c.name.clone()),
    };
    ComboBox::from_label("Camera")
        .selected_text(camera_name(&s.camera))
        .width(ui.available_width() - 90.0)
        .show_ui(ui, |ui| {
            for c in &devices.cameras {
                ui.selectable_value(&mut s.camera, CameraPick::Camera(c.index), &c.name);
            }
            ui.selectable_value(&mut s.camera, CameraPick::TestPattern, "Test pattern");
            ui.selectable_value(&mut s.camera, CameraPick::None, "No video");
        });
    let mic_name = match &s.mic {
        MicPick::Default => "Default microphone".to_owned(),
        MicPick::Tone => "Test tone".to_owned(),
        MicPick::None => "No audio".to_owned(),
        MicPick::Device(id) => name_of(&devices.audio.microphones, id),
    };
    ComboBox::from_label("Microphone")
        .selected_text(mic_name)
        .width(ui.available_width() - 90.0)
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut s.mic, MicPick::Default, "Default microphone");
            for d in &devices.audio.microphones {
                ui.selectable_value(&mut s.mic, MicPick::Device(d.id.clone()), &d.name);
            }
            ui.selectable_value(&mut s.mic, MicPick::Tone, "Test tone");
            ui.selectable_value(&mut s.mic, MicPick::None, "No audio");
        });
    let speaker_name = match &s.speaker {
        SpeakerPick::Default => "Default speaker".to_owned(),
        SpeakerPick::Device(id) => name_of(&devices.audio.speakers, id),
    };
    ComboBox::from_label("Speaker")
        .selected_text(speaker_name)
        .width(ui.available_width() - 90.0)
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut s.speaker, SpeakerPick::Default, "Default speaker");
            for d in &devices.audio.speakers {
                ui.selectable_value(&mut s.speaker, SpeakerPick::Device(d.id.clone()), &d.name);
            }
        });
    if let Some(problem) = &devices.audio_problem {
        // As in the banners: one sentence here, the backend's words on hover.
        let (text, detail) = super::banners::device_problem_text(&format!("sound: {problem}"));
        let label = ui.label(RichText::new(text).color(Color32::from_rgb(230, 90, 90)));
        if let Some(detail) = detail {
            label.on_hover_text(detail);
        }
    }
    before != (s.camera.clone(), s.mic.clone(), s.speaker.clone())
}

fn name_of(list: &[crate::media::audio::devices::AudioDevice], id: &str) -> String {
    list.iter()
        .find(|d| d.id == id)
        .map_or_else(|| format!("{id} (not present)"), |d| d.name.clone())
}
