//! Drawing the mouse pointer into a captured picture.
//!
//! X11 never puts the pointer into GetImage's pixels (it is a hardware or server overlay),
//! so a share would show none; XFIXES hands us its current image and position instead.

/// A pointer image as XFIXES GetCursorImage reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CursorImage {
    /// Top-left corner in root-window coordinates (pointer position minus hotspot).
    pub left: i32,
    /// See `left`.
    pub top: i32,
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Premultiplied ARGB, one `u32` a pixel, rows packed.
    pub argb: Vec<u32>,
}

/// Blends `cursor` over a BGRX picture (`stride` bytes a row) whose top-left pixel is at
/// `origin` in root coordinates; parts outside the picture are clipped.
pub(crate) fn blend_cursor(
    bgrx: &mut [u8],
    stride: usize,
    (width, height): (usize, usize),
    origin: (i32, i32),
    cursor: &CursorImage,
) {
    if cursor.argb.len() < cursor.width * cursor.height {
        return;
    }
    for cy in 0..cursor.height {
        let Some(py) = offset(cursor.top, cy, origin.1, height) else {
            continue;
        };
        for cx in 0..cursor.width {
            let Some(px) = offset(cursor.left, cx, origin.0, width) else {
                continue;
            };
            let argb = cursor.argb[cy * cursor.width + cx];
            let alpha = argb >> 24;
            if alpha == 0 {
                continue;
            }
            let at = py * stride + px * 4;
            let Some(dst) = bgrx.get_mut(at..at + 3) else {
                return;
            };
            // Premultiplied "over": out = src + dst * (1 - alpha).
            let keep = 255 - alpha;
            for (i, d) in dst.iter_mut().enumerate() {
                let src = (argb >> (8 * i)) & 0xff;
                *d = (src + (u32::from(*d) * keep + 127) / 255).min(255) as u8;
            }
        }
    }
}

/// Picture coordinate of cursor pixel `i` (cursor starts at `start`, picture at `origin`),
/// or None outside `0..size`.
fn offset(start: i32, i: usize, origin: i32, size: usize) -> Option<usize> {
    let at = i64::from(start) + i as i64 - i64::from(origin);
    usize::try_from(at).ok().filter(|&p| p < size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(width: usize, height: usize, value: u8) -> Vec<u8> {
        vec![value; width * height * 4]
    }

    fn pixel(buf: &[u8], stride: usize, x: usize, y: usize) -> [u8; 3] {
        let at = y * stride + x * 4;
        [buf[at], buf[at + 1], buf[at + 2]]
    }

    #[test]
    fn opaque_and_half_transparent_pixels_blend_and_clear_ones_do_not() {
        let cursor = CursorImage {
            left: 10,
            top: 20,
            width: 3,
            height: 1,
            // Opaque red; 50 % white premultiplied; fully transparent.
            argb: vec![0xffff_0000, 0x8080_8080, 0x0000_0000],
        };
        let mut buf = grey(8, 4, 100);
        // The picture starts at (8, 19) on the root window.
        blend_cursor(&mut buf, 32, (8, 4), (8, 19), &cursor);
        assert_eq!(pixel(&buf, 32, 2, 1), [0, 0, 255]);
        let half = pixel(&buf, 32, 3, 1);
        assert!(half.iter().all(|&c| c.abs_diff(128 + 50) <= 1), "{half:?}");
        assert_eq!(pixel(&buf, 32, 4, 1), [100, 100, 100]);
        assert_eq!(pixel(&buf, 32, 1, 1), [100, 100, 100]);
    }

    #[test]
    fn a_cursor_partly_outside_is_clipped_and_a_short_image_ignored() {
        let cursor = CursorImage {
            left: -1,
            top: -1,
            width: 3,
            height: 3,
            argb: vec![0xff00_ff00; 9],
        };
        let mut buf = grey(2, 2, 0);
        blend_cursor(&mut buf, 8, (2, 2), (0, 0), &cursor);
        for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            assert_eq!(pixel(&buf, 8, x, y), [0, 255, 0]);
        }
        let short = CursorImage {
            argb: vec![0xffff_ffff; 2],
            ..cursor
        };
        let mut buf = grey(2, 2, 7);
        blend_cursor(&mut buf, 8, (2, 2), (0, 0), &short);
        assert!(buf.iter().all(|&b| b == 7));
    }
}
