//! `meshcall join --save-screen PATH`: the last decoded frame of a member's screen share,
//! written as a binary PPM, so tests can compare what arrived with what was shared.

use std::io::Write as _;
use std::path::Path;

use crate::media::pipeline::RemoteMedia;
use crate::media::video::{I420Frame, i420_to_rgba};

/// Writes the newest screen-share frame received (of the first sharer by member id) to
/// `path` as PPM (P6, 8-bit RGB). Errors are returned as text for the report's problems.
pub(super) fn save_latest(remote: &RemoteMedia, path: &Path) -> Result<(), String> {
    let mut members = remote.members();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    let frame = members
        .iter()
        .find_map(|(_, m)| m.latest_screen_frame())
        .ok_or_else(|| "--save-screen: no screen-share frame was received".to_owned())?;
    write_ppm(&frame, path).map_err(|e| format!("--save-screen {}: {e}", path.display()))
}

/// The frame as PPM: a text header, then RGB bytes row by row.
fn write_ppm(frame: &I420Frame, path: &Path) -> std::io::Result<()> {
    let rgba = i420_to_rgba(frame).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(rgba.pixels.len() / 4 * 3 + 32);
    write!(out, "P6\n{} {}\n255\n", rgba.width, rgba.height)?;
    for px in rgba.pixels.chunks_exact(4) {
        out.extend_from_slice(&px[..3]);
    }
    std::fs::write(path, out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::media::video::FrameTime;

    #[test]
    fn a_frame_is_written_as_ppm_of_its_size() {
        let frame = I420Frame::filled(4, 2, (235, 128, 128), FrameTime::now()).unwrap();
        let path = std::env::temp_dir().join(format!("meshcall-shot-{}.ppm", std::process::id()));
        write_ppm(&frame, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let header = b"P6\n4 2\n255\n";
        assert_eq!(&bytes[..header.len()], header);
        assert_eq!(bytes.len(), header.len() + 4 * 2 * 3);
        // Y 235 is white in limited range.
        assert!(bytes[header.len()..].iter().all(|&b| b >= 250), "{bytes:?}");
    }
}
