//! One remote member: its peer connection and everything hanging off it. A task of its
//! own serializes every operation on the connection; webrtc-rs callbacks only forward
//! events to it (they run on the connection's driver, which must not be blocked or re-entered).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState,
};
use webrtc::rtp_transceiver::RtpSender;

use super::api::{LinkState, MemberStats};
use super::census::Census;
use super::keyframe_requests::is_keyframe_request;
use super::link_recovery::{LinkRecovery, RecoveryAction};
use super::local_media::LocalMedia;
use super::negotiation::Negotiation;
use super::pacer::LinkMeter;
use super::peer_factory::{H264_PT, OPUS_PT, PeerFactory, SendSide, negotiated_payload_type};
use super::stats::StatsTracker;
use super::video_fanout::LayerFrame;
use super::video_receive::{Assembled, FrameBuffer};
use crate::client::SignalSender;
use crate::media::pipeline::RemoteMediaSink;
use crate::proto::{ClientMessage, IceServer, PeerPayload};

/// Messages from the engine actor to a peer task.
#[derive(Debug)]
pub(crate) enum PeerInput {
    /// A payload the remote member signalled.
    Signal(PeerPayload),
    /// Our screen share started: the connection needs its screen track (added once, then
    /// kept; the first addition renegotiates).
    ScreenOn,
}

/// What a peer task reports to the actor.
#[derive(Debug)]
pub(crate) enum PeerEvent {
    Link(String, LinkState),
    Stats(String, Box<MemberStats>),
    /// The congestion controller's estimate moved a lot since the last event about it
    /// (bits per second): the video policy should act before the next stats tick.
    Estimate(String, u32),
}

/// How often the estimate is looked at between stats ticks.
const ESTIMATE_CHECK: Duration = Duration::from_millis(100);
/// A change of the estimate worth an early [`PeerEvent::Estimate`] (a fraction).
const ESTIMATE_CHANGE: f64 = 0.1;

/// Everything a peer task starts from.
pub(crate) struct PeerSetup {
    pub(crate) self_id: String,
    pub(crate) remote_id: String,
    /// We joined after them, so we make the first offer.
    pub(crate) initiator: bool,
    pub(crate) factory: PeerFactory,
    pub(crate) ice_servers: Vec<IceServer>,
    pub(crate) signal: SignalSender,
    pub(crate) media: Arc<LocalMedia>,
    pub(crate) sink: Arc<dyn RemoteMediaSink>,
    pub(crate) events: mpsc::Sender<PeerEvent>,
    pub(crate) stats_interval: Duration,
    /// Where ICE restarts are counted.
    pub(crate) census: Arc<Census>,
    /// The video layer to send them from the start (`None`: paused).
    pub(crate) initial_layer: Option<usize>,
}

/// The actor's handle on a peer task; dropping `input` ends the task, which then closes
/// the connection and waits for every task it started.
pub(crate) struct PeerHandle {
    pub(crate) input: mpsc::Sender<PeerInput>,
    pub(crate) task: JoinHandle<()>,
}

pub(crate) fn spawn(setup: PeerSetup) -> PeerHandle {
    let (input, rx) = mpsc::channel(256);
    let task = tokio::spawn(run(setup, rx));
    PeerHandle { input, task }
}

pub(super) enum PcEvent {
    Candidate(RTCIceCandidateInit),
    State(RTCPeerConnectionState),
    NegotiationNeeded,
    Track(Arc<dyn TrackRemote>),
}

/// Forwards connection callbacks. Unbounded on purpose: the driver awaits these callbacks,
/// so a full queue would stall the connection while our task waits on that same driver.
/// The volume is a handful of candidates and state changes per connection.
pub(super) struct Forward(pub(super) mpsc::UnboundedSender<PcEvent>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Forward {
    async fn on_ice_candidate(&self, ev: RTCPeerConnectionIceEvent) {
        if let Ok(init) = ev.candidate.to_json() {
            let _ = self.0.send(PcEvent::Candidate(init));
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(PcEvent::State(state));
    }
    async fn on_negotiation_needed(&self) {
        let _ = self.0.send(PcEvent::NegotiationNeeded);
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.0.send(PcEvent::Track(track));
    }
}

pub(super) fn local_track(
    stream_id: &str,
    kind: RtpCodecKind,
    ssrc: u32,
) -> Arc<TrackLocalStaticRTP> {
    labelled_track(stream_id, kind, ssrc, None)
}

/// Our screen share's track: video like the camera's, told apart by its m-section's place
/// (protocol.md: the second video m-section) and, between meshcall peers, by its id.
fn screen_track(stream_id: &str, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    labelled_track(stream_id, RtpCodecKind::Video, ssrc, Some("screen"))
}

fn labelled_track(
    stream_id: &str,
    kind: RtpCodecKind,
    ssrc: u32,
    label: Option<&str>,
) -> Arc<TrackLocalStaticRTP> {
    let (default_label, codec) = match kind {
        RtpCodecKind::Audio => (
            "mic",
            RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                ..Default::default()
            },
        ),
        _ => (
            "camera",
            RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90_000,
                ..Default::default()
            },
        ),
    };
    let label = label.unwrap_or(default_label);
    // The track id carries our id: webrtc-rs's driver routes inbound RTCP by track id and
    // looks among the remote tracks first, so with the same id on both ends ("camera")
    // every PLI for our video went to the remote camera track once it existed, and the
    // sender never heard a keyframe request after the first second of a call.
    let track_id = format!("{stream_id}-{label}");
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream_id.to_owned(),
        track_id,
        label.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
}

/// How long one restart attempt gets to connect: the time ICE takes to call it failed.
fn attempt_timeout(factory: &PeerFactory) -> Duration {
    factory.ice_disconnected + factory.ice_failed + Duration::from_secs(1)
}

async fn sleep_until(due: Option<std::time::Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

async fn run(setup: PeerSetup, mut input: mpsc::Receiver<PeerInput>) {
    let id = setup.remote_id.clone();
    let (pc_tx, mut pc_rx) = mpsc::unbounded_channel();
    let meter = Arc::new(LinkMeter::default());
    let send = SendSide {
        audio_ssrc: setup.media.audio.ssrc(),
        video_ssrc: setup.media.video.ssrc(),
        meter: Arc::clone(&meter),
    };
    let tally = Arc::new(ReceiveTally::default());
    let pc = match setup
        .factory
        .build_sharing(
            &setup.ice_servers,
            setup.initiator,
            &send,
            Some(setup.media.screen.ssrc()),
            Arc::new(Forward(pc_tx)),
        )
        .await
    {
        Ok(pc) => pc,
        Err(e) => {
            tracing::warn!(peer = %id, "cannot create a peer connection: {e}");
            let _ = setup
                .events
                .send(PeerEvent::Link(id, LinkState::Failed))
                .await;
            return;
        }
    };
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let video = local_track(
        &setup.self_id,
        RtpCodecKind::Video,
        setup.media.video.ssrc(),
    );
    let audio = local_track(
        &setup.self_id,
        RtpCodecKind::Audio,
        setup.media.audio.ssrc(),
    );
    // Audio first, then the camera: the m-sections of our offers follow this order. Browsers
    // put audio first too, and aiortc 1.16 answering with max-bundle and audio as its first
    // transceiver gathers no candidates for an offer whose first m-section is video.
    // protocol.md pins only the video order (the first video m-section is the camera).
    let audio_sender = add_local_track(&pc, &audio, &id).await;
    let video_sender = add_local_track(&pc, &video, &id).await;
    // Our share's track comes after the camera's, so its m-section is the second video one.
    // Joining while we share, our first offer carries it; otherwise it is added when the
    // share starts or, answering a newcomer, right after the first answer (see
    // `add_screen`), so the newcomer's own first offer decides the first m-sections.
    let mut screen = ScreenSend::new(&setup.self_id, setup.media.screen.ssrc());
    if setup.initiator && setup.media.screen_on() {
        screen.sender = add_local_track(&pc, &screen.track, &id).await;
    }
    // Adding our tracks to the fresh connection raised exactly one negotiation-needed
    // (webrtc-rs raises no second one while that negotiation is open, and checks again
    // itself when signaling returns to stable). It reaches the loop below through another
    // channel than the peer's offer, so an answerer may see it only after answering, and
    // then made a needless second offer at once: aiortc 1.16, which made the first offer,
    // fails on that one (`_offerDirection` is None) and the call never came up.
    let mut setup_negotiation_event = audio_sender.is_some() || video_sender.is_some();
    // Keyframe requests for our video arrive on our track (thanks to the interceptor).
    tasks.push(tokio::spawn(watch_keyframe_requests(
        Arc::clone(&video),
        Arc::clone(&setup.media),
        id.clone(),
    )));

    let mut neg = Negotiation::new(&setup.self_id, &id);
    let signal = |payload: PeerPayload| {
        let sender = setup.signal.clone();
        let to = id.clone();
        async move {
            sender
                .send(ClientMessage::Signal {
                    to,
                    payload: payload.to_payload(),
                })
                .await;
        }
    };
    if setup.initiator {
        match neg.offer(&pc).await {
            Ok(offer) => signal(offer).await,
            Err(e) => tracing::warn!(peer = %id, "cannot make an offer: {e}"),
        }
    }

    // Read again after every exchange: an offer may renumber the codecs (JSEP asks peers
    // to keep them, but nothing makes them), and stale numbers would be dropped unseen.
    let video_pt = Arc::new(AtomicU8::new(H264_PT));
    let audio_pt = Arc::new(AtomicU8::new(OPUS_PT));
    let refresh_payload_types = || async {
        video_pt.store(
            payload_type(video_sender.as_ref(), MIME_TYPE_H264, H264_PT).await,
            Ordering::Relaxed,
        );
        audio_pt.store(
            payload_type(audio_sender.as_ref(), MIME_TYPE_OPUS, OPUS_PT).await,
            Ordering::Relaxed,
        );
    };
    let mut legs_added = false;
    let mut recovery = LinkRecovery::new(neg.impolite(), attempt_timeout(&setup.factory));
    let report = |link: LinkState| {
        let events = setup.events.clone();
        let id = id.clone();
        async move {
            let _ = events.send(PeerEvent::Link(id, link)).await;
        }
    };
    let mut stats = StatsTracker::default();
    let mut tick = tokio::time::interval(setup.stats_interval);
    // A cut of the estimate must reach the encoders at once: until it does they produce at
    // the old rate, the pacer holds (and then drops) what the link no longer carries, and
    // the far end asks for keyframes. Stats come only once a second.
    let mut estimate_check = tokio::time::interval(ESTIMATE_CHECK);
    let mut estimate_told = 0u64;
    loop {
        tokio::select! {
            msg = input.recv() => match msg {
                None => break,
                Some(PeerInput::Signal(payload)) => {
                    let description = matches!(payload, PeerPayload::Sdp(_));
                    match neg.on_payload(&pc, payload).await {
                        Ok(Some(reply)) => signal(reply).await,
                        Ok(None) => {}
                        Err(e) => tracing::warn!(peer = %id, "negotiation step failed: {e}"),
                    }
                    if description && legs_added {
                        refresh_payload_types().await;
                        screen.refresh_payload_type().await;
                    }
                    if description {
                        if let Some(offer) = add_screen(&pc, &mut neg, &mut screen, &setup.media, &id).await {
                            signal(offer).await;
                        }
                        count_video_sections(&pc, &setup.census).await;
                        if legs_added {
                            tasks.extend(screen.start_leg(&setup.media, &id));
                        }
                    }
                }
                Some(PeerInput::ScreenOn) => {
                    if let Some(offer) = add_screen(&pc, &mut neg, &mut screen, &setup.media, &id).await {
                        signal(offer).await;
                    }
                    if legs_added {
                        tasks.extend(screen.start_leg(&setup.media, &id));
                    }
                }
            },
            Some(ev) = pc_rx.recv() => match ev {
                PcEvent::Candidate(c) => signal(neg.candidate_payload(c)).await,
                PcEvent::NegotiationNeeded => {
                    // The first one is only our own tracks being added; the protocol says
                    // who offers first, so it is not ours to act on, whenever it arrives.
                    if std::mem::take(&mut setup_negotiation_event) {
                        tracing::debug!(peer = %id, "negotiation-needed from our setup: ignored");
                    } else if neg.offering() {
                        // Our offer (the share's, made at once) is out: webrtc-rs checks
                        // again when its answer brings us back to stable.
                        tracing::debug!(peer = %id, "negotiation-needed while our offer is out");
                    } else if neg.initial_done {
                        match neg.offer(&pc).await {
                            Ok(offer) => signal(offer).await,
                            Err(e) => tracing::warn!(peer = %id, "renegotiation failed: {e}"),
                        }
                    }
                }
                PcEvent::State(s) => {
                    tracing::debug!(peer = %id, "connection {s}");
                    if s == RTCPeerConnectionState::Connected && !legs_added {
                        legs_added = true;
                        refresh_payload_types().await;
                        tasks.push(tokio::spawn(write_video_leg(
                            setup.media.video.add_leg(&id, setup.initial_layer),
                            Arc::clone(&video),
                            Arc::clone(&video_pt),
                            setup.media.video.ssrc(),
                        )));
                        tasks.push(tokio::spawn(write_leg(
                            setup.media.audio.add_leg(&id),
                            Arc::clone(&audio),
                            Arc::clone(&audio_pt),
                        )));
                        screen.refresh_payload_type().await;
                        tasks.extend(screen.start_leg(&setup.media, &id));
                    }
                    let now = std::time::Instant::now();
                    if let Some(link) = recovery.handle_state(now, s) {
                        if link == LinkState::Failed && s == RTCPeerConnectionState::Failed {
                            tracing::info!(peer = %id, "link failed after {} ICE restarts", recovery.attempts());
                        }
                        report(link).await;
                    }
                }
                PcEvent::Track(track) => {
                    let share = is_screen_track(&pc, &track).await;
                    tracing::debug!(peer = %id, share, "remote track");
                    tasks.push(tokio::spawn(read_track(
                        track,
                        Arc::clone(&setup.sink),
                        Arc::clone(&tally),
                        share,
                    )));
                }
            },
            () = sleep_until(recovery.poll_timeout()) => {
                match recovery.handle_timeout(std::time::Instant::now()) {
                    RecoveryAction::GiveUp => {
                        tracing::info!(peer = %id, "link failed; no ICE restart brought it back");
                        report(LinkState::Failed).await;
                    }
                    RecoveryAction::RestartIce(attempt) => {
                        setup.census.ice_restarts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(peer = %id, attempt, "restarting ICE");
                        match neg.restart_ice(&pc).await {
                            Ok(offer) => signal(offer).await,
                            Err(e) => tracing::warn!(peer = %id, "ICE restart failed: {e}"),
                        }
                    }
                }
            }
            _ = estimate_check.tick() => {
                if meter.video_gap.swap(false, Ordering::Relaxed) {
                    setup.media.video.request_keyframe_for(&id);
                }
                if meter.screen_gap.swap(false, Ordering::Relaxed) {
                    setup.media.screen.request_keyframe_for(&id);
                }
                let estimate = meter.estimate_bps.load(Ordering::Relaxed);
                if estimate > 0
                    && (estimate as f64 - estimate_told as f64).abs()
                        > estimate_told as f64 * ESTIMATE_CHANGE
                {
                    estimate_told = estimate;
                    let event = PeerEvent::Estimate(id.clone(), estimate.min(u64::from(u32::MAX)) as u32);
                    let _ = setup.events.send(event).await;
                }
            }
            _ = tick.tick() => {
                let mut report = stats.sample(&pc, setup.sink.as_ref()).await;
                if let Some(rtt) = report.rtt_ms {
                    tally.rtt_ms.store(rtt.round() as u32, Ordering::Relaxed);
                    meter.rtt_ms.store(rtt.round() as u32, Ordering::Relaxed);
                }
                report.nacks_sent = meter.nacks_sent.load(Ordering::Relaxed);
                report.nacks_received = meter.nacks_received.load(Ordering::Relaxed);
                report.retransmissions_received = tally.late_packets.load(Ordering::Relaxed);
                report.retransmissions_used = tally.recovered_packets.load(Ordering::Relaxed);
                report.video_losses = tally.losses.load(Ordering::Relaxed);
                report.keyframe_requests_sent = tally.plis_sent.load(Ordering::Relaxed);
                report.loss_reported_by_them = meter.video_loss();
                report.audio_loss_reported_by_them = meter.audio_loss();
                report.video_dropped_stale = meter.video_dropped.load(Ordering::Relaxed);
                tracing::debug!(
                    peer = %id,
                    delay_half = meter.delay_half_bps.load(Ordering::Relaxed),
                    loss_half = meter.loss_half_bps.load(Ordering::Relaxed),
                    send_loss = meter.send_loss_permille.load(Ordering::Relaxed),
                    queue_ms = meter.video_queue_ms.load(Ordering::Relaxed),
                    path_queue_ms = meter.queue_delay_ms.load(Ordering::Relaxed),
                    dropped = meter.video_dropped.load(Ordering::Relaxed),
                    path_loss = meter.video_path_loss(),
                    resends_suppressed = meter.resends_suppressed.load(Ordering::Relaxed),
                    "link"
                );
                // The estimate as our pacer saw it arrive: the one source of it (webrtc-rs'
                // getStats carries the same attribute, one step later).
                let estimate = meter.estimate_bps.load(Ordering::Relaxed);
                report.target_bitrate = (estimate > 0).then_some(estimate as f64);
                estimate_told = estimate;
                let _ = setup.events.send(PeerEvent::Stats(id.clone(), Box::new(report))).await;
            }
        }
    }

    // Teardown: stop feeding, close the connection (which ends every track stream), and
    // wait for our tasks so nothing of this member outlives it.
    setup.media.video.remove_leg(&id);
    setup.media.audio.remove_leg(&id);
    setup.media.screen.remove_leg(&id);
    if let Err(e) = pc.close().await {
        tracing::debug!(peer = %id, "close: {e}");
    }
    for t in tasks {
        if tokio::time::timeout(Duration::from_secs(2), t)
            .await
            .is_err()
        {
            tracing::warn!(peer = %id, "a media task did not end after close");
        }
    }
}

/// Adds one of our tracks; a failure leaves the connection without that sender.
async fn add_local_track(
    pc: &Arc<dyn PeerConnection>,
    track: &Arc<TrackLocalStaticRTP>,
    peer: &str,
) -> Option<Arc<dyn RtpSender>> {
    match pc.add_track(Arc::clone(track) as Arc<dyn TrackLocal>).await {
        Ok(sender) => Some(sender),
        Err(e) => {
            tracing::warn!(peer = %peer, "cannot add a local track: {e}");
            None
        }
    }
}

/// The payload type this connection negotiated for `mime`, or ours when it cannot tell.
async fn payload_type(sender: Option<&Arc<dyn RtpSender>>, mime: &str, ours: u8) -> u8 {
    let Some(sender) = sender else { return ours };
    match sender.get_parameters().await {
        Ok(p) => negotiated_payload_type(&p.rtp_parameters.codecs, mime).unwrap_or(ours),
        Err(e) => {
            tracing::debug!("no send parameters: {e}");
            ours
        }
    }
}

/// Feeds one peer's track from its fan-out queue. The fan-out packetizes once with our
/// payload types; each connection may have negotiated others, so they are rewritten here
/// with the number the last exchange settled.
pub(super) async fn write_leg(
    mut queue: mpsc::Receiver<rtc::rtp::Packet>,
    track: Arc<TrackLocalStaticRTP>,
    payload_type: Arc<AtomicU8>,
) {
    // Keeps going through write errors (a failed link may refuse packets until an ICE
    // restart brings it back); the leg's queue closing at teardown is what ends it.
    while let Some(mut packet) = queue.recv().await {
        packet.header.payload_type = payload_type.load(Ordering::Relaxed);
        if let Err(e) = track.write_rtp(packet).await {
            tracing::trace!("packet not sent: {e}");
        }
    }
}

/// Feeds one peer's video track from its fan-out queue: whole frames of the layer it is
/// on, numbered with this leg's own sequence (so a change of layer leaves no gap), with the
/// payload type this connection negotiated.
pub(super) async fn write_video_leg(
    mut queue: mpsc::Receiver<Arc<LayerFrame>>,
    track: Arc<TrackLocalStaticRTP>,
    payload_type: Arc<AtomicU8>,
    ssrc: u32,
) {
    let mut seq: u16 = rand::random();
    while let Some(frame) = queue.recv().await {
        let last = frame.payloads.len().saturating_sub(1);
        for (i, payload) in frame.payloads.iter().enumerate() {
            let packet = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: i == last,
                    payload_type: payload_type.load(Ordering::Relaxed),
                    sequence_number: seq,
                    timestamp: frame.timestamp,
                    ssrc,
                    ..Default::default()
                },
                payload: payload.clone(),
            };
            seq = seq.wrapping_add(1);
            // A failed link may refuse packets until an ICE restart brings it back; the
            // queue closing at teardown is what ends this task.
            if let Err(e) = track.write_rtp(packet).await {
                tracing::trace!("packet not sent: {e}");
            }
        }
    }
}

pub(super) async fn watch_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    media: Arc<LocalMedia>,
    peer: String,
) {
    watch_keyframe_requests_of(track, media, peer, false).await;
}

/// Passes the keyframe requests arriving on our camera's or (`screen`) our share's track
/// to the fan-out that feeds it.
async fn watch_keyframe_requests_of(
    track: Arc<TrackLocalStaticRTP>,
    media: Arc<LocalMedia>,
    peer: String,
    screen: bool,
) {
    while let Some(ev) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = ev else {
            continue;
        };
        let wants = packets.iter().any(|p| is_keyframe_request(p.as_ref()));
        if wants && screen {
            media.screen.request_keyframe_for(&peer);
        } else if wants {
            media.video.request_keyframe_for(&peer);
        }
    }
}

/// Our screen share on one connection: its track (bound here for good once added), the
/// payload type negotiated for it, and whether its leg of the fan-out runs.
pub(super) struct ScreenSend {
    pub(super) track: Arc<TrackLocalStaticRTP>,
    pub(super) sender: Option<Arc<dyn RtpSender>>,
    payload_type: Arc<AtomicU8>,
    ssrc: u32,
    leg_started: bool,
}

impl ScreenSend {
    pub(super) fn new(self_id: &str, ssrc: u32) -> Self {
        Self {
            track: screen_track(self_id, ssrc),
            sender: None,
            payload_type: Arc::new(AtomicU8::new(H264_PT)),
            ssrc,
            leg_started: false,
        }
    }

    pub(super) async fn refresh_payload_type(&self) {
        if self.sender.is_some() {
            let pt = payload_type(self.sender.as_ref(), MIME_TYPE_H264, H264_PT).await;
            self.payload_type.store(pt, Ordering::Relaxed);
        }
    }

    /// Once the track is added and media can flow: the leg's writer and the watch for
    /// their keyframe requests. The leg stays for the connection's life; between shares
    /// the fan-out simply has nothing to send (we stop writing, as protocol.md asks).
    pub(super) fn start_leg(&mut self, media: &Arc<LocalMedia>, peer: &str) -> Vec<JoinHandle<()>> {
        if self.sender.is_none() || self.leg_started {
            return Vec::new();
        }
        self.leg_started = true;
        vec![
            tokio::spawn(write_video_leg(
                media.screen.add_leg(peer, Some(0)),
                Arc::clone(&self.track),
                Arc::clone(&self.payload_type),
                self.ssrc,
            )),
            tokio::spawn(watch_keyframe_requests_of(
                Arc::clone(&self.track),
                Arc::clone(media),
                peer.to_owned(),
                true,
            )),
        ]
    }
}

/// Adds our screen track when we share and the connection has none yet, once the first
/// exchange is over and no offer of ours is out; returns the offer that carries it.
/// Offering here rather than on negotiation-needed: that event may be the one dropped as
/// the setup's (`run`), and the offer must follow the share at once either way.
async fn add_screen(
    pc: &Arc<dyn PeerConnection>,
    neg: &mut Negotiation,
    screen: &mut ScreenSend,
    media: &LocalMedia,
    peer: &str,
) -> Option<PeerPayload> {
    if !media.screen_on() || screen.sender.is_some() || !neg.initial_done || neg.offering() {
        return None;
    }
    // A transceiver their offer made for their own share (recvonly on our side) is reused
    // by webrtc-rs' add_track, so no third video m-section appears.
    screen.sender = add_local_track(pc, &screen.track, peer).await;
    screen.sender.as_ref()?;
    tracing::debug!(peer = %peer, "screen track added; renegotiating");
    match neg.offer(pc).await {
        Ok(offer) => Some(offer),
        Err(e) => {
            tracing::warn!(peer = %peer, "cannot offer the screen share: {e}");
            None
        }
    }
}

/// Whether a remote video track is their screen share: it arrives in the second video
/// m-section of the session (protocol.md). Falls back on a meshcall peer's track id
/// (`<id>-screen`) when the m-section cannot be found.
async fn is_screen_track(pc: &Arc<dyn PeerConnection>, track: &Arc<dyn TrackRemote>) -> bool {
    if track.kind().await != RtpCodecKind::Video {
        return false;
    }
    let by_id = track.track_id().await.ends_with("-screen");
    let Some(remote) = pc.remote_description().await else {
        return by_id;
    };
    let mids = video_mids(&remote.sdp);
    for transceiver in pc.get_transceivers().await {
        let Ok(Some(receiver)) = transceiver.receiver().await else {
            continue;
        };
        if !std::ptr::addr_eq(Arc::as_ptr(receiver.track()), Arc::as_ptr(track)) {
            continue;
        }
        return match transceiver.mid().await {
            Ok(Some(mid)) => mids.iter().position(|m| *m == mid) == Some(1),
            _ => by_id,
        };
    }
    by_id
}

/// Notes how many video m-sections the session has now (see `Census::video_sections`).
async fn count_video_sections(pc: &Arc<dyn PeerConnection>, census: &Census) {
    for desc in [pc.local_description().await, pc.remote_description().await]
        .into_iter()
        .flatten()
    {
        census
            .video_sections
            .fetch_max(video_mids(&desc.sdp).len(), Ordering::Relaxed);
    }
}

/// The mids of a description's video m-sections, in order.
pub(super) fn video_mids(sdp: &str) -> Vec<String> {
    let mut video = false;
    let mut mids = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            video = m.starts_with("video");
        } else if let Some(mid) = line.strip_prefix("a=mid:")
            && video
        {
            mids.push(mid.trim().to_owned());
        }
    }
    mids
}

/// Shortest gap between two keyframe requests we send for one stream.
const PLI_INTERVAL: Duration = Duration::from_millis(300);
/// The same for a screen share, whose keyframes are large and slow to arrive: asking
/// again while one is on its way only makes the next one queue behind it.
const SCREEN_PLI_INTERVAL: Duration = Duration::from_millis(2500);

/// What one member's video receive path counts, shared with the peer task's stats.
#[derive(Default)]
pub(crate) struct ReceiveTally {
    /// Round trip to the member, ms, as the stats last saw it (the hole wait follows it).
    pub(crate) rtt_ms: AtomicU32,
    /// Packets that came after a later one (retransmissions).
    pub(crate) late_packets: AtomicU64,
    /// Retransmitted packets that completed a delivered unit.
    pub(crate) recovered_packets: AtomicU64,
    /// Times missing packets were given up on.
    pub(crate) losses: AtomicU64,
    /// Keyframe requests we sent.
    pub(crate) plis_sent: AtomicU64,
}

async fn read_track(
    track: Arc<dyn TrackRemote>,
    sink: Arc<dyn RemoteMediaSink>,
    tally: Arc<ReceiveTally>,
    screen: bool,
) {
    let kind = track.kind().await;
    if kind == RtpCodecKind::Audio {
        while let Some(ev) = track.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                sink.audio(p.header.sequence_number, p.header.timestamp, p.payload);
            }
        }
        return;
    }
    let mut buffer = FrameBuffer::default();
    // A decoder can start only from a keyframe.
    let mut need_keyframe = true;
    let mut last_pli: Option<Instant> = None;
    let mut media_ssrc = None;
    loop {
        let event = tokio::select! {
            ev = track.poll() => match ev {
                Some(ev) => Some(ev),
                None => break,
            },
            () = sleep_until(buffer.poll_timeout()) => None,
        };
        if let Some(TrackRemoteEvent::OnRtpPacket(p)) = event {
            media_ssrc.get_or_insert(p.header.ssrc);
            buffer.push(
                p.header.sequence_number,
                p.header.timestamp,
                p.header.marker,
                p.payload,
            );
        }
        buffer.set_rtt(Duration::from_millis(u64::from(
            tally.rtt_ms.load(Ordering::Relaxed),
        )));
        let now = Instant::now();
        while let Some(out) = buffer.poll(now) {
            match out {
                Assembled::Lost => {
                    tracing::debug!(
                        ssrc = ?media_ssrc,
                        late = buffer.counters().late_packets,
                        "gave up a picture: packets missing past the wait"
                    );
                    need_keyframe = true;
                }
                Assembled::Unit(au) => {
                    // A delta unit after a loss may refer to what was lost.
                    need_keyframe |= au.follows_loss;
                    if au.keyframe {
                        need_keyframe = false;
                    }
                    if !need_keyframe {
                        if screen {
                            sink.screen(au);
                        } else {
                            sink.video(au);
                        }
                    }
                }
            }
        }
        // The tally's receive counters are the camera's (the stats and the report's);
        // the share's own numbers are its frames, size and latency, which the sink keeps.
        if screen {
            need_keyframe |= sink.take_screen_decoder_failure();
        } else {
            let c = buffer.counters();
            tally.late_packets.store(c.late_packets, Ordering::Relaxed);
            tally
                .recovered_packets
                .store(c.recovered_packets, Ordering::Relaxed);
            tally.losses.store(c.losses, Ordering::Relaxed);
            need_keyframe |= sink.take_decoder_failure();
        }
        if need_keyframe
            && last_pli.is_none_or(|t| {
                t.elapsed()
                    >= if screen {
                        SCREEN_PLI_INTERVAL
                    } else {
                        PLI_INTERVAL
                    }
            })
            && let Some(media_ssrc) = media_ssrc
        {
            last_pli = Some(Instant::now());
            tally.plis_sent.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(ssrc = media_ssrc, "asking for a keyframe");
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            let _ = track.write_rtcp(vec![Box::new(pli)]).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::video_mids;

    #[test]
    fn video_mids_are_listed_in_m_section_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:1\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:3\r\n";
        assert_eq!(video_mids(sdp), ["1", "3"]);
        assert!(video_mids("v=0\r\n").is_empty());
    }
}
