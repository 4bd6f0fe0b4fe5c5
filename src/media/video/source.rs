//! One capture interface for the test pattern and cameras: a paced thread with an owner.
//!
//! [`VideoCapture`] owns its thread: frames arrive through a small latest-wins mailbox, and
//! dropping the handle stops the thread and joins it.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::VideoError;
use super::camera::{Camera, CameraRequest};
use super::frame::I420Frame;
use super::frame::{FrameTime, plane_sizes};
use super::mailbox::Mailbox;
use super::pattern::TestPattern;

/// Frames kept for a consumer that falls behind; more would only add latency.
const MAILBOX_FRAMES: usize = 2;

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    /// The synthetic picture showing this name.
    TestPattern {
        /// Name drawn into the picture.
        name: String,
    },
    /// The test pattern, which stops after `frames` frames with an error, as an unplugged
    /// camera would: a diagnostic for the failure path (`meshcall join --video
    /// test:fail-after=N`), since no camera can be unplugged on a test machine.
    FailingPattern {
        /// Name drawn into the picture.
        name: String,
        /// Frames delivered before the failure.
        frames: u64,
    },
    /// A camera by its [`CameraInfo::index`](super::CameraInfo::index).
    Camera {
        /// Backend device index.
        index: u32,
    },
}

/// What to capture and how: the size and rate are requests for cameras, exact for the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The source.
    pub source: VideoSource,
    /// Wanted width in pixels.
    pub width: u32,
    /// Wanted height in pixels.
    pub height: u32,
    /// Wanted frames per second.
    pub fps: u32,
}

/// A running capture of frames from any source (a camera, the test pattern, a screen): a
/// paced thread with an owner, frames through a latest-wins mailbox, its failure kept for
/// the owner; dropping it stops and joins its thread. `E` is the source's error.
#[derive(Debug)]
pub struct Capture<E> {
    mailbox: Arc<Mailbox<I420Frame>>,
    failure: Arc<Mutex<Option<E>>>,
    /// Dropping this sender wakes and ends the thread at once.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// For the log line if the thread panicked.
    what: &'static str,
}

/// A running camera or test-pattern capture.
pub type VideoCapture = Capture<VideoError>;

impl<E> Capture<E> {
    /// Wraps a started thread that fills `mailbox` and reports into `failure`.
    pub(crate) fn from_thread(
        mailbox: Arc<Mailbox<I420Frame>>,
        failure: Arc<Mutex<Option<E>>>,
        stop: mpsc::Sender<()>,
        thread: JoinHandle<()>,
        what: &'static str,
    ) -> Self {
        Self {
            mailbox,
            failure,
            stop: Some(stop),
            thread: Some(thread),
            what,
        }
    }

    /// Takes the oldest waiting frame, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<I420Frame> {
        self.mailbox.pop_timeout(timeout)
    }

    /// Takes the oldest waiting frame without waiting.
    pub fn try_recv(&self) -> Option<I420Frame> {
        self.mailbox.try_pop()
    }

    /// Takes the newest frame and discards older ones: what a display or encoder wants.
    pub fn latest(&self) -> Option<I420Frame> {
        self.mailbox.pop_latest()
    }

    /// Frames discarded because the consumer was too slow.
    pub fn dropped_frames(&self) -> u64 {
        self.mailbox.dropped()
    }

    /// Why the capture stopped on its own (a camera unplugged, a shared window closed);
    /// reported once.
    pub fn take_failure(&self) -> Option<E> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// True once the capture thread has stopped producing.
    pub fn has_ended(&self) -> bool {
        self.mailbox.is_closed()
    }
}

impl<E> Drop for Capture<E> {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("{} capture thread panicked", self.what);
        }
    }
}

impl Capture<VideoError> {
    /// Starts capturing; camera errors (none, busy, ...) are returned here, not later.
    pub fn start(config: CaptureConfig) -> Result<Self, VideoError> {
        if config.fps == 0 || config.fps > 120 {
            return Err(VideoError::InvalidFrameRate(config.fps));
        }
        let mailbox = Arc::new(Mailbox::new(MAILBOX_FRAMES));
        let failure = Arc::new(Mutex::new(None));
        let (stop_tx, stop_rx) = mpsc::channel();
        let thread = match config.source {
            VideoSource::TestPattern { ref name } => {
                let pattern = TestPattern::new(name, config.width, config.height)?;
                let paced = Paced::new(pattern, config.fps, None);
                spawn_pattern(paced, stop_rx, (Arc::clone(&mailbox), Arc::clone(&failure)))?
            }
            VideoSource::FailingPattern { ref name, frames } => {
                let pattern = TestPattern::new(name, config.width, config.height)?;
                let paced = Paced::new(pattern, config.fps, Some(frames));
                spawn_pattern(paced, stop_rx, (Arc::clone(&mailbox), Arc::clone(&failure)))?
            }
            VideoSource::Camera { index } => {
                plane_sizes(config.width, config.height)?;
                let request = CameraRequest {
                    width: config.width,
                    height: config.height,
                    fps: config.fps,
                };
                let sinks = (Arc::clone(&mailbox), Arc::clone(&failure));
                spawn_camera(index, request, stop_rx, sinks)?
            }
        };
        Ok(Self::from_thread(
            mailbox, failure, stop_tx, thread, "video",
        ))
    }
}

/// The pattern with its pace, and the frame count after which it fails, if it should.
struct Paced {
    pattern: TestPattern,
    period: Duration,
    fail_after: Option<u64>,
}

impl Paced {
    fn new(pattern: TestPattern, fps: u32, fail_after: Option<u64>) -> Self {
        Self {
            pattern,
            period: Duration::from_secs(1) / fps,
            fail_after,
        }
    }
}

type Sinks = (Arc<Mailbox<I420Frame>>, Arc<Mutex<Option<VideoError>>>);

fn spawn_pattern(
    paced: Paced,
    stop: mpsc::Receiver<()>,
    (mailbox, failure): Sinks,
) -> Result<JoinHandle<()>, VideoError> {
    Ok(std::thread::Builder::new()
        .name("video-pattern".into())
        .spawn(move || run_pattern(paced, &stop, &mailbox, &failure))?)
}

/// Opens the camera on its own thread (nokhwa cameras are not `Send` everywhere) and
/// returns once it streams, or with the reason it could not.
fn spawn_camera(
    index: u32,
    request: CameraRequest,
    stop: mpsc::Receiver<()>,
    (mailbox, failure): Sinks,
) -> Result<JoinHandle<()>, VideoError> {
    let (opened_tx, opened_rx) = mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("video-camera".into())
        .spawn(move || match Camera::open(index, request) {
            Ok(camera) => {
                let _ = opened_tx.send(Ok(()));
                run_camera(camera, &stop, &mailbox, &failure);
            }
            Err(e) => {
                let _ = opened_tx.send(Err(e));
            }
        })?;
    // A thread that died without answering can only have panicked inside the backend.
    let opened = opened_rx.recv().unwrap_or(Err(VideoError::CameraFailed));
    if let Err(e) = opened {
        let _ = thread.join();
        return Err(e);
    }
    Ok(thread)
}

/// Renders frames on a fixed schedule until told to stop (or, failing on purpose, until
/// the frames it may deliver are delivered).
fn run_pattern(
    paced: Paced,
    stop: &mpsc::Receiver<()>,
    mailbox: &Mailbox<I420Frame>,
    failure: &Mutex<Option<VideoError>>,
) {
    let Paced {
        mut pattern,
        period,
        fail_after,
    } = paced;
    let mut next = Instant::now();
    let mut delivered = 0u64;
    // Any message or a dropped sender ends the loop; only a timeout means "render now".
    while let Err(RecvTimeoutError::Timeout) =
        stop.recv_timeout(next.saturating_duration_since(Instant::now()))
    {
        if fail_after.is_some_and(|n| delivered >= n) {
            // The failure is in the slot before the mailbox closes, as with a camera, so a
            // consumer that sees the end also finds why.
            *failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(VideoError::TestSourceFailed { frames: delivered });
            break;
        }
        mailbox.push(pattern.render(FrameTime::now()));
        delivered += 1;
        next += period;
        // After a stall (suspended machine, debugger) skip ahead instead of bursting.
        if next + period < Instant::now() {
            next = Instant::now();
        }
    }
    mailbox.close();
    debug!("pattern capture stopped");
}

/// Reads the camera (which paces itself) until told to stop or the device fails.
fn run_camera(
    mut camera: Camera,
    stop: &mpsc::Receiver<()>,
    mailbox: &Mailbox<I420Frame>,
    failure: &Mutex<Option<VideoError>>,
) {
    while let Err(mpsc::TryRecvError::Empty) = stop.try_recv() {
        match camera.capture() {
            Ok(frame) => mailbox.push(frame),
            Err(VideoError::Conversion(e)) => warn!(error = %e, "dropping unreadable camera frame"),
            Err(e) => {
                *failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                break;
            }
        }
    }
    mailbox.close();
    debug!("camera capture stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failing_pattern_delivers_its_frames_then_reports_why_it_ended() {
        let capture = VideoCapture::start(CaptureConfig {
            source: VideoSource::FailingPattern {
                name: "Ada".into(),
                frames: 5,
            },
            width: 160,
            height: 90,
            fps: 100,
        })
        .expect("the pattern starts");
        let mut frames = 0;
        while let Some(_frame) = capture.recv_timeout(Duration::from_secs(2)) {
            frames += 1;
        }
        assert_eq!(frames, 5);
        assert!(capture.has_ended());
        let failure = capture.take_failure();
        assert!(
            matches!(failure, Some(VideoError::TestSourceFailed { frames: 5 })),
            "{failure:?}"
        );
        assert!(capture.take_failure().is_none(), "reported once");
    }
}
