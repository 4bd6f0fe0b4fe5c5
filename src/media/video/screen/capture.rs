//! [`ScreenCapture`]: a share's frames on their own paced thread, shaped like
//! [`VideoCapture`](super::super::VideoCapture): latest-wins mailbox, stop and join on drop,
//! the reason it stopped on its own kept for the owner.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::super::VideoError;
use super::super::frame::{FrameTime, I420Frame};
use super::super::mailbox::Mailbox;
use super::super::scale::{downscale, fit_within};
use super::super::source::Capture;
use super::ScreenTarget;
use super::error::ScreenError;
use super::synthetic::TestScreen;
use super::unchanged::UnchangedFilter;
use super::x11::{GrabOptions, ScreenGrabber};

/// Frames kept for a consumer that falls behind; more would only add latency.
const MAILBOX_FRAMES: usize = 2;
/// Screen shares run at 1 to 30 frames a second; 5–15 is the intended range.
const MAX_FPS: u32 = 30;

/// Where a share's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenSource {
    /// The synthetic [`TestScreen`] at this size.
    Test {
        /// Width in pixels (even).
        width: u32,
        /// Height in pixels (even).
        height: u32,
    },
    /// Part of an X11 display.
    X11 {
        /// Display name such as `:0`; None uses `DISPLAY`.
        display: Option<String>,
        /// Screen, monitor or window.
        target: ScreenTarget,
    },
}

/// What to share and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenConfig {
    /// The source.
    pub source: ScreenSource,
    /// Frames per second, 1 to 30.
    pub fps: u32,
    /// Larger pictures are scaled down to fit this width, aspect kept.
    pub max_width: u32,
    /// Larger pictures are scaled down to fit this height, aspect kept.
    pub max_height: u32,
    /// Draw the mouse pointer in (X11 only; the test screen always has its own).
    pub cursor: bool,
    /// Leave out X11 pictures identical to the last one, still sending two a second
    /// (see [`super::unchanged`]); the test screen changes every frame anyway.
    pub skip_unchanged: bool,
}

impl ScreenConfig {
    /// `source` at 10 fps, up to 1920×1080, pointer drawn.
    pub fn new(source: ScreenSource) -> Self {
        Self {
            source,
            fps: 10,
            max_width: 1920,
            max_height: 1080,
            cursor: true,
            skip_unchanged: true,
        }
    }
}

/// A running share; dropping it stops and joins its thread.
pub type ScreenCapture = Capture<ScreenError>;

/// What the thread draws or reads each tick.
enum Producer {
    Test {
        screen: TestScreen,
        bound: (u32, u32),
    },
    X11 {
        grabber: Box<ScreenGrabber>,
        bound: (u32, u32),
        unchanged: Option<UnchangedFilter>,
    },
}

impl Producer {
    fn next(&mut self, now: FrameTime) -> Result<Option<I420Frame>, ScreenError> {
        match self {
            Self::Test { screen, bound } => {
                let frame = screen.render(now);
                let (w, h) = fit_within(frame.width(), frame.height(), bound.0, bound.1);
                if (w, h) == (frame.width(), frame.height()) {
                    Ok(Some(frame))
                } else {
                    Ok(Some(downscale(&frame, w, h)?))
                }
            }
            Self::X11 {
                grabber,
                bound,
                unchanged,
            } => {
                let Some(raw) = grabber.grab_raw()? else {
                    return Ok(None);
                };
                let size = (raw.width, raw.height);
                if unchanged
                    .as_mut()
                    .is_some_and(|f| f.is_repeat(raw.bgrx, size, now.instant))
                {
                    return Ok(None);
                }
                raw.to_frame(bound.0, bound.1, now).map(Some)
            }
        }
    }
}

impl Capture<ScreenError> {
    /// Starts sharing; no display, a window already gone and bad settings fail here.
    pub fn start(config: ScreenConfig) -> Result<Self, ScreenError> {
        if config.fps == 0 || config.fps > MAX_FPS {
            return Err(VideoError::InvalidFrameRate(config.fps).into());
        }
        let bound = (config.max_width, config.max_height);
        if bound.0 < 2 || bound.1 < 2 {
            return Err(VideoError::InvalidDimensions {
                width: bound.0,
                height: bound.1,
            }
            .into());
        }
        let producer = match config.source {
            ScreenSource::Test { width, height } => Producer::Test {
                screen: TestScreen::new(width, height)?,
                bound,
            },
            ScreenSource::X11 {
                ref display,
                target,
            } => {
                let options = GrabOptions {
                    cursor: config.cursor,
                    max_width: bound.0,
                    max_height: bound.1,
                    ..GrabOptions::default()
                };
                Producer::X11 {
                    grabber: Box::new(ScreenGrabber::open(display.as_deref(), target, options)?),
                    bound,
                    unchanged: config.skip_unchanged.then(UnchangedFilter::default),
                }
            }
        };
        let mailbox = Arc::new(Mailbox::new(MAILBOX_FRAMES));
        let failure = Arc::new(Mutex::new(None));
        let (stop_tx, stop_rx) = mpsc::channel();
        let period = Duration::from_secs(1) / config.fps;
        let (m, f) = (Arc::clone(&mailbox), Arc::clone(&failure));
        let thread = std::thread::Builder::new()
            .name("screen-capture".into())
            .spawn(move || run(producer, period, &stop_rx, &m, &f))?;
        Ok(Self::from_thread(
            mailbox, failure, stop_tx, thread, "screen",
        ))
    }
}

/// Produces a frame every `period` until told to stop or the source fails for good.
fn run(
    mut producer: Producer,
    period: Duration,
    stop: &mpsc::Receiver<()>,
    mailbox: &Mailbox<I420Frame>,
    failure: &Mutex<Option<ScreenError>>,
) {
    let mut next = Instant::now();
    // Any message or a dropped sender ends the loop; only a timeout means "capture now".
    while let Err(RecvTimeoutError::Timeout) =
        stop.recv_timeout(next.saturating_duration_since(Instant::now()))
    {
        match producer.next(FrameTime::now()) {
            Ok(Some(frame)) => mailbox.push(frame),
            // Unmapped or minimised, or unchanged: nothing new to show now.
            Ok(None) => {}
            Err(ScreenError::Video(e)) => {
                warn!(error = %e, "dropping an unconvertible screen frame")
            }
            Err(e) => {
                debug!(error = %e, "screen capture ends");
                *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                break;
            }
        }
        next += period;
        // After a stall (suspended machine, debugger) skip ahead instead of bursting.
        if next + period < Instant::now() {
            next = Instant::now();
        }
    }
    mailbox.close();
    debug!("screen capture stopped");
}
