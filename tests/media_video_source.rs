//! The pattern capture thread: pacing, timestamps, bounded buffering and shutdown on drop.
//!
//! Alone in its own test binary so that counting the process's capture threads is not
//! disturbed by other tests starting captures in parallel.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use meshcall::media::video::{
    CaptureConfig, VideoCapture, VideoError, VideoSource, read_time_band,
};

/// Threads of this process with the given name (Linux names them in /proc).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == name)
        })
        .count()
}

fn pattern(fps: u32) -> CaptureConfig {
    CaptureConfig {
        source: VideoSource::TestPattern { name: "Ada".into() },
        width: 320,
        height: 180,
        fps,
    }
}

#[test]
fn pattern_capture_paces_stays_bounded_and_stops_on_drop() {
    assert_eq!(threads_named("video-pattern"), 0);
    let capture = VideoCapture::start(pattern(30)).unwrap();

    // About 30 frames in one second, each newer than the last, each carrying its time.
    let started = Instant::now();
    let mut frames = Vec::new();
    while started.elapsed() < Duration::from_secs(1) {
        if let Some(f) = capture.recv_timeout(Duration::from_millis(100)) {
            frames.push(f);
        }
    }
    assert!(
        (27..=33).contains(&frames.len()),
        "{} frames in 1 s",
        frames.len()
    );
    for pair in frames.windows(2) {
        let (a, b) = (pair[0].timestamp(), pair[1].timestamp());
        assert!(b.instant > a.instant && b.unix_ms >= a.unix_ms);
    }
    for f in &frames {
        assert_eq!(read_time_band(f), Some(f.timestamp().unix_ms));
    }
    assert_eq!(capture.dropped_frames(), 0, "a keen consumer loses nothing");

    // A consumer that stops reading: old frames are dropped, never queued up.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        capture.dropped_frames() >= 10,
        "dropped {}",
        capture.dropped_frames()
    );
    let newest = capture.latest().unwrap();
    assert!(newest.timestamp().instant.elapsed() < Duration::from_millis(100));
    assert!(
        capture.try_recv().is_none(),
        "latest() leaves nothing stale behind"
    );

    let stopping = Instant::now();
    drop(capture);
    assert!(
        stopping.elapsed() < Duration::from_millis(200),
        "drop wakes the thread at once"
    );
    assert_eq!(
        threads_named("video-pattern"),
        0,
        "the thread is joined on drop"
    );
}

#[test]
fn capture_rejects_unusable_requests() {
    let mut odd = pattern(30);
    odd.width = 321;
    assert!(matches!(
        VideoCapture::start(odd),
        Err(VideoError::InvalidDimensions { .. })
    ));
    assert!(matches!(
        VideoCapture::start(pattern(0)),
        Err(VideoError::InvalidFrameRate(0))
    ));
}
