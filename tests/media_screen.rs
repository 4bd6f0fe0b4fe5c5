//! Screen sharing's media source against a real X server: each test starts its own Xvfb
//! (a free display number picked by Xvfb itself), draws windows of known content with
//! x11rb, captures them and compares. Without Xvfb these tests skip (and fail under CI).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::xvfb::Xvfb;

use meshcall::media::video::screen::unchanged::SETTLE;
use meshcall::media::video::screen::{
    GrabOptions, ListOptions, ScreenCapture, ScreenConfig, ScreenError, ScreenGrabber,
    ScreenSource, ScreenTarget, SourceKind, list_sources, window_title,
};
use meshcall::media::video::{
    EncoderSettings, FrameTime, H264Decoder, H264Encoder, I420Frame, i420_to_rgba, read_time_band,
};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ConnectionExt as _, CreateGCAux, CreateWindowAux, PropMode, Rectangle, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// A window the test draws into, on its own connection (as another app's would be).
struct TestWindow {
    conn: RustConnection,
    id: u32,
}

/// A filled rectangle: x, y, width, height, colour 0xRRGGBB.
type Fill = (i16, i16, u16, u16, u32);

impl TestWindow {
    /// Maps a window at `at` of `size` with this name, background and rectangles.
    fn open(display: &str, name: &str, at: (i16, i16), size: (u16, u16), fills: &[Fill]) -> Self {
        let (conn, screen) = RustConnection::connect(Some(display)).unwrap();
        let root = conn.setup().roots[screen].clone();
        let id = conn.generate_id().unwrap();
        conn.create_window(
            0,
            id,
            root.root,
            at.0,
            at.1,
            size.0,
            size.1,
            0,
            WindowClass::INPUT_OUTPUT,
            root.root_visual,
            &CreateWindowAux::new().background_pixel(0x80_80_80),
        )
        .unwrap();
        conn.change_property8(
            PropMode::REPLACE,
            id,
            AtomEnum::WM_NAME,
            AtomEnum::STRING,
            name.as_bytes(),
        )
        .unwrap();
        conn.map_window(id).unwrap();
        let window = Self { conn, id };
        window.draw(fills);
        window
    }

    fn draw(&self, fills: &[Fill]) {
        let gc = self.conn.generate_id().unwrap();
        self.conn
            .create_gc(gc, self.id, &CreateGCAux::new())
            .unwrap();
        for &(x, y, width, height, colour) in fills {
            self.conn
                .change_gc(
                    gc,
                    &x11rb::protocol::xproto::ChangeGCAux::new().foreground(colour),
                )
                .unwrap();
            self.conn
                .poly_fill_rectangle(
                    self.id,
                    gc,
                    &[Rectangle {
                        x,
                        y,
                        width,
                        height,
                    }],
                )
                .unwrap();
        }
        self.conn.free_gc(gc).unwrap();
        self.sync();
    }

    /// Waits until the server has executed everything sent so far.
    fn sync(&self) {
        self.conn.get_input_focus().unwrap().reply().unwrap();
    }

    fn destroy(&self) {
        self.conn.destroy_window(self.id).unwrap();
        self.sync();
    }
}

/// Four quadrants of saturated colour, the last one 1-pixel black and white stripes (the
/// hardest case for 4:2:0 and for a scaler: text strokes are one pixel wide).
fn quadrants(w: u16, h: u16) -> Vec<Fill> {
    let (hw, hh) = (w / 2, h / 2);
    let (x, y) = (hw as i16, hh as i16);
    let mut fills = vec![
        (0, 0, hw, hh, 0xd0_20_20),
        (x, 0, hw, hh, 0x20_c0_30),
        (0, y, hw, hh, 0x30_40_e0),
        (x, y, hw, hh, 0x00_00_00),
    ];
    for stripe in (0..hw).step_by(2) {
        fills.push((x + stripe as i16, y, 1, hh, 0xff_ff_ff));
    }
    fills
}

/// The RGB picture `fills` make on a grey background.
fn expected(w: usize, h: usize, fills: &[Fill]) -> Vec<[u8; 3]> {
    let mut img = vec![[0x80u8; 3]; w * h];
    for &(x, y, fw, fh, c) in fills {
        let rgb = [(c >> 16) as u8, (c >> 8) as u8, c as u8];
        for row in y as usize..(y as usize + fh as usize).min(h) {
            for col in x as usize..(x as usize + fw as usize).min(w) {
                img[row * w + col] = rgb;
            }
        }
    }
    img
}

/// PSNR in dB of a frame (after I420 -> RGB) against an RGB picture of the same size.
fn psnr(frame: &I420Frame, want: &[[u8; 3]]) -> f64 {
    let rgba = i420_to_rgba(frame).unwrap();
    assert_eq!(rgba.pixels.len() / 4, want.len(), "size differs");
    let mse = rgba
        .pixels
        .chunks(4)
        .zip(want)
        .flat_map(|(got, want)| (0..3).map(move |i| f64::from(got[i]) - f64::from(want[i])))
        .map(|d| d * d)
        .sum::<f64>()
        / (want.len() * 3) as f64;
    if mse == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

fn rgb_at(frame: &I420Frame, x: usize, y: usize) -> [u8; 3] {
    let rgba = i420_to_rgba(frame).unwrap();
    let at = (y * frame.width() as usize + x) * 4;
    [rgba.pixels[at], rgba.pixels[at + 1], rgba.pixels[at + 2]]
}

fn close(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance)
}

fn no_cursor() -> GrabOptions {
    GrabOptions {
        cursor: false,
        ..GrabOptions::default()
    }
}

#[test]
fn a_window_is_captured_as_drawn_through_shm_and_get_image() {
    let Some(x) = Xvfb::start(1920, 1080) else {
        return;
    };
    let fills = quadrants(320, 240);
    let window = TestWindow::open(&x.display, "known content", (100, 60), (320, 240), &fills);
    let want = expected(320, 240, &fills);
    for shm in [true, false] {
        let options = GrabOptions { shm, ..no_cursor() };
        let target = ScreenTarget::Window { id: window.id };
        let mut grabber = ScreenGrabber::open(Some(&x.display), target, options).unwrap();
        let frame = grabber
            .grab(FrameTime::now())
            .unwrap()
            .expect("window is viewable");
        assert_eq!(grabber.uses_shm(), shm, "Xvfb offers MIT-SHM 1.2");
        assert_eq!((frame.width(), frame.height()), (320, 240));
        let db = psnr(&frame, &want);
        assert!(db >= 35.0, "PSNR {db:.1} dB (shm {shm})");
        assert!(close(rgb_at(&frame, 80, 60), [0xd0, 0x20, 0x20], 4));
        assert!(close(rgb_at(&frame, 240, 60), [0x20, 0xc0, 0x30], 4));
        assert!(close(rgb_at(&frame, 80, 180), [0x30, 0x40, 0xe0], 4));
        // Single-pixel stripes survive: luma is kept at full resolution.
        assert!(close(rgb_at(&frame, 200, 180), [255, 255, 255], 3));
        assert!(close(rgb_at(&frame, 201, 180), [0, 0, 0], 3));
    }
    // The whole screen shows the same window at its place.
    let mut screen =
        ScreenGrabber::open(Some(&x.display), ScreenTarget::Screen, no_cursor()).unwrap();
    let frame = screen.grab(FrameTime::now()).unwrap().unwrap();
    assert_eq!((frame.width(), frame.height()), (1920, 1080));
    assert!(close(
        rgb_at(&frame, 100 + 80, 60 + 60),
        [0xd0, 0x20, 0x20],
        4
    ));
}

#[test]
fn the_pointer_is_drawn_in_where_it_is() {
    let Some(x) = Xvfb::start(1280, 720) else {
        return;
    };
    let window = TestWindow::open(
        &x.display,
        "pointer",
        (0, 0),
        (400, 300),
        &[(0, 0, 400, 300, 0x80_80_80)],
    );
    window
        .conn
        .warp_pointer(x11rb::NONE, window.id, 0, 0, 0, 0, 200, 150)
        .unwrap();
    window.sync();
    let target = ScreenTarget::Window { id: window.id };
    let mut plain = ScreenGrabber::open(Some(&x.display), target, no_cursor()).unwrap();
    let without = plain.grab(FrameTime::now()).unwrap().unwrap();
    let mut with = ScreenGrabber::open(Some(&x.display), target, GrabOptions::default()).unwrap();
    let with = with.grab(FrameTime::now()).unwrap().unwrap();
    let changed: Vec<(usize, usize)> = with
        .y()
        .iter()
        .zip(without.y())
        .enumerate()
        .filter(|(_, (a, b))| a.abs_diff(**b) > 40)
        .map(|(i, _)| (i % 400, i / 400))
        .collect();
    assert!(
        changed.len() >= 20,
        "pointer not drawn: {} pixels changed",
        changed.len()
    );
    for (px, py) in changed {
        assert!(
            px.abs_diff(200) <= 32 && py.abs_diff(150) <= 32,
            "change at {px},{py} is far from the pointer"
        );
    }
}

#[test]
fn windows_are_listed_by_name_with_thumbnails_and_our_own_left_out() {
    let Some(x) = Xvfb::start(1920, 1080) else {
        return;
    };
    let fills = quadrants(320, 240);
    let shared = TestWindow::open(
        &x.display,
        "Quarterly report - Editor",
        (40, 40),
        (320, 240),
        &fills,
    );
    let ours = TestWindow::open(&x.display, "meshcall", (600, 40), (200, 100), &[]);
    let options = ListOptions {
        exclude: vec![ours.id],
        ..ListOptions::default()
    };
    let sources = list_sources(Some(&x.display), &options).unwrap();

    let screen = &sources[0];
    assert_eq!(screen.kind, SourceKind::Screen);
    assert_eq!((screen.width, screen.height), (1920, 1080));
    let thumb = screen.thumbnail.as_ref().unwrap();
    assert_eq!((thumb.width(), thumb.height()), (240, 134));

    let found = sources
        .iter()
        .find(|s| s.target == ScreenTarget::Window { id: shared.id })
        .unwrap_or_else(|| panic!("window not listed: {sources:?}"));
    assert_eq!(found.kind, SourceKind::Window);
    assert_eq!(found.name, "Quarterly report - Editor");
    // "You are sharing …" names the window the same way.
    assert_eq!(
        window_title(Some(&x.display), shared.id).as_deref(),
        Some("Quarterly report - Editor")
    );
    assert_eq!((found.width, found.height), (320, 240));
    let thumb = found.thumbnail.as_ref().unwrap();
    assert_eq!((thumb.width(), thumb.height()), (240, 180));
    assert!(close(rgb_at(thumb, 60, 45), [0xd0, 0x20, 0x20], 6));
    // Stripes average to mid-grey when shrunk, rather than vanishing or aliasing.
    let grey = rgb_at(thumb, 180, 135);
    assert!(grey.iter().all(|&c| (100..=156).contains(&c)), "{grey:?}");

    assert!(
        sources
            .iter()
            .all(|s| s.target != ScreenTarget::Window { id: ours.id }),
        "our own window must not be offered"
    );
}

#[test]
fn a_vanished_window_is_a_typed_error_at_start_and_while_sharing() {
    let Some(x) = Xvfb::start(1280, 720) else {
        return;
    };
    let window = TestWindow::open(
        &x.display,
        "short-lived",
        (10, 10),
        (200, 150),
        &quadrants(200, 150),
    );
    let config = ScreenConfig {
        cursor: false,
        ..ScreenConfig::new(ScreenSource::X11 {
            display: Some(x.display.clone()),
            target: ScreenTarget::Window { id: window.id },
        })
    };
    let capture = ScreenCapture::start(config.clone()).unwrap();
    let first = capture
        .recv_timeout(Duration::from_secs(5))
        .expect("a frame");
    assert_eq!((first.width(), first.height()), (200, 150));

    window.destroy();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !capture.has_ended() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        capture.has_ended(),
        "capture still running after its window was destroyed"
    );
    let failure = capture.take_failure().expect("a reason");
    assert!(
        matches!(failure, ScreenError::WindowGone { id } if id == window.id),
        "{failure:?}"
    );

    let again = ScreenCapture::start(config).unwrap_err();
    assert!(matches!(again, ScreenError::WindowGone { .. }), "{again:?}");
    assert!(!again.is_unsupported());
}

#[test]
fn a_screen_larger_than_1080p_is_scaled_down_to_fit() {
    let Some(x) = Xvfb::start(2560, 1440) else {
        return;
    };
    let _left_half_red = TestWindow::open(
        &x.display,
        "red",
        (0, 0),
        (1280, 1440),
        &[(0, 0, 1280, 1440, 0xe0_10_10)],
    );
    let config = ScreenConfig {
        cursor: false,
        // The screen below is still; this test wants every tick's picture.
        skip_unchanged: false,
        ..ScreenConfig::new(ScreenSource::X11 {
            display: Some(x.display.clone()),
            target: ScreenTarget::Screen,
        })
    };
    let capture = ScreenCapture::start(config).unwrap();
    let frame = capture
        .recv_timeout(Duration::from_secs(5))
        .expect("a frame");
    assert_eq!((frame.width(), frame.height()), (1920, 1080));
    assert!(close(rgb_at(&frame, 480, 540), [0xe0, 0x10, 0x10], 6));
    assert!(!close(rgb_at(&frame, 1440, 540), [0xe0, 0x10, 0x10], 60));
    // Frames keep coming at the configured pace.
    let started = Instant::now();
    let mut more = 0;
    while started.elapsed() < Duration::from_secs(2) {
        if capture.recv_timeout(Duration::from_millis(500)).is_some() {
            more += 1;
        }
    }
    assert!(more >= 5, "only {more} frames in 2 s at 10 fps");
    assert_eq!(capture.take_failure().map(|e| e.to_string()), None);
}

#[test]
fn a_settled_still_screen_goes_out_twice_a_second_and_a_change_at_once() {
    let Some(x) = Xvfb::start(1280, 720) else {
        return;
    };
    let window = TestWindow::open(
        &x.display,
        "still",
        (0, 0),
        (1280, 720),
        &[(0, 0, 1280, 720, 0x20_40_80)],
    );
    let config = ScreenConfig {
        cursor: false,
        ..ScreenConfig::new(ScreenSource::X11 {
            display: Some(x.display.clone()),
            target: ScreenTarget::Screen,
        })
    };
    let capture = ScreenCapture::start(config).unwrap();
    capture
        .recv_timeout(Duration::from_secs(5))
        .expect("the first picture");
    // Every tick while the picture settles (the encoder sharpens it), then two a second.
    let settle = Instant::now() + SETTLE;
    while Instant::now() < settle {
        let _ = capture.recv_timeout(Duration::from_millis(100));
    }
    let started = Instant::now();
    let mut still = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        if capture.recv_timeout(Duration::from_millis(100)).is_some() {
            still += 1;
        }
    }
    assert!(
        (2..=7).contains(&still),
        "{still} pictures of a still screen in 2.5 s"
    );
    window.draw(&[(0, 0, 640, 360, 0xe0_10_10)]);
    let changed = Instant::now();
    loop {
        let frame = capture
            .recv_timeout(Duration::from_secs(2))
            .expect("a picture after the change");
        if close(rgb_at(&frame, 100, 100), [0xe0, 0x10, 0x10], 6) {
            break;
        }
    }
    let took = changed.elapsed();
    println!("still screen: {still} pictures in 2.5 s; a change arrived after {took:?}");
    assert!(
        took < Duration::from_millis(500),
        "the change took {took:?} to come out"
    );
    assert_eq!(capture.take_failure().map(|e| e.to_string()), None);
}

#[test]
fn no_reachable_display_is_unsupported_not_a_panic() {
    let config = ScreenConfig::new(ScreenSource::X11 {
        // Never served: the socket does not exist.
        display: Some(":6544".into()),
        target: ScreenTarget::Screen,
    });
    let err = ScreenCapture::start(config).unwrap_err();
    assert!(err.is_unsupported(), "{err:?}");
    assert!(err.to_string().contains("not supported here yet"), "{err}");
    let err = list_sources(Some(":6544"), &ListOptions::default()).unwrap_err();
    assert!(err.is_unsupported(), "{err:?}");
}

#[test]
fn the_test_screen_time_band_reads_back_after_h264_at_share_settings() {
    let capture = ScreenCapture::start(ScreenConfig::new(ScreenSource::Test {
        width: 1920,
        height: 1080,
    }))
    .unwrap();
    let mut encoder = H264Encoder::for_screen(EncoderSettings {
        bitrate_bps: 2_500_000,
        frame_rate: 10.0,
    })
    .unwrap();
    let mut decoder = H264Decoder::new().unwrap();
    let mut read = 0;
    for _ in 0..10 {
        let frame = capture
            .recv_timeout(Duration::from_secs(5))
            .expect("a frame");
        assert_eq!((frame.width(), frame.height()), (1920, 1080));
        let sent = frame.timestamp().unix_ms;
        assert_eq!(read_time_band(&frame), Some(sent));
        let Some(au) = encoder.encode(&frame).unwrap() else {
            continue;
        };
        if let Some(decoded) = decoder.decode(&au.data).unwrap() {
            assert_eq!(read_time_band(&decoded), Some(sent));
            read += 1;
        }
    }
    assert!(read >= 3, "only {read} frames decoded with a readable band");
}
