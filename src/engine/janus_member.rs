//! A headless member of a Janus VideoRoom (issue 14, first increment): it publishes once
//! (the test pattern and a tone, encoded by our own encoders) and receives every other
//! publisher through one subscriber connection (Janus multistream), counting what arrives
//! per publisher.
//!
//! Both connections are built by the engine's [`PeerFactory`], exactly as mesh
//! connections are (codecs, NACK, GCC, keyframe requests delivered, ICE pinned). What is
//! not here yet: the engine's layers and per-peer policy, mute, names and chat, the move
//! from a mesh; see docs/sfu.md.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtp;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use super::keyframe_requests::is_keyframe_request;
use super::link_shaper::LinkShaper;
use super::pacer::LinkMeter;
use super::peer::local_track;
use super::peer_factory::{
    BitrateRange, H264_PT, OPUS_PT, PeerFactory, SendSide, negotiated_payload_type,
};
use super::video_receive::{Assembled, FrameBuffer};
use crate::media::audio::FRAME_SAMPLES;
use crate::media::audio::codec::{DEFAULT_BITRATE, OpusEncoder};
use crate::media::audio::tone::{ToneConfig, ToneGenerator};
use crate::media::video::{EncoderSettings, FrameTime, H264Decoder, H264Encoder, TestPattern};
use crate::sfu::janus::{
    Janus, JanusError, PublisherInfo, PublisherJoined, RoomConfig, Session, StreamInfo,
    SubscriberOffer, Trickler, VideoRoom, VideoRoomEvent,
};

/// RTP payload size for video: webrtc-rs' outbound MTU (1200) less header and extensions.
const PAYLOAD_MTU: usize = 1188;
/// Shortest gap between two keyframe requests for one incoming stream.
const PLI_INTERVAL: Duration = Duration::from_millis(300);
/// Encoded frames queued between the encoder thread and the writer task; a writer that
/// falls behind loses frames rather than growing a queue.
const SEND_QUEUE: usize = 8;
/// Access units queued for one stream's decoder thread.
const DECODE_QUEUE: usize = 8;
/// Our video bitrate before the congestion controller has an estimate (its initial
/// estimate is 600 kbit/s, `BitrateRange`), bits per second.
const START_VIDEO_BPS: u32 = 500_000;
/// The encoder's range while following the estimate, bits per second.
const MIN_VIDEO_BPS: u64 = 100_000;
/// See `MIN_VIDEO_BPS`: one 360p30 stream needs no more.
const MAX_VIDEO_BPS: u64 = 1_200_000;
/// What Opus and packet headers take, bits per second, kept out of the video's share.
const AUDIO_BPS: u64 = 40_000;
/// How often the estimate is looked at (as the mesh's peer task does).
const LINK_CHECK: Duration = Duration::from_millis(100);
/// How long a connection may take to come up (ICE + DTLS) before we call it failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a Janus member could not join or subscribe.
#[derive(Debug, thiserror::Error)]
pub enum JanusMemberError {
    /// Janus refused, or the connection to it failed.
    #[error(transparent)]
    Janus(#[from] JanusError),
    /// Our side of a peer connection failed (build, SDP, ICE).
    #[error("peer connection: {0}")]
    Connection(String),
    /// The encoders could not start.
    #[error("media: {0}")]
    Media(String),
}

pub(super) fn conn_err(e: impl std::fmt::Display) -> JanusMemberError {
    JanusMemberError::Connection(e.to_string())
}

/// How a Janus member joins.
#[derive(Debug, Clone)]
pub struct JanusMemberConfig {
    /// Janus' WebSocket API, e.g. `ws://127.0.0.1:8188`.
    pub url: String,
    /// The VideoRoom room number.
    pub room: u64,
    /// The room's pin, if it has one (rooms our server makes do).
    pub pin: Option<String>,
    /// Our display name (also written into the test pattern).
    pub name: String,
    /// Local addresses for ICE host candidates; tests pin 127.0.0.1.
    pub ice_ips: Vec<IpAddr>,
    /// Test pattern width in pixels.
    pub width: u32,
    /// Test pattern height in pixels.
    pub height: u32,
    /// Frames per second we send.
    pub fps: u32,
    /// Decode every received access unit (else only count complete ones).
    pub decode: bool,
}

/// What arrived from one publisher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedCounts {
    /// The publisher's feed id.
    pub feed: u64,
    /// Its display name, as Janus gave it.
    pub display: String,
    /// Complete H.264 access units received (every packet from marker to marker).
    pub video_units: u64,
    /// Of those, keyframes.
    pub keyframes: u64,
    /// Frames the decoder produced (0 when not decoding).
    pub decoded_frames: u64,
    /// Access units the decoder refused.
    pub decode_errors: u64,
    /// Opus packets received.
    pub audio_packets: u64,
    /// Times packets stayed missing and a unit was given up.
    pub losses: u64,
}

/// What we sent.
#[derive(Debug, Default)]
pub struct SentCounts {
    /// Video frames encoded and handed to the connection.
    pub video_frames: AtomicU64,
    /// Opus frames encoded and handed to the connection.
    pub audio_frames: AtomicU64,
    /// Keyframe requests (PLI/FIR) Janus sent us.
    pub keyframe_requests: AtomicU64,
}

type Counts = Arc<Mutex<HashMap<u64, FeedCounts>>>;
/// Which publisher (feed id, media kind) each SSRC Janus sends us belongs to.
type SsrcMap = Arc<Mutex<HashMap<u32, (u64, String)>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; survive a poisoned one anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connection callbacks, forwarded to the task that owns the connection's signaling.
/// Unbounded: the driver awaits these callbacks, and the volume is a few candidates and
/// state changes.
pub(super) enum PcEvent {
    Candidate(RTCIceCandidateInit),
    GatheringDone,
    State(RTCPeerConnectionState),
    Track(Arc<dyn TrackRemote>),
}

pub(super) struct Forward(pub(super) mpsc::UnboundedSender<PcEvent>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Forward {
    async fn on_ice_candidate(&self, ev: RTCPeerConnectionIceEvent) {
        if let Ok(init) = ev.candidate.to_json() {
            let _ = self.0.send(PcEvent::Candidate(init));
        }
    }
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(PcEvent::GatheringDone);
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(PcEvent::State(state));
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.0.send(PcEvent::Track(track));
    }
}

/// A member of a Janus room: one publisher connection, at most one subscriber connection.
/// [`JanusMember::leave`] ends everything; dropping it stops the encoder thread and
/// aborts the tasks (Janus then ends the session within its timeout).
pub struct JanusMember {
    config: JanusMemberConfig,
    // Field order is drop order: tasks and connections go before the session and socket.
    tasks: Vec<JoinHandle<()>>,
    source: Option<SourceThread>,
    publisher_pc: Arc<dyn PeerConnection>,
    subscriber_pc: Option<Arc<dyn PeerConnection>>,
    subscriber: Option<VideoRoom>,
    publisher: VideoRoom,
    joined: PublisherJoined,
    session: Option<Session>,
    _janus: Janus,
    factory: PeerFactory,
    counts: Counts,
    by_ssrc: SsrcMap,
    decoders: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
    sent: Arc<SentCounts>,
    /// Janus said our publisher connection is up.
    publisher_up: bool,
    /// Room events read while waiting for something else, not yet handed out.
    room_events: std::collections::VecDeque<VideoRoomEvent>,
}

impl Drop for JanusMember {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Creates a VideoRoom room for meshcall (H.264 42e01f + Opus) on the Janus at `url`.
pub async fn create_janus_room(url: &str, config: &RoomConfig) -> Result<u64, JanusError> {
    let janus = Janus::connect(url).await?;
    let session = janus.create_session().await?;
    let handle = VideoRoom::attach(&session).await?;
    let room = handle.create_room(config).await?;
    // Rooms made over the API outlive the session that made them.
    session.destroy().await?;
    Ok(room)
}

impl JanusMember {
    /// Joins `config.room` as a publisher and starts sending the test pattern and a tone.
    /// Returns once Janus has answered our offer; media flows when ICE and DTLS are up
    /// ([`JanusMember::wait_published`]).
    pub async fn publish(config: JanusMemberConfig) -> Result<Self, JanusMemberError> {
        let janus = Janus::connect(&config.url).await?;
        let session = janus.create_session().await?;
        let publisher = VideoRoom::attach(&session).await?;
        let joined = publisher
            .join_as_publisher(config.room, config.pin.as_deref(), &config.name)
            .await?;
        tracing::info!(name = %config.name, feed = joined.id, room = joined.room, "joined Janus room");

        let factory = PeerFactory {
            ice_ips: config.ice_ips.clone(),
            bitrate: BitrateRange::default(),
            ice_disconnected: Duration::from_secs(5),
            ice_failed: Duration::from_secs(25),
            link: LinkShaper::default(),
            relay_only: false,
        };
        let (audio_ssrc, video_ssrc) = (rand::random::<u32>(), rand::random::<u32>());
        let meter = Arc::new(LinkMeter::default());
        let send = SendSide {
            audio_ssrc,
            video_ssrc,
            meter: Arc::clone(&meter),
        };
        let (pc_tx, pc_rx) = mpsc::unbounded_channel();
        let pc = factory
            .build(&[], true, &send, Arc::new(Forward(pc_tx)))
            .await
            .map_err(conn_err)?;
        let stream_id = format!("janus{}", joined.id);
        let audio = local_track(&stream_id, RtpCodecKind::Audio, audio_ssrc);
        let video = local_track(&stream_id, RtpCodecKind::Video, video_ssrc);
        // Audio first, then video, as the mesh offers (engine.md, "m-section order").
        let audio_sender = pc
            .add_track(Arc::clone(&audio) as _)
            .await
            .map_err(conn_err)?;
        let video_sender = pc
            .add_track(Arc::clone(&video) as _)
            .await
            .map_err(conn_err)?;

        offer_to_publisher(&pc, &publisher, PublisherOffer::Publish).await?;
        // We offered, so our payload types stand; read them anyway, as the mesh does.
        let audio_pt = payload_type(&audio_sender, MIME_TYPE_OPUS, OPUS_PT).await;
        let video_pt = payload_type(&video_sender, MIME_TYPE_H264, H264_PT).await;

        let sent = Arc::new(SentCounts::default());
        let keyframe_wanted = Arc::new(AtomicBool::new(true));
        let (video_tx, video_rx) = mpsc::channel(SEND_QUEUE);
        let (audio_tx, audio_rx) = mpsc::channel(SEND_QUEUE);
        let video_bps = Arc::new(AtomicU32::new(START_VIDEO_BPS));
        let source = SourceThread::start(
            &config,
            Arc::clone(&keyframe_wanted),
            Arc::clone(&video_bps),
            video_tx,
            audio_tx,
            Arc::clone(&sent),
        )?;
        let tasks = vec![
            tokio::spawn(signal_publisher(
                pc_rx,
                publisher.handle().trickler(),
                Arc::clone(&keyframe_wanted),
            )),
            tokio::spawn(write_media(
                video_rx,
                audio_rx,
                Arc::clone(&video),
                Arc::clone(&audio),
                (video_ssrc, Arc::new(AtomicU8::new(video_pt))),
                (audio_ssrc, Arc::new(AtomicU8::new(audio_pt))),
            )),
            tokio::spawn(follow_link(meter, video_bps, Arc::clone(&keyframe_wanted))),
            tokio::spawn(watch_keyframe_requests(
                video,
                keyframe_wanted,
                Arc::clone(&sent),
            )),
        ];
        Ok(Self {
            config,
            tasks,
            source: Some(source),
            publisher_pc: pc,
            subscriber_pc: None,
            subscriber: None,
            publisher,
            joined,
            session: Some(session),
            _janus: janus,
            factory,
            counts: Arc::default(),
            by_ssrc: Arc::default(),
            decoders: Arc::default(),
            sent,
            publisher_up: false,
            room_events: std::collections::VecDeque::new(),
        })
    }

    /// Our feed id in the room.
    pub fn feed_id(&self) -> u64 {
        self.joined.id
    }

    /// What we have sent so far.
    pub fn sent(&self) -> &SentCounts {
        &self.sent
    }

    /// Waits until Janus reports our publisher connection up (`webrtcup`), at most
    /// `CONNECT_TIMEOUT`. Only then may others subscribe to us: VideoRoom refuses a feed
    /// whose media is not set up yet (428 "No such feed"), even when our side of the
    /// connection already says Connected.
    pub async fn wait_published(&mut self) -> Result<(), JanusMemberError> {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        while !self.publisher_up {
            let event = tokio::time::timeout_at(deadline, self.publisher.next_event()).await;
            match event {
                Err(_) => {
                    return Err(JanusMemberError::Connection(format!(
                        "Janus did not report our publisher up within {CONNECT_TIMEOUT:?}"
                    )));
                }
                Ok(None) => return Err(JanusMemberError::Janus(JanusError::Closed)),
                Ok(Some(VideoRoomEvent::WebrtcUp)) => {
                    self.publisher_up = true;
                }
                // Kept for `next_room_event`, in order.
                Ok(Some(other)) => self.room_events.push_back(other),
            }
        }
        Ok(())
    }

    /// Subscribes to every stream of `feeds`. The first call makes the subscriber
    /// connection (Janus offers, we answer); later calls add the feeds to it (Janus offers
    /// the grown session, we answer again). Returns once Janus has our answer.
    pub async fn subscribe(&mut self, feeds: &[u64]) -> Result<(), JanusMemberError> {
        if let (Some(subscriber), Some(pc)) = (&self.subscriber, &self.subscriber_pc) {
            let offer = subscriber.subscribe(feeds).await?;
            self.learn_streams(&offer);
            return answer(pc, subscriber, offer.sdp).await;
        }
        let Some(session) = &self.session else {
            return Err(JanusMemberError::Janus(JanusError::Closed));
        };
        let subscriber = VideoRoom::attach(session).await?;
        let offer = subscriber
            .join_as_subscriber(
                self.config.room,
                self.config.pin.as_deref(),
                self.joined.private_id,
                feeds,
            )
            .await?;
        self.learn_streams(&offer);
        let send = SendSide {
            // We send nothing on this connection; the pacer only needs two numbers.
            audio_ssrc: rand::random(),
            video_ssrc: rand::random(),
            meter: Arc::new(LinkMeter::default()),
        };
        let (pc_tx, pc_rx) = mpsc::unbounded_channel();
        let pc = self
            .factory
            .build(&[], false, &send, Arc::new(Forward(pc_tx)))
            .await
            .map_err(conn_err)?;
        answer(&pc, &subscriber, offer.sdp).await?;
        self.tasks.push(tokio::spawn(signal_subscriber(
            pc_rx,
            subscriber.handle().trickler(),
            Receiving {
                by_ssrc: Arc::clone(&self.by_ssrc),
                counts: Arc::clone(&self.counts),
                decoders: Arc::clone(&self.decoders),
                decode: self.config.decode,
            },
        )));
        self.subscriber = Some(subscriber);
        self.subscriber_pc = Some(pc);
        Ok(())
    }

    /// Notes which SSRC is which publisher's, and names the publishers.
    fn learn_streams(&self, offer: &SubscriberOffer) {
        lock(&self.by_ssrc).extend(feeds_by_ssrc(&offer.sdp, &offer.streams));
        let mut counts = lock(&self.counts);
        for s in &offer.streams {
            if let Some(feed) = s.feed_id {
                counts.entry(feed).or_insert_with(|| FeedCounts {
                    feed,
                    display: s.feed_display.clone().unwrap_or_default(),
                    ..FeedCounts::default()
                });
            }
        }
    }

    /// The publishers in the room when we joined (not us).
    pub fn publishers_at_join(&self) -> &[PublisherInfo] {
        &self.joined.publishers
    }

    /// The next thing VideoRoom says about the room to our publisher handle (publishers
    /// arriving and leaving); `None` once the connection to Janus is gone.
    pub async fn next_room_event(&mut self) -> Option<VideoRoomEvent> {
        if let Some(event) = self.room_events.pop_front() {
            return Some(event);
        }
        self.publisher.next_event().await
    }

    /// What arrived so far, per publisher, in feed order.
    pub fn counts(&self) -> Vec<FeedCounts> {
        let mut all: Vec<FeedCounts> = lock(&self.counts).values().cloned().collect();
        all.sort_by_key(|c| c.feed);
        all
    }

    /// Leaves the room: stops sending, closes both connections, ends the session and waits
    /// for every task and thread of this member.
    pub async fn leave(mut self) {
        self.source = None; // joins the encoder thread
        if let Some(sub) = &self.subscriber
            && let Err(e) = sub.leave().await
        {
            tracing::debug!("subscriber leave: {e}");
        }
        if let Err(e) = self.publisher.leave().await {
            tracing::debug!("publisher leave: {e}");
        }
        if let Some(pc) = self.subscriber_pc.take() {
            let _ = pc.close().await;
        }
        let _ = self.publisher_pc.close().await;
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(session) = self.session.take()
            && let Err(e) = session.destroy().await
        {
            tracing::debug!("session destroy: {e}");
        }
        // The decoder threads end when their queues' senders (in the aborted readers) go.
        let threads: Vec<_> = lock(&self.decoders).drain(..).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Answers Janus' subscription offer on `pc` and starts (or updates) the subscription.
pub(super) async fn answer(
    pc: &Arc<dyn PeerConnection>,
    subscriber: &VideoRoom,
    offer: String,
) -> Result<(), JanusMemberError> {
    pc.set_remote_description(RTCSessionDescription::offer(offer).map_err(conn_err)?)
        .await
        .map_err(conn_err)?;
    let answer = pc.create_answer(None).await.map_err(conn_err)?;
    pc.set_local_description(answer.clone())
        .await
        .map_err(conn_err)?;
    subscriber.start(&answer.sdp).await?;
    Ok(())
}

/// The payload type the connection negotiated for `mime`, or ours when it cannot tell.
/// Which request carries our publisher's offer to Janus.
#[derive(Clone, Copy)]
pub(super) enum PublisherOffer {
    /// The first: start publishing.
    Publish,
    /// A later one: what we publish changed (a share's stream added).
    Configure,
}

/// Offers our publisher's current tracks to Janus and applies its answer.
pub(super) async fn offer_to_publisher(
    pc: &Arc<dyn PeerConnection>,
    publisher: &VideoRoom,
    request: PublisherOffer,
) -> Result<(), JanusMemberError> {
    let offer = pc.create_offer(None).await.map_err(conn_err)?;
    pc.set_local_description(offer.clone())
        .await
        .map_err(conn_err)?;
    let answer = match request {
        PublisherOffer::Publish => publisher.publish(&offer.sdp).await?,
        PublisherOffer::Configure => publisher.configure(&offer.sdp).await?,
    };
    pc.set_remote_description(RTCSessionDescription::answer(answer).map_err(conn_err)?)
        .await
        .map_err(conn_err)
}

pub(super) async fn payload_type(sender: &Arc<dyn RtpSender>, mime: &str, ours: u8) -> u8 {
    match sender.get_parameters().await {
        Ok(p) => negotiated_payload_type(&p.rtp_parameters.codecs, mime).unwrap_or(ours),
        Err(e) => {
            tracing::debug!("no send parameters: {e}");
            ours
        }
    }
}

/// Which publisher each SSRC in Janus' subscription offer comes from: the offer names
/// each m-section's SSRC (`a=ssrc:`) and mid, and VideoRoom's stream list maps mids to
/// feeds.
pub(super) fn feeds_by_ssrc(sdp: &str, streams: &[StreamInfo]) -> HashMap<u32, (u64, String)> {
    streams_by_ssrc(sdp, streams)
        .into_iter()
        .filter_map(|(ssrc, s)| Some((ssrc, (s.feed_id?, s.kind))))
        .collect()
}

/// Which of Janus' subscription streams each SSRC in its offer belongs to (by the
/// m-section's mid).
pub(super) fn streams_by_ssrc(sdp: &str, streams: &[StreamInfo]) -> HashMap<u32, StreamInfo> {
    let mut out = HashMap::new();
    let mut mid: Option<String> = None;
    let mut ssrcs: Vec<u32> = Vec::new();
    let mut flush = |mid: &Option<String>, ssrcs: &mut Vec<u32>| {
        if let Some(m) = mid
            && let Some(s) = streams.iter().find(|s| s.mid.as_deref() == Some(m))
        {
            for ssrc in ssrcs.iter() {
                out.insert(*ssrc, s.clone());
            }
        }
        ssrcs.clear();
    };
    for line in sdp.lines() {
        let line = line.trim_end();
        if line.starts_with("m=") {
            flush(&mid, &mut ssrcs);
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.to_owned());
        } else if let Some(rest) = line.strip_prefix("a=ssrc:")
            && let Some(Ok(ssrc)) = rest.split_whitespace().next().map(str::parse::<u32>)
            && !ssrcs.contains(&ssrc)
        {
            ssrcs.push(ssrc);
        }
    }
    flush(&mid, &mut ssrcs);
    out
}

/// Trickles the publisher connection's candidates and watches its state.
async fn signal_publisher(
    mut events: mpsc::UnboundedReceiver<PcEvent>,
    trickle: Trickler,
    keyframe_wanted: Arc<AtomicBool>,
) {
    while let Some(ev) = events.recv().await {
        match ev {
            PcEvent::Candidate(c) => send_candidate(&trickle, &c).await,
            PcEvent::GatheringDone => {
                if let Err(e) = trickle.completed().await {
                    tracing::debug!("trickle completed: {e}");
                }
            }
            PcEvent::State(s) => {
                tracing::debug!("publisher connection {s}");
                if s == RTCPeerConnectionState::Connected {
                    // Whatever was sent before DTLS was up is lost; start from a keyframe.
                    keyframe_wanted.store(true, Ordering::Relaxed);
                }
            }
            PcEvent::Track(_) => {}
        }
    }
}

pub(super) async fn send_candidate(trickle: &Trickler, c: &RTCIceCandidateInit) {
    if let Err(e) = trickle
        .candidate(&c.candidate, c.sdp_mid.as_deref(), c.sdp_mline_index)
        .await
    {
        tracing::debug!("trickle: {e}");
    }
}

/// What the subscriber's readers need.
struct Receiving {
    by_ssrc: SsrcMap,
    counts: Counts,
    decoders: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
    decode: bool,
}

/// Trickles the subscriber connection's candidates and reads every track it gets.
async fn signal_subscriber(
    mut events: mpsc::UnboundedReceiver<PcEvent>,
    trickle: Trickler,
    receiving: Receiving,
) {
    let receiving = Arc::new(receiving);
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    while let Some(ev) = events.recv().await {
        match ev {
            PcEvent::Candidate(c) => send_candidate(&trickle, &c).await,
            PcEvent::GatheringDone => {
                if let Err(e) = trickle.completed().await {
                    tracing::debug!("trickle completed: {e}");
                }
            }
            PcEvent::State(s) => tracing::debug!("subscriber connection {s}"),
            PcEvent::Track(track) => {
                readers.push(tokio::spawn(read_track(track, Arc::clone(&receiving))));
            }
        }
    }
    for r in readers {
        let _ = r.await;
    }
}

/// Counts one incoming track: Opus packets, or complete H.264 access units (asking for a
/// keyframe while it has none, as the mesh receiver does), decoded when asked.
async fn read_track(track: Arc<dyn TrackRemote>, receiving: Arc<Receiving>) {
    // Which publisher this is: known from the first packet's SSRC.
    let mut feed: Option<u64> = None;
    let mut buffer = FrameBuffer::default();
    let mut need_keyframe = true;
    let mut last_pli: Option<Instant> = None;
    let mut media_ssrc = None;
    let mut last_seq: u16 = 0;
    let mut decoder: Option<Decoder> = None;
    let kind = track.kind().await;
    loop {
        let event = tokio::select! {
            ev = track.poll() => match ev {
                Some(ev) => Some(ev),
                None => break,
            },
            () = sleep_until(buffer.poll_timeout()) => None,
        };
        if let Some(TrackRemoteEvent::OnRtpPacket(p)) = event {
            last_seq = p.header.sequence_number;
            if feed.is_none() {
                media_ssrc = Some(p.header.ssrc);
                let known = lock(&receiving.by_ssrc)
                    .get(&p.header.ssrc)
                    .map(|(f, _)| *f);
                feed = Some(match known {
                    Some(f) => f,
                    None => {
                        tracing::warn!(ssrc = p.header.ssrc, "a stream from no known publisher");
                        0
                    }
                });
                if kind == RtpCodecKind::Video && receiving.decode {
                    decoder = start_decoder(feed.unwrap_or(0), &receiving);
                }
            }
            let f = feed.unwrap_or(0);
            if kind == RtpCodecKind::Audio {
                count(&receiving.counts, f, |c| c.audio_packets += 1);
                continue;
            }
            buffer.push(
                p.header.sequence_number,
                p.header.timestamp,
                p.header.marker,
                p.payload,
            );
        }
        let f = feed.unwrap_or(0);
        while let Some(out) = buffer.poll(Instant::now()) {
            match out {
                Assembled::Lost => {
                    need_keyframe = true;
                    count(&receiving.counts, f, |c| c.losses += 1);
                }
                Assembled::Unit(au) => {
                    need_keyframe |= au.follows_loss;
                    if au.keyframe {
                        need_keyframe = false;
                    }
                    count(&receiving.counts, f, |c| {
                        c.video_units += 1;
                        c.keyframes += u64::from(au.keyframe);
                    });
                    if !need_keyframe
                        && let Some(d) = &decoder
                        && d.units.try_send(au.data).is_err()
                    {
                        // A decoder behind by a whole queue skips units rather than
                        // delaying the stream; what follows refers to the skipped one,
                        // so it waits for the next keyframe.
                        need_keyframe = true;
                    }
                }
            }
        }
        if let Some(d) = &decoder {
            need_keyframe |= d.failed.swap(false, Ordering::Relaxed);
        }
        if need_keyframe
            && last_pli.is_none_or(|t| t.elapsed() >= PLI_INTERVAL)
            && let Some(media_ssrc) = media_ssrc
        {
            last_pli = Some(Instant::now());
            // Janus finds the stream an RTCP packet is about by the sender's SSRC (which it
            // does not know for a receive-only connection) or, failing that, by the first
            // report block or transport-feedback target; a lone PLI has neither, so Janus
            // 1.1 drops it ("Unknown SSRC", ice.c) and the publisher never hears it. A
            // reception report about the same stream in front (the compound packet RFC
            // 4585 asks for anyway) lets it through.
            let report = ReceiverReport {
                ssrc: 0,
                reports: vec![ReceptionReport {
                    ssrc: media_ssrc,
                    last_sequence_number: u32::from(last_seq),
                    ..ReceptionReport::default()
                }],
                profile_extensions: Bytes::new(),
            };
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            let _ = track
                .write_rtcp(vec![Box::new(report), Box::new(pli)])
                .await;
        }
    }
}

fn count(counts: &Counts, feed: u64, f: impl FnOnce(&mut FeedCounts)) {
    let mut all = lock(counts);
    let c = all.entry(feed).or_insert_with(|| FeedCounts {
        feed,
        ..FeedCounts::default()
    });
    f(c);
}

/// The way into one stream's decoder thread.
struct Decoder {
    /// Access units to decode; the thread ends when this is dropped.
    units: std::sync::mpsc::SyncSender<Bytes>,
    /// Set by the thread when a unit did not decode: the reader asks for a keyframe.
    failed: Arc<AtomicBool>,
}

/// Starts a thread decoding one stream's access units.
fn start_decoder(feed: u64, receiving: &Receiving) -> Option<Decoder> {
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("no decoder for feed {feed}: {e}");
            return None;
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(DECODE_QUEUE);
    let counts = Arc::clone(&receiving.counts);
    let failed = Arc::new(AtomicBool::new(false));
    let failing = Arc::clone(&failed);
    let spawned = std::thread::Builder::new()
        .name(format!("janus-decode-{feed}"))
        .spawn(move || {
            while let Ok(au) = rx.recv() {
                match decoder.decode(&au) {
                    Ok(Some(_)) => count(&counts, feed, |c| c.decoded_frames += 1),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!("feed {feed}: decode failed: {e}");
                        count(&counts, feed, |c| c.decode_errors += 1);
                        failing.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
    match spawned {
        Ok(t) => {
            lock(&receiving.decoders).push(t);
            Some(Decoder { units: tx, failed })
        }
        Err(e) => {
            tracing::warn!("cannot start a decoder thread: {e}");
            None
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Follows what the congestion controller says about the path to Janus, as the mesh's peer
/// task does: the encoder's bitrate tracks the estimate (our pacer drops video that waits
/// over 500 ms, so an encoder above the estimate loses frames, and every subscriber with
/// them), and video the pacer dropped is repaired by a keyframe at once.
async fn follow_link(meter: Arc<LinkMeter>, video_bps: Arc<AtomicU32>, keyframe: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(LINK_CHECK);
    loop {
        tick.tick().await;
        if meter.video_gap.swap(false, Ordering::Relaxed) {
            keyframe.store(true, Ordering::Relaxed);
        }
        let estimate = meter.estimate_bps.load(Ordering::Relaxed);
        if estimate == 0 {
            continue;
        }
        // Leave room for audio and packet overhead.
        let target = (estimate as f64 * 0.85) as u64;
        let target = target
            .saturating_sub(AUDIO_BPS)
            .clamp(MIN_VIDEO_BPS, MAX_VIDEO_BPS) as u32;
        let now = video_bps.load(Ordering::Relaxed);
        if f64::from(target.abs_diff(now)) > f64::from(now) * 0.1 {
            video_bps.store(target, Ordering::Relaxed);
        }
    }
}

/// Marks a keyframe as wanted whenever Janus forwards a PLI/FIR for our video.
async fn watch_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    wanted: Arc<AtomicBool>,
    sent: Arc<SentCounts>,
) {
    while let Some(ev) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(packets) = ev
            && packets.iter().any(|p| is_keyframe_request(p.as_ref()))
        {
            sent.keyframe_requests.fetch_add(1, Ordering::Relaxed);
            wanted.store(true, Ordering::Relaxed);
        }
    }
}

/// One encoded video frame for the writer.
struct VideoOut {
    data: Bytes,
    /// RTP timestamp, 90 kHz, from the capture clock.
    timestamp: u32,
}

/// Packetizes and writes what the encoder thread produced.
async fn write_media(
    mut video_rx: mpsc::Receiver<VideoOut>,
    mut audio_rx: mpsc::Receiver<Bytes>,
    video: Arc<TrackLocalStaticRTP>,
    audio: Arc<TrackLocalStaticRTP>,
    (video_ssrc, video_pt): (u32, Arc<AtomicU8>),
    (audio_ssrc, audio_pt): (u32, Arc<AtomicU8>),
) {
    let mut payloader = H264Payloader::default();
    let mut video_seq: u16 = rand::random();
    let mut audio_seq: u16 = rand::random();
    let mut audio_ts: u32 = rand::random();
    let header = |pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool| rtp::header::Header {
        version: 2,
        marker,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..Default::default()
    };
    loop {
        tokio::select! {
            frame = video_rx.recv() => {
                let Some(frame) = frame else { break };
                let payloads = match payloader.payload(PAYLOAD_MTU, &frame.data) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!("cannot packetize a frame: {e}");
                        continue;
                    }
                };
                let last = payloads.len().saturating_sub(1);
                for (i, payload) in payloads.into_iter().enumerate() {
                    let pt = video_pt.load(Ordering::Relaxed);
                    let packet = rtp::Packet {
                        header: header(pt, video_seq, frame.timestamp, video_ssrc, i == last),
                        payload,
                    };
                    video_seq = video_seq.wrapping_add(1);
                    if let Err(e) = video.write_rtp(packet).await {
                        tracing::trace!("video packet not sent: {e}");
                    }
                }
            }
            packet = audio_rx.recv() => {
                let Some(payload) = packet else { break };
                let pt = audio_pt.load(Ordering::Relaxed);
                let packet = rtp::Packet {
                    header: header(pt, audio_seq, audio_ts, audio_ssrc, false),
                    payload,
                };
                audio_seq = audio_seq.wrapping_add(1);
                audio_ts = audio_ts.wrapping_add(FRAME_SAMPLES as u32);
                if let Err(e) = audio.write_rtp(packet).await {
                    tracing::trace!("audio packet not sent: {e}");
                }
            }
        }
    }
}

/// The thread that renders the test pattern and a tone and encodes both, on a real-time
/// clock. Dropping this stops and joins it.
struct SourceThread {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SourceThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SourceThread {
    fn start(
        config: &JanusMemberConfig,
        keyframe_wanted: Arc<AtomicBool>,
        video_bps: Arc<AtomicU32>,
        video_tx: mpsc::Sender<VideoOut>,
        audio_tx: mpsc::Sender<Bytes>,
        sent: Arc<SentCounts>,
    ) -> Result<Self, JanusMemberError> {
        let media = |e: &dyn std::fmt::Display| JanusMemberError::Media(e.to_string());
        let fps = config.fps.clamp(1, 60);
        let mut pattern =
            TestPattern::new(&config.name, config.width, config.height).map_err(|e| media(&e))?;
        let mut encoder = H264Encoder::new(EncoderSettings {
            bitrate_bps: START_VIDEO_BPS,
            frame_rate: fps as f32,
        })
        .map_err(|e| media(&e))?;
        let mut opus = OpusEncoder::new(DEFAULT_BITRATE, 0).map_err(|e| media(&e))?;
        let mut tone = ToneGenerator::new(ToneConfig::default());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("janus-source".to_owned())
            .spawn(move || {
                let start = Instant::now();
                let frame_every = Duration::from_secs(1) / fps;
                let audio_every = crate::media::audio::FRAME_DURATION;
                let (mut next_video, mut next_audio) = (start, start);
                let rtp_base: u32 = rand::random();
                while !stopping.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now >= next_audio {
                        next_audio += audio_every;
                        let frame = tone.next_frame(now);
                        match opus.encode(&frame.samples) {
                            Ok(bytes) => {
                                if audio_tx.try_send(Bytes::copy_from_slice(bytes)).is_ok() {
                                    sent.audio_frames.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(e) => tracing::debug!("opus: {e}"),
                        }
                    }
                    if now >= next_video {
                        next_video += frame_every;
                        let want = video_bps.load(Ordering::Relaxed);
                        if want != encoder.settings().bitrate_bps
                            && let Err(e) = encoder.set_bitrate(want)
                        {
                            tracing::debug!("h264 bitrate {want}: {e}");
                        }
                        if keyframe_wanted.swap(false, Ordering::Relaxed) {
                            encoder.request_keyframe();
                        }
                        let picture = pattern.render(FrameTime::now());
                        match encoder.encode(&picture) {
                            Ok(Some(encoded)) => {
                                let ticks = (now - start).as_micros() * 9 / 100;
                                let out = VideoOut {
                                    data: Bytes::from(encoded.data),
                                    timestamp: rtp_base.wrapping_add(ticks as u32),
                                };
                                if video_tx.try_send(out).is_ok() {
                                    sent.video_frames.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    // The frame is lost; the next keyframe repairs it.
                                    keyframe_wanted.store(true, Ordering::Relaxed);
                                }
                            }
                            Ok(None) => {}
                            Err(e) => tracing::debug!("h264: {e}"),
                        }
                    }
                    let due = next_audio.min(next_video);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
            .map_err(|e| media(&e))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssrcs_in_janus_offer_map_to_their_publishers() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ssrc:111 cname:janus\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:1\r\na=ssrc:222 cname:janus\r\n\
                   a=ssrc:333 cname:janus\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\n\
                   a=ssrc:444 cname:janus\r\n";
        let stream = |mid: &str, kind: &str, feed: u64| StreamInfo {
            kind: kind.to_owned(),
            mindex: 0,
            mid: Some(mid.to_owned()),
            feed_id: Some(feed),
            feed_display: None,
            feed_mid: None,
            codec: None,
        };
        let streams = [
            stream("0", "audio", 7),
            stream("1", "video", 7),
            stream("2", "audio", 8),
        ];
        let map = feeds_by_ssrc(sdp, &streams);
        assert_eq!(map.get(&111), Some(&(7, "audio".to_owned())));
        assert_eq!(map.get(&333), Some(&(7, "video".to_owned())));
        assert_eq!(map.get(&444), Some(&(8, "audio".to_owned())));
        assert_eq!(map.len(), 4);
    }
}
