//! Screen sharing's cost per 1920×1080 frame: X11 capture (MIT-SHM and plain GetImage,
//! pointer included), BGRX -> I420, and H.264 at share settings (2.5 Mbit/s, 10 fps); then
//! the CPU of a real 10 fps share, of the X11 screen and of the synthetic test screen.
//!
//! Run: `cargo bench --bench screen_capture`. Starts its own Xvfb at 1920x1080x24 and shows
//! the synthetic test screen (fine text, moving pointer) in a full-screen window, so the
//! encoder sees screen-like content changing every frame.
#![allow(clippy::unwrap_used)] // a benchmark: any failure should stop it loudly

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meshcall::media::video::convert::bgra_to_i420;
use meshcall::media::video::screen::{
    GrabOptions, ScreenCapture, ScreenConfig, ScreenGrabber, ScreenSource, ScreenTarget, TestScreen,
};
use meshcall::media::video::{
    EncoderSettings, FrameTime, H264Decoder, H264Encoder, I420Frame, i420_to_rgba,
};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, ImageFormat, WindowClass,
};
use x11rb::rust_connection::RustConnection;

const WIDTH: u16 = 1920;
const HEIGHT: u16 = 1080;
/// Distinct screen pictures cycled through.
const PICTURES: usize = 40;
/// Timed frames per stage.
const FRAMES: usize = 100;
const BITRATE_BPS: u32 = 2_500_000;
const FPS: u32 = 10;
/// Rows per PutImage: under the core protocol's 256 KiB request limit at 4 bytes a pixel.
const STRIP_ROWS: u16 = 30;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Shows pictures in a full-screen window on its own connection (like another app would).
struct Canvas {
    conn: RustConnection,
    window: u32,
    gc: u32,
}

impl Canvas {
    fn open(display: &str) -> Self {
        let (conn, screen) = RustConnection::connect(Some(display)).expect("connect to Xvfb");
        let root = conn.setup().roots[screen].clone();
        let window = conn.generate_id().unwrap();
        conn.create_window(
            0,
            window,
            root.root,
            0,
            0,
            WIDTH,
            HEIGHT,
            0,
            WindowClass::INPUT_OUTPUT,
            root.root_visual,
            &CreateWindowAux::new().override_redirect(1),
        )
        .unwrap();
        conn.map_window(window).unwrap();
        let gc = conn.generate_id().unwrap();
        conn.create_gc(gc, window, &CreateGCAux::new()).unwrap();
        Self { conn, window, gc }
    }

    fn show(&self, bgrx: &[u8]) {
        let row_bytes = usize::from(WIDTH) * 4;
        for top in (0..HEIGHT).step_by(usize::from(STRIP_ROWS)) {
            let rows = STRIP_ROWS.min(HEIGHT - top);
            let start = usize::from(top) * row_bytes;
            let data = &bgrx[start..start + usize::from(rows) * row_bytes];
            self.conn
                .put_image(
                    ImageFormat::Z_PIXMAP,
                    self.window,
                    self.gc,
                    WIDTH,
                    rows,
                    0,
                    top as i16,
                    0,
                    24,
                    data,
                )
                .unwrap();
        }
        self.conn.get_input_focus().unwrap().reply().unwrap();
    }
}

fn xvfb() -> (Kill, String) {
    let mut child = Command::new("Xvfb")
        .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0"])
        .arg(format!("{WIDTH}x{HEIGHT}x24"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb (scripts/setup --test installs it)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let display = format!(":{}", line.trim());
    (Kill(child), display)
}

/// The test screen's frames as BGRX, as an app would draw them.
fn pictures() -> Vec<Vec<u8>> {
    let mut screen = TestScreen::new(u32::from(WIDTH), u32::from(HEIGHT)).unwrap();
    (0..PICTURES)
        .map(|_| {
            let mut px = i420_to_rgba(&screen.render(FrameTime::now()))
                .unwrap()
                .pixels;
            for p in px.chunks_exact_mut(4) {
                p.swap(0, 2);
            }
            px
        })
        .collect()
}

/// Milliseconds: mean and 95th percentile (nearest rank).
fn stats(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    let p95 = samples
        .get((samples.len() * 95).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    (mean, p95)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let (_x, display) = xvfb();
    let canvas = Canvas::open(&display);
    let pictures = pictures();
    let target = ScreenTarget::Screen;
    println!(
        "Screen share, {WIDTH}x{HEIGHT} test screen under Xvfb, {FRAMES} frames a stage, \
         H.264 {} kbit/s at {FPS} fps (openh264, 1 thread)",
        BITRATE_BPS / 1000
    );
    println!("{:<34} {:>9} {:>9}", "stage", "mean ms", "p95 ms");
    let row = |name: &str, samples: Vec<f64>| {
        let (mean, p95) = stats(samples);
        println!("{name:<34} {mean:>9.2} {p95:>9.2}");
        mean
    };

    for shm in [true, false] {
        let options = GrabOptions {
            shm,
            ..GrabOptions::default()
        };
        let mut grabber = ScreenGrabber::open(Some(&display), target, options).unwrap();
        let samples = (0..FRAMES)
            .map(|i| {
                canvas.show(&pictures[i % PICTURES]);
                let started = Instant::now();
                grabber.grab_raw().unwrap().expect("screen is readable");
                ms(started.elapsed())
            })
            .collect();
        assert_eq!(grabber.uses_shm(), shm);
        let name = if shm {
            "capture, MIT-SHM + pointer"
        } else {
            "capture, GetImage + pointer"
        };
        row(name, samples);
    }

    let mut grabber = ScreenGrabber::open(Some(&display), target, GrabOptions::default()).unwrap();
    let settings = EncoderSettings {
        bitrate_bps: BITRATE_BPS,
        frame_rate: FPS as f32,
    };
    let mut screen_encoder = H264Encoder::for_screen(settings).unwrap();
    let mut camera_encoder = H264Encoder::new(settings).unwrap();
    let (mut capture, mut convert, mut encode, mut total) = (vec![], vec![], vec![], vec![]);
    let mut camera_encode = vec![];
    // Legibility: luma PSNR of what a receiver decodes against what was captured.
    let (mut screen_decoder, mut camera_decoder) =
        (H264Decoder::new().unwrap(), H264Decoder::new().unwrap());
    let (mut screen_psnr, mut camera_psnr) = (vec![], vec![]);
    let (mut screen_bytes, mut camera_bytes, mut skipped) = (0usize, 0usize, 0usize);
    for i in 0..FRAMES {
        canvas.show(&pictures[i % PICTURES]);
        let t0 = Instant::now();
        let raw = grabber.grab_raw().unwrap().expect("screen is readable");
        let t1 = Instant::now();
        let frame = bgra_to_i420(
            raw.width,
            raw.height,
            raw.bgrx,
            raw.stride,
            FrameTime::now(),
        )
        .unwrap();
        let t2 = Instant::now();
        let screen_au = screen_encoder.encode(&frame).unwrap();
        let t3 = Instant::now();
        match screen_au {
            Some(au) => {
                screen_bytes += au.data.len();
                if let Some(decoded) = screen_decoder.decode(&au.data).unwrap() {
                    screen_psnr.push(luma_psnr(&frame, &decoded));
                }
            }
            None => skipped += 1,
        }
        capture.push(ms(t1 - t0));
        convert.push(ms(t2 - t1));
        encode.push(ms(t3 - t2));
        total.push(ms(t3 - t0));
        let t4 = Instant::now();
        let camera_au = camera_encoder.encode(&frame).unwrap();
        camera_encode.push(ms(t4.elapsed()));
        if let Some(au) = camera_au {
            camera_bytes += au.data.len();
            if let Some(decoded) = camera_decoder.decode(&au.data).unwrap() {
                camera_psnr.push(luma_psnr(&frame, &decoded));
            }
        }
    }
    row("convert BGRX -> I420", convert);
    row("encode, screen-content mode", encode);
    row("encode, camera mode (comparison)", camera_encode);
    let per_frame = row("capture + convert + encode", total);
    row("  of which capture (SHM)", capture);
    println!(
        "bytes a frame: screen mode {}, camera mode {} ({skipped} frames skipped by rate control)",
        screen_bytes / FRAMES,
        camera_bytes / FRAMES
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "decoded luma PSNR: screen mode {:.1} dB, camera mode {:.1} dB",
        mean(&screen_psnr),
        mean(&camera_psnr)
    );
    println!(
        "=> {:.0} frames/s on one core; a {FPS} fps share costs ~{:.0} % of a core in meshcall",
        1000.0 / per_frame,
        per_frame * f64::from(FPS) / 10.0
    );

    share_cpu(&display, &canvas, &pictures, settings);
}

/// A real share for 10 s: ScreenCapture at 10 fps, every frame encoded, the screen content
/// changing at 10 fps. Prints the CPU of capture + encode (this process minus the thread
/// that draws the content) and of the X server.
fn share_cpu(display: &str, canvas: &Canvas, pictures: &[Vec<u8>], settings: EncoderSettings) {
    let source = ScreenSource::X11 {
        display: Some(display.to_owned()),
        target: ScreenTarget::Screen,
    };
    share_cpu_of(source, Some((canvas, pictures)), settings);
    // The synthetic screen (`meshcall join --screen test`): rendering it is the capture.
    share_cpu_of(
        ScreenSource::Test {
            width: u32::from(WIDTH),
            height: u32::from(HEIGHT),
        },
        None,
        settings,
    );
}

/// [`share_cpu`] for one source; with `content`, a thread redraws the X screen at 10 fps
/// (its CPU is left out).
fn share_cpu_of(
    source: ScreenSource,
    content: Option<(&Canvas, &[Vec<u8>])>,
    settings: EncoderSettings,
) {
    const SECONDS: u64 = 10;
    let name = match &source {
        ScreenSource::Test { .. } => "test screen",
        _ => "X11 screen",
    };
    // The X server's CPU only matters when it is the source.
    let xvfb_pid = content
        .is_some()
        .then_some(())
        .and_then(|()| std::fs::read_dir("/proc").ok())
        .and_then(|dir| {
            dir.flatten().find_map(|e| {
                let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd).into_owned();
                (cmd.starts_with("Xvfb") && cmd.contains(&format!("{WIDTH}x{HEIGHT}x24")))
                    .then(|| e.file_name().to_string_lossy().into_owned())
            })
        });
    let capture = ScreenCapture::start(ScreenConfig::new(source)).unwrap();
    let mut encoder = H264Encoder::for_screen(settings).unwrap();
    let running = AtomicBool::new(true);
    std::thread::scope(|s| {
        let drawer = s.spawn(|| {
            let before = cpu_ticks("/proc/thread-self/stat");
            let Some((canvas, pictures)) = content else {
                return 0.0;
            };
            let mut i = 0;
            while running.load(Ordering::Relaxed) {
                canvas.show(&pictures[i % pictures.len()]);
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            cpu_ticks("/proc/thread-self/stat") - before
        });
        let process_before = cpu_ticks("/proc/self/stat");
        let xvfb_before = xvfb_pid
            .as_deref()
            .map(|p| cpu_ticks(&format!("/proc/{p}/stat")));
        let started = Instant::now();
        let mut frames = 0;
        while started.elapsed() < Duration::from_secs(SECONDS) {
            if let Some(frame) = capture.recv_timeout(Duration::from_millis(200)) {
                encoder.encode(&frame).unwrap();
                frames += 1;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        running.store(false, Ordering::Relaxed);
        let drawer_ticks = drawer.join().unwrap();
        let process = cpu_ticks("/proc/self/stat") - process_before;
        let tick = clock_ticks_per_second();
        let share = (process - drawer_ticks) / tick / elapsed * 100.0;
        let per_frame = share / 100.0 * elapsed * 1000.0 / f64::from(frames.max(1));
        print!(
            "10 fps share of the {name} for {SECONDS} s: {frames} frames, capture + encode \
             {share:.1} % of a core ({per_frame:.1} ms CPU a frame)"
        );
        if let (Some(p), Some(before)) = (&xvfb_pid, xvfb_before) {
            let x = (cpu_ticks(&format!("/proc/{p}/stat")) - before) / tick / elapsed * 100.0;
            print!(", X server {x:.1} % (incl. drawing the test content)");
        }
        println!();
    });
}

/// PSNR of the luma planes in dB (capped at 99 for identical pictures).
fn luma_psnr(a: &I420Frame, b: &I420Frame) -> f64 {
    let mse = a
        .y()
        .iter()
        .zip(b.y())
        .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
        .sum::<f64>()
        / a.y().len() as f64;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// utime + stime from a /proc stat file, in clock ticks.
fn cpu_ticks(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name may hold spaces; fields after its closing parenthesis are fixed.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the name.
    field(11) + field(12)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
