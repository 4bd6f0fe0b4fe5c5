//! A call's media through Janus VideoRoom (issue 14, docs/sfu.md): we publish once — the
//! publisher connection is one more leg of the engine's fan-outs (`"sfu"`), so it gets the
//! same encoded media, keyframe requests and policy layer as a mesh link — and receive
//! every other member through one multistream subscriber connection, into the same
//! per-member sinks a mesh link feeds (found by the publisher's `display`, which is its
//! peer id). One task owns the Janus session and both connections; it ends (leaving
//! Janus) when its handle is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, RTCPeerConnectionState, RTCSessionDescription, StatsSelector,
};

use super::api::MemberStats;
use super::janus_member::{
    Forward, JanusMemberError, PcEvent, answer, conn_err, feeds_by_ssrc, payload_type,
    send_candidate,
};
use super::local_media::LocalMedia;
use super::pacer::LinkMeter;
use super::peer::{local_track, watch_keyframe_requests, write_leg, write_video_leg};
use super::peer_factory::{H264_PT, OPUS_PT, PeerFactory, SendSide};
use super::sink_handover::{Side, SinkBook};
use super::video_receive::{Assembled, FrameBuffer};
use crate::media::pipeline::RemoteMediaSink;
use crate::proto::{IceServer, SfuRoom};
use crate::sfu::janus::{
    Janus, PublisherInfo, Session, SubscriberOffer, VideoRoom, VideoRoomEvent,
};

/// The fan-out leg (and policy entry) of our publisher connection; peer ids start with `p`.
pub(crate) const SFU_LEG: &str = "sfu";
/// How often feeds Janus refused (not set up yet: 428) are asked for again.
const RETRY: Duration = Duration::from_millis(500);
/// How often the publisher's estimate is looked at (as a mesh peer task does).
const ESTIMATE_CHECK: Duration = Duration::from_millis(100);
/// A change of the estimate worth an early [`SfuEvent::Estimate`] (a fraction).
const ESTIMATE_CHANGE: f64 = 0.1;
/// Shortest gap between two keyframe requests for one incoming stream.
const PLI_INTERVAL: Duration = Duration::from_millis(300);
/// How long each step of leaving Janus may take before we stop waiting for it.
const CLOSE_STEP: Duration = Duration::from_secs(2);

/// Everything the SFU task starts from.
pub(crate) struct SfuSetup {
    pub(crate) self_id: String,
    pub(crate) room: SfuRoom,
    pub(crate) factory: PeerFactory,
    pub(crate) ice_servers: Vec<IceServer>,
    pub(crate) media: Arc<LocalMedia>,
    pub(crate) book: SinkBook,
    pub(crate) events: mpsc::Sender<SfuEvent>,
    pub(crate) stats_interval: Duration,
    /// The video layer our publisher connection gets from the start (`None`: paused).
    pub(crate) initial_layer: Option<usize>,
}

/// What the SFU task reports to the actor.
#[derive(Debug)]
pub(crate) enum SfuEvent {
    /// Janus says our publisher connection is up; the number is our feed id.
    Published(u64),
    /// A member's video (`video`) or audio now comes through Janus into its sink.
    Arrived { peer: String, video: bool },
    /// The congestion controller's estimate toward Janus moved, bits per second.
    Estimate(u32),
    /// Numbers about one member's media through Janus.
    Stats(String, Box<MemberStats>),
    /// Janus could not be reached or used; the task has ended.
    Failed(String),
}

/// The actor's handle; dropping `stop` ends the task, which then leaves Janus.
pub(crate) struct SfuHandle {
    pub(crate) stop: mpsc::Sender<()>,
    pub(crate) task: JoinHandle<()>,
}

/// Starts the SFU task.
pub(crate) fn spawn(setup: SfuSetup) -> SfuHandle {
    let (stop, rx) = mpsc::channel(1);
    let task = tokio::spawn(run(setup, rx));
    SfuHandle { stop, task }
}

async fn run(setup: SfuSetup, mut stop: mpsc::Receiver<()>) {
    let events = setup.events.clone();
    let opened = tokio::select! {
        r = Live::open(setup) => r,
        _ = stop.recv() => return,
    };
    match opened {
        Err(e) => {
            tracing::warn!("cannot use the SFU: {e}");
            let _ = events.send(SfuEvent::Failed(e.to_string())).await;
        }
        Ok(mut live) => {
            if let Err(reason) = live.drive(&mut stop).await {
                tracing::warn!("SFU connection failed: {reason}");
                let _ = events.send(SfuEvent::Failed(reason)).await;
            }
            live.close().await;
        }
    }
}

/// Which publisher each SSRC Janus sends us belongs to, and whose (peer id) each feed is.
#[derive(Default)]
struct Feeds {
    by_ssrc: HashMap<u32, u64>,
    display: HashMap<u64, String>,
}

type SharedFeeds = Arc<Mutex<Feeds>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Subscriber {
    room: VideoRoom,
    pc: Arc<dyn PeerConnection>,
}

/// A joined SFU room: the publisher connection and, once someone else publishes, the
/// subscriber connection.
struct Live {
    setup: SfuSetup,
    // Drop order: tasks and connections before the session and the socket.
    tasks: Vec<JoinHandle<()>>,
    publisher_pc: Arc<dyn PeerConnection>,
    publisher_events: mpsc::UnboundedReceiver<PcEvent>,
    subscriber: Option<Subscriber>,
    subscriber_events: Option<mpsc::UnboundedReceiver<PcEvent>>,
    publisher: VideoRoom,
    session: Option<Session>,
    _janus: Janus,
    feed: u64,
    private_id: Option<u64>,
    video: Arc<TrackLocalStaticRTP>,
    audio: Arc<TrackLocalStaticRTP>,
    video_pt: Arc<AtomicU8>,
    audio_pt: Arc<AtomicU8>,
    meter: Arc<LinkMeter>,
    legs_added: bool,
    /// Feeds we want (display is a peer id) and have not got yet.
    wanted: HashMap<u64, String>,
    /// Feeds in our subscription.
    subscribed: HashMap<u64, String>,
    feeds: SharedFeeds,
    /// Frames per member at the last stats tick, for a frame rate.
    last_frames: HashMap<String, (Instant, u64)>,
}

impl Live {
    async fn open(setup: SfuSetup) -> Result<Self, JanusMemberError> {
        let janus = Janus::connect(&setup.room.url).await?;
        let session = janus.create_session().await?;
        let publisher = VideoRoom::attach(&session).await?;
        let joined = publisher
            .join_as_publisher(setup.room.room, Some(&setup.room.pin), &setup.self_id)
            .await?;
        tracing::info!(feed = joined.id, room = joined.room, "joined the SFU room");
        let meter = Arc::new(LinkMeter::default());
        let send = SendSide {
            audio_ssrc: setup.media.audio.ssrc(),
            video_ssrc: setup.media.video.ssrc(),
            meter: Arc::clone(&meter),
        };
        let (pc_tx, publisher_events) = mpsc::unbounded_channel();
        let pc = setup
            .factory
            .build(&setup.ice_servers, true, &send, Arc::new(Forward(pc_tx)))
            .await
            .map_err(conn_err)?;
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
        // Audio first, then video, as the mesh offers.
        let audio_sender = pc
            .add_track(Arc::clone(&audio) as _)
            .await
            .map_err(conn_err)?;
        let video_sender = pc
            .add_track(Arc::clone(&video) as _)
            .await
            .map_err(conn_err)?;
        let offer = pc.create_offer(None).await.map_err(conn_err)?;
        pc.set_local_description(offer.clone())
            .await
            .map_err(conn_err)?;
        let answer_sdp = publisher.publish(&offer.sdp).await?;
        pc.set_remote_description(RTCSessionDescription::answer(answer_sdp).map_err(conn_err)?)
            .await
            .map_err(conn_err)?;
        let audio_pt = payload_type(&audio_sender, MIME_TYPE_OPUS, OPUS_PT).await;
        let video_pt = payload_type(&video_sender, MIME_TYPE_H264, H264_PT).await;
        let tasks = vec![tokio::spawn(watch_keyframe_requests(
            Arc::clone(&video),
            Arc::clone(&setup.media),
            SFU_LEG.to_owned(),
        ))];
        let mut live = Self {
            tasks,
            publisher_pc: pc,
            publisher_events,
            subscriber: None,
            subscriber_events: None,
            publisher,
            session: Some(session),
            _janus: janus,
            feed: joined.id,
            private_id: joined.private_id,
            video,
            audio,
            video_pt: Arc::new(AtomicU8::new(video_pt)),
            audio_pt: Arc::new(AtomicU8::new(audio_pt)),
            meter,
            legs_added: false,
            wanted: HashMap::new(),
            subscribed: HashMap::new(),
            feeds: Arc::default(),
            last_frames: HashMap::new(),
            setup,
        };
        live.want(&joined.publishers);
        Ok(live)
    }

    /// Notes the publishers that are members (display = a peer id other than ours).
    fn want(&mut self, publishers: &[PublisherInfo]) {
        for p in publishers {
            if let Some(d) = &p.display
                && *d != self.setup.self_id
                && !self.subscribed.contains_key(&p.id)
            {
                self.wanted.insert(p.id, d.clone());
            }
        }
    }

    /// Runs until stopped (`Ok`) or until Janus fails us (`Err` with the reason).
    async fn drive(&mut self, stop: &mut mpsc::Receiver<()>) -> Result<(), String> {
        let mut retry = tokio::time::interval(RETRY);
        let mut estimate_check = tokio::time::interval(ESTIMATE_CHECK);
        let mut stats = tokio::time::interval(self.setup.stats_interval);
        let mut estimate_told = 0u64;
        loop {
            tokio::select! {
                _ = stop.recv() => return Ok(()),
                ev = self.publisher.next_event() => match ev {
                    None => return Err("the connection to the media server closed".into()),
                    Some(VideoRoomEvent::WebrtcUp) => {
                        let _ = self.setup.events.send(SfuEvent::Published(self.feed)).await;
                    }
                    Some(VideoRoomEvent::Publishers(list)) => {
                        self.want(&list);
                        self.subscribe_wanted().await;
                    }
                    Some(VideoRoomEvent::Unpublished(feed) | VideoRoomEvent::Leaving(feed)) => {
                        self.wanted.remove(&feed);
                        self.subscribed.remove(&feed);
                    }
                    Some(VideoRoomEvent::Hangup(reason)) => {
                        return Err(format!("the media server hung up: {reason}"));
                    }
                    Some(_) => {}
                },
                ev = next_subscriber_event(&mut self.subscriber) => match ev {
                    None => return Err("the connection to the media server closed".into()),
                    Some(VideoRoomEvent::Updated(offer)) => {
                        // Janus re-offers when a publisher in our subscription leaves.
                        if let Err(e) = self.answer_offer(offer).await {
                            tracing::warn!("SFU re-offer: {e}");
                        }
                    }
                    Some(_) => {}
                },
                Some(ev) = self.publisher_events.recv() => self.on_publisher_pc(ev).await,
                Some(ev) = next_pc_event(&mut self.subscriber_events) => self.on_subscriber_pc(ev).await,
                _ = retry.tick() => self.subscribe_wanted().await,
                _ = estimate_check.tick() => {
                    if self.meter.video_gap.swap(false, Ordering::Relaxed) {
                        self.setup.media.video.request_keyframe_for(SFU_LEG);
                    }
                    let estimate = self.meter.estimate_bps.load(Ordering::Relaxed);
                    if estimate > 0
                        && (estimate as f64 - estimate_told as f64).abs()
                            > estimate_told as f64 * ESTIMATE_CHANGE
                    {
                        estimate_told = estimate;
                        let bps = estimate.min(u64::from(u32::MAX)) as u32;
                        let _ = self.setup.events.send(SfuEvent::Estimate(bps)).await;
                    }
                }
                _ = stats.tick() => self.report_stats().await,
            }
        }
    }

    async fn on_publisher_pc(&mut self, ev: PcEvent) {
        match ev {
            PcEvent::Candidate(c) => send_candidate(&self.publisher.handle().trickler(), &c).await,
            PcEvent::GatheringDone => {
                if let Err(e) = self.publisher.handle().trickler().completed().await {
                    tracing::debug!("trickle completed: {e}");
                }
            }
            PcEvent::State(s) => {
                tracing::debug!("SFU publisher connection {s}");
                if s == RTCPeerConnectionState::Connected && !self.legs_added {
                    self.legs_added = true;
                    let media = &self.setup.media;
                    self.tasks.push(tokio::spawn(write_video_leg(
                        media.video.add_leg(SFU_LEG, self.setup.initial_layer),
                        Arc::clone(&self.video),
                        Arc::clone(&self.video_pt),
                        media.video.ssrc(),
                    )));
                    self.tasks.push(tokio::spawn(write_leg(
                        media.audio.add_leg(SFU_LEG),
                        Arc::clone(&self.audio),
                        Arc::clone(&self.audio_pt),
                    )));
                }
            }
            PcEvent::Track(_) => {}
        }
    }

    async fn on_subscriber_pc(&mut self, ev: PcEvent) {
        let Some(sub) = &self.subscriber else { return };
        match ev {
            PcEvent::Candidate(c) => send_candidate(&sub.room.handle().trickler(), &c).await,
            PcEvent::GatheringDone => {
                if let Err(e) = sub.room.handle().trickler().completed().await {
                    tracing::debug!("trickle completed: {e}");
                }
            }
            PcEvent::State(s) => tracing::debug!("SFU subscriber connection {s}"),
            PcEvent::Track(track) => {
                self.tasks.push(tokio::spawn(read_track(
                    track,
                    Arc::clone(&self.feeds),
                    self.setup.book.clone(),
                    self.setup.events.clone(),
                )));
            }
        }
    }

    /// Asks for the wanted feeds one at a time: Janus refuses a whole request for one
    /// feed whose media is not up yet (428), and those are tried again later.
    async fn subscribe_wanted(&mut self) {
        let wanted: Vec<(u64, String)> = self.wanted.iter().map(|(f, d)| (*f, d.clone())).collect();
        for (feed, peer) in wanted {
            match self.subscribe(feed).await {
                Ok(()) => {
                    tracing::info!(feed, peer = %peer, "subscribed through the SFU");
                    self.wanted.remove(&feed);
                    self.subscribed.insert(feed, peer);
                }
                Err(e) => tracing::debug!(feed, "not subscribed yet: {e}"),
            }
        }
    }

    async fn subscribe(&mut self, feed: u64) -> Result<(), JanusMemberError> {
        if let Some(sub) = &self.subscriber {
            let offer = sub.room.subscribe(&[feed]).await?;
            return self.answer_offer(offer).await;
        }
        let Some(session) = &self.session else {
            return Err(JanusMemberError::Connection("no session".into()));
        };
        let room = VideoRoom::attach(session).await?;
        let offer = room
            .join_as_subscriber(
                self.setup.room.room,
                Some(&self.setup.room.pin),
                self.private_id,
                &[feed],
            )
            .await?;
        let send = SendSide {
            // We send nothing on this connection; the pacer only needs two numbers.
            audio_ssrc: rand::random(),
            video_ssrc: rand::random(),
            meter: Arc::new(LinkMeter::default()),
        };
        let (pc_tx, pc_rx) = mpsc::unbounded_channel();
        let pc = self
            .setup
            .factory
            .build(
                &self.setup.ice_servers,
                false,
                &send,
                Arc::new(Forward(pc_tx)),
            )
            .await
            .map_err(conn_err)?;
        self.subscriber = Some(Subscriber { room, pc });
        self.subscriber_events = Some(pc_rx);
        self.answer_offer(offer).await
    }

    async fn answer_offer(&mut self, offer: SubscriberOffer) -> Result<(), JanusMemberError> {
        let Some(sub) = &self.subscriber else {
            return Ok(());
        };
        {
            let mut feeds = lock(&self.feeds);
            for (ssrc, (feed, _)) in feeds_by_ssrc(&offer.sdp, &offer.streams) {
                feeds.by_ssrc.insert(ssrc, feed);
            }
            for s in &offer.streams {
                if let (Some(feed), Some(d)) = (s.feed_id, &s.feed_display) {
                    feeds.display.insert(feed, d.clone());
                }
            }
        }
        answer(&sub.pc, &sub.room, offer.sdp).await
    }

    /// One [`SfuEvent::Stats`] per member we subscribe to, from its sink and the
    /// subscriber connection.
    async fn report_stats(&mut self) {
        let rtt_ms = match &self.subscriber {
            Some(sub) => sub
                .pc
                .get_stats(Instant::now(), StatsSelector::None)
                .await
                .candidate_pairs()
                .filter(|p| p.nominated)
                .map(|p| p.current_round_trip_time * 1000.0)
                .next(),
            None => None,
        };
        let now = Instant::now();
        let peers: Vec<String> = self.subscribed.values().cloned().collect();
        for peer in peers {
            let Some(handover) = self.setup.book.get(&peer) else {
                continue;
            };
            let sink = handover.sink();
            let (frames, audio) = sink.counts();
            let fps = match self.last_frames.insert(peer.clone(), (now, frames)) {
                Some((at, before)) => {
                    frames.saturating_sub(before) as f64
                        / now.duration_since(at).as_secs_f64().max(1e-3)
                }
                None => 0.0,
            };
            let stats = MemberStats {
                rtt_ms,
                video_frames: frames,
                audio_packets: audio,
                fps,
                decoded: sink.video_quality(),
                audio_concealed: sink.audio_concealed(),
                ..MemberStats::default()
            };
            let _ = self
                .setup
                .events
                .send(SfuEvent::Stats(peer, Box::new(stats)))
                .await;
        }
    }

    /// Leaves Janus: stops feeding, leaves the room, closes both connections, ends the
    /// session, and waits for every task of ours.
    async fn close(mut self) {
        self.setup.media.video.remove_leg(SFU_LEG);
        self.setup.media.audio.remove_leg(SFU_LEG);
        if let Some(sub) = self.subscriber.take() {
            let _ = tokio::time::timeout(CLOSE_STEP, sub.room.leave()).await;
            let _ = tokio::time::timeout(CLOSE_STEP, sub.pc.close()).await;
        }
        let _ = tokio::time::timeout(CLOSE_STEP, self.publisher.leave()).await;
        let _ = tokio::time::timeout(CLOSE_STEP, self.publisher_pc.close()).await;
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(session) = self.session.take() {
            let _ = tokio::time::timeout(CLOSE_STEP, session.destroy()).await;
        }
    }
}

async fn next_subscriber_event(sub: &mut Option<Subscriber>) -> Option<VideoRoomEvent> {
    match sub {
        Some(s) => s.room.next_event().await,
        None => std::future::pending().await,
    }
}

async fn next_pc_event(rx: &mut Option<mpsc::UnboundedReceiver<PcEvent>>) -> Option<PcEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Where one incoming stream currently goes: its SSRC and its member's sink.
struct Target {
    ssrc: u32,
    peer: String,
    side: Arc<Side>,
}

/// Resolves the member an SSRC belongs to (Janus may reuse an m-section for another feed).
fn target_for(ssrc: u32, feeds: &SharedFeeds, book: &SinkBook) -> Option<Target> {
    let feeds = lock(feeds);
    let feed = feeds.by_ssrc.get(&ssrc)?;
    let peer = feeds.display.get(feed)?.clone();
    Some(Target {
        ssrc,
        side: book.sfu(&peer),
        peer,
    })
}

/// Delivers one incoming stream into its member's sink: Opus packets as they come, video
/// as complete access units from a keyframe on (asking Janus for keyframes as the mesh
/// receiver does). The first usable media of each kind claims the member's sink for the
/// SFU path (the mesh link's copy is dropped from then on).
async fn read_track(
    track: Arc<dyn TrackRemote>,
    feeds: SharedFeeds,
    book: SinkBook,
    events: mpsc::Sender<SfuEvent>,
) {
    let kind = track.kind().await;
    let mut target: Option<Target> = None;
    let mut buffer = FrameBuffer::default();
    let mut need_keyframe = true;
    let mut last_pli: Option<Instant> = None;
    let mut last_seq: u16 = 0;
    let claimed = AtomicBool::new(false);
    loop {
        let event = tokio::select! {
            ev = track.poll() => match ev {
                Some(ev) => Some(ev),
                None => break,
            },
            () = sleep_until(buffer.poll_timeout()) => None,
        };
        if let Some(TrackRemoteEvent::OnRtpPacket(p)) = event {
            let ssrc = p.header.ssrc;
            if target.as_ref().is_none_or(|t| t.ssrc != ssrc) {
                target = target_for(ssrc, &feeds, &book);
                buffer = FrameBuffer::default();
                need_keyframe = true;
                claimed.store(false, Ordering::Relaxed);
                if target.is_none() {
                    tracing::debug!(ssrc, "a stream from no known member");
                }
            }
            let Some(t) = &target else { continue };
            last_seq = p.header.sequence_number;
            if kind == RtpCodecKind::Audio {
                if !claimed.swap(true, Ordering::Relaxed) && t.side.handover().claim_audio() {
                    let arrived = SfuEvent::Arrived {
                        peer: t.peer.clone(),
                        video: false,
                    };
                    let _ = events.send(arrived).await;
                }
                t.side
                    .audio(p.header.sequence_number, p.header.timestamp, p.payload);
                continue;
            }
            buffer.push(
                p.header.sequence_number,
                p.header.timestamp,
                p.header.marker,
                p.payload,
            );
        }
        let Some(t) = &target else { continue };
        while let Some(out) = buffer.poll(Instant::now()) {
            match out {
                Assembled::Lost => need_keyframe = true,
                Assembled::Unit(au) => {
                    need_keyframe |= au.follows_loss;
                    if au.keyframe {
                        need_keyframe = false;
                    }
                    if need_keyframe {
                        continue;
                    }
                    if !claimed.swap(true, Ordering::Relaxed) && t.side.handover().claim_video() {
                        let arrived = SfuEvent::Arrived {
                            peer: t.peer.clone(),
                            video: true,
                        };
                        let _ = events.send(arrived).await;
                    }
                    t.side.video(au);
                }
            }
        }
        // Only once this path feeds the decoder: before, its failures are the mesh's.
        need_keyframe |= t.side.take_decoder_failure();
        if need_keyframe && last_pli.is_none_or(|at| at.elapsed() >= PLI_INTERVAL) {
            last_pli = Some(Instant::now());
            // Behind a reception report for the same stream, or Janus drops it (see
            // janus_member's reader and docs/sfu.md, "Keyframe requests").
            let report = ReceiverReport {
                ssrc: 0,
                reports: vec![ReceptionReport {
                    ssrc: t.ssrc,
                    last_sequence_number: u32::from(last_seq),
                    ..ReceptionReport::default()
                }],
                profile_extensions: Bytes::new(),
            };
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: t.ssrc,
            };
            let _ = track
                .write_rtcp(vec![Box::new(report), Box::new(pli)])
                .await;
        }
    }
}
