//! Legibility of a shared screen (issue 13): under a private 1920x1080 Xvfb a window shows
//! known fine text (1-pixel strokes, dark on light, as a document would), one `meshcall
//! join` shares the whole X screen, another receives it and saves its last decoded frame
//! (`--save-screen`), and the window's region of that frame is compared with the same region
//! grabbed from the X server: luma PSNR >= 35 dB or SSIM >= 0.95. The metrics are checked
//! first to fail on a blurred or shifted picture. Without Xvfb it skips (fails under CI).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::TestServer;
use common::xvfb::Xvfb;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ChangeWindowAttributesAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, ImageFormat,
    WindowClass,
};
use x11rb::rust_connection::RustConnection;

/// Where the text window sits, and its size: away from the pointer, which the share draws
/// in and the reference grab leaves out.
const WIN: (i16, i16, u16, u16) = (40, 40, 1280, 720);

/// Lines of text the window shows: upper-case letters, digits and punctuation.
fn text_lines() -> Vec<String> {
    let words = [
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
        "0123456789 - PACK MY BOX WITH FIVE DOZEN LIQUOR JUGS.",
        "MESHCALL SCREEN SHARE: SMALL TEXT STAYS LEGIBLE #13",
        "SPHINX OF BLACK QUARTZ, JUDGE MY VOW_42",
    ];
    (0..64)
        .map(|i| format!("{:03} {}", i, words[i % words.len()]))
        .collect()
}

/// The window's picture as 0xRRGGBB: 5x7 glyphs, 1-pixel strokes, 6 px advance, 11 px
/// lines, two columns; near-black on off-white.
fn render_text(w: usize, h: usize) -> Vec<u32> {
    let mut img = vec![0xf4_f1_e8u32; w * h];
    let lines = text_lines();
    for (n, line) in lines.iter().enumerate() {
        let (col, row) = (n / 32, n % 32);
        let (left, top) = (8 + col * 640, 8 + row * 22);
        for (i, ch) in line.chars().enumerate() {
            for (gy, bits) in glyph(ch).iter().enumerate() {
                for gx in 0..5 {
                    if bits & (0x10 >> gx) != 0 {
                        let (x, y) = (left + i * 6 + gx, top + gy);
                        if x < w && y < h {
                            img[y * w + x] = 0x1a_1a_24;
                        }
                    }
                }
            }
        }
        // A second, coloured copy under each line: chroma edges at 1-pixel detail.
        for (i, ch) in line.chars().enumerate() {
            for (gy, bits) in glyph(ch).iter().enumerate() {
                for gx in 0..5 {
                    if bits & (0x10 >> gx) != 0 {
                        let (x, y) = (left + i * 6 + gx, top + 11 + gy);
                        if x < w && y < h {
                            img[y * w + x] = 0xc0_20_30;
                        }
                    }
                }
            }
        }
    }
    img
}

/// Maps a borderless window whose background pixmap holds `img`: the X server repaints it
/// by itself, so the test needs no event loop. Returns the connection (the window lives as
/// long as it does).
fn show_window(display: &str, img: &[u32]) -> RustConnection {
    let (x, y, w, h) = WIN;
    let (conn, screen) = RustConnection::connect(Some(display)).unwrap();
    let root = conn.setup().roots[screen].clone();
    let pixmap = conn.generate_id().unwrap();
    conn.create_pixmap(root.root_depth, pixmap, root.root, w, h)
        .unwrap();
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, pixmap, &CreateGCAux::new()).unwrap();
    // 32 rows per request keeps each under the core protocol's 256 KiB limit.
    let row_bytes = w as usize * 4;
    for (strip, rows) in img.chunks(w as usize * 32).enumerate() {
        let data: Vec<u8> = rows.iter().flat_map(|p| p.to_le_bytes()).collect();
        conn.put_image(
            ImageFormat::Z_PIXMAP,
            pixmap,
            gc,
            w,
            (data.len() / row_bytes) as u16,
            0,
            (strip * 32) as i16,
            0,
            root.root_depth,
            &data,
        )
        .unwrap();
    }
    let win = conn.generate_id().unwrap();
    conn.create_window(
        0,
        win,
        root.root,
        x,
        y,
        w,
        h,
        0,
        WindowClass::INPUT_OUTPUT,
        root.root_visual,
        &CreateWindowAux::new().override_redirect(1),
    )
    .unwrap();
    conn.change_window_attributes(
        win,
        &ChangeWindowAttributesAux::new().background_pixmap(pixmap),
    )
    .unwrap();
    conn.map_window(win).unwrap();
    // The pointer to the far corner, outside the compared region.
    conn.warp_pointer(x11rb::NONE, root.root, 0, 0, 0, 0, 1910, 1070)
        .unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    conn
}

/// The X server's picture of the window's region as RGB, grabbed from the root.
fn grab_region(conn: &RustConnection) -> Vec<[u8; 3]> {
    let (x, y, w, h) = WIN;
    let root = conn.setup().roots[0].root;
    let mut out = Vec::with_capacity(w as usize * h as usize);
    for top in (0..h).step_by(32) {
        let rows = 32.min(h - top);
        let reply = conn
            .get_image(ImageFormat::Z_PIXMAP, root, x, y + top as i16, w, rows, !0)
            .unwrap()
            .reply()
            .unwrap();
        out.extend(reply.data.chunks_exact(4).map(|p| [p[2], p[1], p[0]]));
    }
    out
}

/// Reads a binary PPM (as `meshcall join --save-screen` writes it): (width, height, RGB).
fn read_ppm(path: &Path) -> (usize, usize, Vec<[u8; 3]>) {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&bytes[..32.min(bytes.len())]).into_owned();
    let mut fields = text.split_ascii_whitespace();
    assert_eq!(fields.next(), Some("P6"));
    let w: usize = fields.next().unwrap().parse().unwrap();
    let h: usize = fields.next().unwrap().parse().unwrap();
    let header = format!("P6\n{w} {h}\n255\n").len();
    let rgb = bytes[header..]
        .chunks_exact(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect::<Vec<_>>();
    assert_eq!(rgb.len(), w * h);
    (w, h, rgb)
}

/// BT.601 luma of RGB pixels, full range (the same formula on both sides of a comparison).
fn luma(rgb: &[[u8; 3]]) -> Vec<f64> {
    rgb.iter()
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect()
}

/// PSNR in dB of two pictures of the same size (infinite when equal).
fn psnr(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}

/// Mean SSIM over 8x8 windows at a stride of 4 (Wang et al. 2004, with their constants).
fn ssim(a: &[f64], b: &[f64], w: usize, h: usize) -> f64 {
    assert_eq!(a.len(), w * h);
    assert_eq!(b.len(), w * h);
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mut sum, mut count) = (0.0, 0usize);
    for y0 in (0..=h.saturating_sub(8)).step_by(4) {
        for x0 in (0..=w.saturating_sub(8)).step_by(4) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for y in y0..y0 + 8 {
                for x in x0..x0 + 8 {
                    let (p, q) = (a[y * w + x], b[y * w + x]);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let n = 64.0;
            let (ma, mb) = (sa / n, sb / n);
            let (va, vb) = (saa / n - ma * ma, sbb / n - mb * mb);
            let cov = sab / n - ma * mb;
            sum += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            count += 1;
        }
    }
    sum / count as f64
}

/// The picture `rgb` (w x h) cut to the text window's region of a full screen.
fn region(rgb: &[[u8; 3]], screen_w: usize) -> Vec<[u8; 3]> {
    let (x, y, w, h) = WIN;
    let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
    (y..y + h)
        .flat_map(|row| {
            rgb[row * screen_w + x..row * screen_w + x + w]
                .iter()
                .copied()
        })
        .collect()
}

#[test]
fn the_metrics_tell_legible_from_blurred_or_shifted_text() {
    let (w, h) = (WIN.2 as usize, WIN.3 as usize);
    let rgb: Vec<[u8; 3]> = render_text(w, h)
        .iter()
        .map(|c| [(c >> 16) as u8, (c >> 8) as u8, *c as u8])
        .collect();
    let src = luma(&rgb);
    assert!(psnr(&src, &src).is_infinite());
    assert!((ssim(&src, &src, w, h) - 1.0).abs() < 1e-9);
    // Mild noise, as a good encode leaves: passes.
    let noisy: Vec<f64> = src
        .iter()
        .enumerate()
        .map(|(i, v)| v + [-2.0, 1.0, 2.0, -1.0][i % 4])
        .collect();
    assert!(psnr(&src, &noisy) > 40.0, "{}", psnr(&src, &noisy));
    assert!(ssim(&src, &noisy, w, h) > 0.95);
    // A 3x3 box blur (text smeared as by a low bitrate or a scaler): fails both.
    let mut blurred = src.clone();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let mut s = 0.0;
            for dy in 0..3 {
                for dx in 0..3 {
                    s += src[(y + dy - 1) * w + x + dx - 1];
                }
            }
            blurred[y * w + x] = s / 9.0;
        }
    }
    let (p, s) = (psnr(&src, &blurred), ssim(&src, &blurred, w, h));
    eprintln!("blurred: PSNR {p:.1} dB, SSIM {s:.3}");
    assert!(p < 35.0 && s < 0.95, "blur passed: PSNR {p:.1} SSIM {s:.3}");
    // Shifted by one pixel (a misplaced region): fails both.
    let shifted: Vec<f64> = (0..w * h)
        .map(|i| if i % w == 0 { src[i] } else { src[i - 1] })
        .collect();
    let (p, s) = (psnr(&src, &shifted), ssim(&src, &shifted, w, h));
    eprintln!("shifted: PSNR {p:.1} dB, SSIM {s:.3}");
    assert!(
        p < 35.0 && s < 0.95,
        "shift passed: PSNR {p:.1} SSIM {s:.3}"
    );
}

#[test]
fn shared_fine_text_arrives_legible() {
    let Some(x) = Xvfb::start(1920, 1080) else {
        return;
    };
    let (w, h) = (WIN.2 as usize, WIN.3 as usize);
    let conn = show_window(&x.display, &render_text(w, h));
    let source = grab_region(&conn);
    // The server shows what the test drew (the reference is the screen, not our image).
    assert_eq!(source[8 * w + 8], [0xf4, 0xf1, 0xe8]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::default());
    let shot = std::env::temp_dir().join(format!("meshcall-legible-{}.ppm", std::process::id()));
    let _ = std::fs::remove_file(&shot);
    let screen = format!("x11:{}", x.display);
    let common_args = |name: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshcall"));
        cmd.args(["join", "--server", &server.ws_url(), "--name", name])
            .args(["--video", "none", "--audio", "none"])
            .env("MESHCALL_ICE_IP", "127.0.0.1")
            .env(
                "RUST_LOG",
                "warn,rtc_interceptor::registry=error,rtc_dtls=error,rtc_ice=error",
            )
            .stdout(Stdio::piped());
        cmd
    };
    // Ada shares from 1 s and stays past Bob, so Bob's last frame is the steady state
    // (the first frame takes ~2.5 s; Bob saves at 14 s).
    let mut ada = common_args("Ada")
        .args(["--screen", &screen, "--screen-at", "1", "--duration", "17"])
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(ada.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let room = line.trim().strip_prefix("room: ").unwrap().to_owned();
    let bob = common_args("Bob")
        .args(["--room", &room, "--duration", "14", "--report", "-"])
        .arg("--save-screen")
        .arg(&shot)
        .output()
        .unwrap();
    let _ = ada.kill();
    let _ = ada.wait();
    assert!(
        bob.status.success(),
        "Bob failed: {}",
        String::from_utf8_lossy(&bob.stderr)
    );
    let report = String::from_utf8_lossy(&bob.stdout);
    let (sw, sh, received) = read_ppm(&shot);
    let _ = std::fs::remove_file(&shot);
    assert_eq!((sw, sh), (1920, 1080), "received size; report: {report}");
    let got = region(&received, sw);
    let (a, b) = (luma(&source), luma(&got));
    let (p, s) = (psnr(&a, &b), ssim(&a, &b, w, h));
    eprintln!("received vs source text ({w}x{h} region): PSNR {p:.2} dB, SSIM {s:.4}");
    assert!(
        p >= 35.0 || s >= 0.95,
        "shared text is not legible: PSNR {p:.2} dB, SSIM {s:.4}; report: {report}"
    );
    drop(conn);
}

/// 5x7 glyphs, one byte per row, bit 4 = leftmost column (as the test pattern's).
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ' ' => [0; 7],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}
