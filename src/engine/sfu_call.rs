//! A call's media through Janus VideoRoom (issue 14, docs/sfu.md): we publish once — the
//! publisher connection is one more leg of the engine's fan-outs (`"sfu"`), so it gets the
//! same encoded media, keyframe requests and policy layer as a mesh link — and receive
//! every other member through one multistream subscriber connection, into the same
//! per-member sinks a mesh link feeds (found by the publisher's `display`, which is its
//! peer id). One task owns the Janus session and both connections; it ends (leaving
//! Janus) when its handle is dropped.
//!
//! Screen shares (docs/protocol-sfu.md, "Screen sharing"): our share is a second video
//! stream of our publisher connection, added with a renegotiation (`configure`) when it
//! first starts and kept after (as on a mesh link); a member's share is the second video
//! stream of its feed, in its publisher's order, which we subscribe to when Janus lists it.

use std::collections::{HashMap, HashSet};
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
    Forward, JanusMemberError, PcEvent, PublisherOffer, answer, conn_err, offer_to_publisher,
    payload_type, send_candidate, streams_by_ssrc,
};
use super::local_media::LocalMedia;
use super::pacer::LinkMeter;
use super::peer::{ScreenSend, local_track, watch_keyframe_requests, write_leg, write_video_leg};
use super::peer_factory::{H264_PT, OPUS_PT, PeerFactory, SendSide};
use super::sink_handover::{Side, SinkBook};
use super::video_receive::{Assembled, FrameBuffer};
use crate::media::pipeline::RemoteMediaSink;
use crate::proto::{IceServer, SfuRoom};
use crate::sfu::janus::{
    Janus, PublisherInfo, Session, StreamInfo, SubscriberOffer, VideoRoom, VideoRoomEvent,
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
    /// A member's screen share now comes through Janus into its sink.
    ScreenArrived(String),
    /// The congestion controller's estimate toward Janus moved, bits per second.
    Estimate(u32),
    /// Numbers about one member's media through Janus.
    Stats(String, Box<MemberStats>),
    /// Janus could not be reached or used; the task has ended.
    Failed(String),
}

/// What the actor tells the SFU task.
#[derive(Debug)]
pub(crate) enum SfuInput {
    /// Our screen share started: the publisher needs its screen stream, if it has none.
    ScreenOn,
}

/// The actor's handle; dropping `stop` ends the task, which then leaves Janus.
pub(crate) struct SfuHandle {
    pub(crate) stop: mpsc::Sender<()>,
    pub(crate) input: mpsc::Sender<SfuInput>,
    pub(crate) task: JoinHandle<()>,
}

/// Starts the SFU task.
pub(crate) fn spawn(setup: SfuSetup) -> SfuHandle {
    let (stop, rx) = mpsc::channel(1);
    let (input, input_rx) = mpsc::channel(8);
    let task = tokio::spawn(run(setup, rx, input_rx));
    SfuHandle { stop, input, task }
}

async fn run(setup: SfuSetup, mut stop: mpsc::Receiver<()>, mut input: mpsc::Receiver<SfuInput>) {
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
            if let Err(reason) = live.drive(&mut stop, &mut input).await {
                tracing::warn!("SFU connection failed: {reason}");
                let _ = events.send(SfuEvent::Failed(reason)).await;
            }
            live.close().await;
        }
    }
}

/// Which publisher (and which of its streams, by the publisher's mid) each SSRC Janus
/// sends us belongs to, whose (peer id) each feed is, and which stream is its share.
#[derive(Default)]
struct Feeds {
    by_ssrc: HashMap<u32, (u64, Option<String>)>,
    display: HashMap<u64, String>,
    /// Each feed's video streams as its publisher lists them: (mindex, mid).
    video_mids: HashMap<u64, Vec<(u32, String)>>,
}

impl Feeds {
    /// Whether the publisher's stream `mid` of `feed` is its screen share: its second video
    /// stream, in the publisher's m-line order (the camera comes first).
    fn is_screen(&self, feed: u64, mid: Option<&str>) -> bool {
        let (Some(mid), Some(videos)) = (mid, self.video_mids.get(&feed)) else {
            return false;
        };
        let mut videos = videos.clone();
        videos.sort_by_key(|(mindex, _)| *mindex);
        videos.iter().position(|(_, m)| m == mid) == Some(1)
    }

    /// Notes a publisher's video streams (from a `publishers` list).
    fn note_publisher(&mut self, p: &PublisherInfo) {
        let videos: Vec<(u32, String)> = p
            .streams
            .iter()
            .filter(|s| s.kind == "video")
            .filter_map(|s| Some((s.mindex, s.mid.clone()?)))
            .collect();
        if !videos.is_empty() {
            self.video_mids.insert(p.id, videos);
        }
    }
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
    /// Our share's stream on the publisher connection (added at its first start).
    screen: ScreenSend,
    video_pt: Arc<AtomicU8>,
    audio_pt: Arc<AtomicU8>,
    meter: Arc<LinkMeter>,
    legs_added: bool,
    /// Feeds we want (display is a peer id) and have not got yet.
    wanted: HashMap<u64, String>,
    /// Feeds in our subscription.
    subscribed: HashMap<u64, String>,
    /// Of each subscribed feed, the publisher's streams (mids) our subscription carries.
    subscribed_mids: HashMap<u64, HashSet<String>>,
    /// Streams a subscribed feed added later (a share), not in our subscription yet.
    wanted_mids: HashSet<(u64, String)>,
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
            .build_sharing(
                &setup.ice_servers,
                true,
                &send,
                Some(setup.media.screen.ssrc()),
                Arc::new(Forward(pc_tx)),
            )
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
        // Sharing already (joining a room on Janus, or a move during our share): the
        // share is the second video stream from the first offer on.
        let mut screen = ScreenSend::new(&setup.self_id, setup.media.screen.ssrc());
        if setup.media.screen_on() {
            screen.sender = Some(
                pc.add_track(Arc::clone(&screen.track) as _)
                    .await
                    .map_err(conn_err)?,
            );
        }
        offer_to_publisher(&pc, &publisher, PublisherOffer::Publish).await?;
        let audio_pt = payload_type(&audio_sender, MIME_TYPE_OPUS, OPUS_PT).await;
        let video_pt = payload_type(&video_sender, MIME_TYPE_H264, H264_PT).await;
        screen.refresh_payload_type().await;
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
            screen,
            video_pt: Arc::new(AtomicU8::new(video_pt)),
            audio_pt: Arc::new(AtomicU8::new(audio_pt)),
            meter,
            legs_added: false,
            wanted: HashMap::new(),
            subscribed: HashMap::new(),
            subscribed_mids: HashMap::new(),
            wanted_mids: HashSet::new(),
            feeds: Arc::default(),
            last_frames: HashMap::new(),
            setup,
        };
        live.want(&joined.publishers);
        Ok(live)
    }

    /// Notes the publishers that are members (display = a peer id other than ours), and
    /// the streams a subscribed member added since (its share).
    fn want(&mut self, publishers: &[PublisherInfo]) {
        for p in publishers {
            let Some(d) = &p.display else { continue };
            if *d == self.setup.self_id {
                continue;
            }
            lock(&self.feeds).note_publisher(p);
            if !self.subscribed.contains_key(&p.id) {
                self.wanted.insert(p.id, d.clone());
                continue;
            }
            let have = self.subscribed_mids.get(&p.id);
            for mid in new_media_mids(&p.streams, have) {
                self.wanted_mids.insert((p.id, mid));
            }
        }
    }

    /// Forgets a feed that left or stopped publishing.
    fn forget_feed(&mut self, feed: u64) {
        self.wanted.remove(&feed);
        self.subscribed.remove(&feed);
        self.subscribed_mids.remove(&feed);
        self.wanted_mids.retain(|(f, _)| *f != feed);
    }

    /// Adds our share's stream to the publisher connection (once; later shares reuse it)
    /// and renegotiates with Janus, which tells the other members.
    async fn add_screen(&mut self) -> Result<(), JanusMemberError> {
        if self.screen.sender.is_some() {
            return Ok(());
        }
        let pc = &self.publisher_pc;
        let sender = pc
            .add_track(Arc::clone(&self.screen.track) as _)
            .await
            .map_err(conn_err)?;
        if let Err(e) = offer_to_publisher(pc, &self.publisher, PublisherOffer::Configure).await {
            // Back to where we were, so the camera goes on and the next share tries again.
            if let Ok(rollback) = RTCSessionDescription::rollback(None) {
                let _ = pc.set_local_description(rollback).await;
            }
            let _ = pc.remove_track(&sender).await;
            return Err(e);
        }
        self.screen.sender = Some(sender);
        self.screen.refresh_payload_type().await;
        if self.legs_added {
            let media = Arc::clone(&self.setup.media);
            self.tasks.extend(self.screen.start_leg(&media, SFU_LEG));
        }
        tracing::info!("our screen share is a stream on the SFU now");
        Ok(())
    }

    /// Runs until stopped (`Ok`) or until Janus fails us (`Err` with the reason).
    async fn drive(
        &mut self,
        stop: &mut mpsc::Receiver<()>,
        input: &mut mpsc::Receiver<SfuInput>,
    ) -> Result<(), String> {
        let mut retry = tokio::time::interval(RETRY);
        let mut estimate_check = tokio::time::interval(ESTIMATE_CHECK);
        let mut stats = tokio::time::interval(self.setup.stats_interval);
        let mut estimate_told = 0u64;
        loop {
            tokio::select! {
                _ = stop.recv() => return Ok(()),
                Some(SfuInput::ScreenOn) = input.recv() => {
                    if let Err(e) = self.add_screen().await {
                        // The camera and audio go on; the share reaches no one.
                        tracing::warn!("cannot add our screen share on the SFU: {e}");
                    }
                }
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
                        self.forget_feed(feed);
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
                    if self.meter.screen_gap.swap(false, Ordering::Relaxed) {
                        self.setup.media.screen.request_keyframe_for(SFU_LEG);
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
                    let media = Arc::clone(media);
                    self.tasks.extend(self.screen.start_leg(&media, SFU_LEG));
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
        let streams: Vec<(u64, String)> = self.wanted_mids.iter().cloned().collect();
        for (feed, mid) in streams {
            let Some(sub) = &self.subscriber else { break };
            let added = match sub.room.subscribe_mids(&[(feed, mid.clone())]).await {
                Ok(offer) => self.answer_offer(offer).await,
                Err(e) => Err(e.into()),
            };
            match added {
                Ok(()) => {
                    tracing::info!(feed, mid = %mid, "subscribed to a stream a member added");
                    self.wanted_mids.remove(&(feed, mid));
                }
                Err(e) => tracing::debug!(feed, mid = %mid, "stream not subscribed yet: {e}"),
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
            for (ssrc, s) in streams_by_ssrc(&offer.sdp, &offer.streams) {
                if let Some(feed) = s.feed_id {
                    feeds.by_ssrc.insert(ssrc, (feed, s.feed_mid.clone()));
                }
            }
            for s in &offer.streams {
                if let (Some(feed), Some(d)) = (s.feed_id, &s.feed_display) {
                    feeds.display.insert(feed, d.clone());
                }
            }
        }
        // The offer lists the whole subscription: what each feed's streams now are.
        if !offer.streams.is_empty() {
            self.subscribed_mids.clear();
            for s in &offer.streams {
                if let (Some(feed), Some(mid)) = (s.feed_id, &s.feed_mid) {
                    self.subscribed_mids
                        .entry(feed)
                        .or_default()
                        .insert(mid.clone());
                    self.wanted_mids.remove(&(feed, mid.clone()));
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
        self.setup.media.screen.remove_leg(SFU_LEG);
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

/// The publisher streams (mids) in `streams` that carry media and are not in `have`.
fn new_media_mids(streams: &[StreamInfo], have: Option<&HashSet<String>>) -> Vec<String> {
    streams
        .iter()
        .filter(|s| s.kind == "video" || s.kind == "audio")
        .filter_map(|s| s.mid.clone())
        .filter(|m| have.is_none_or(|h| !h.contains(m)))
        .collect()
}

/// Where one incoming stream currently goes: its SSRC, its member's sink, and whether it
/// is the member's screen share.
struct Target {
    ssrc: u32,
    peer: String,
    side: Arc<Side>,
    screen: bool,
}

/// Resolves the member an SSRC belongs to (Janus may reuse an m-section for another feed).
fn target_for(ssrc: u32, feeds: &SharedFeeds, book: &SinkBook) -> Option<Target> {
    let feeds = lock(feeds);
    let (feed, mid) = feeds.by_ssrc.get(&ssrc)?;
    let peer = feeds.display.get(feed)?.clone();
    Some(Target {
        ssrc,
        side: book.sfu(&peer),
        screen: feeds.is_screen(*feed, mid.as_deref()),
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
                    if t.screen {
                        if !claimed.swap(true, Ordering::Relaxed)
                            && t.side.handover().claim_screen()
                        {
                            tracing::info!(peer = %t.peer, "a screen share arrives through the SFU");
                            let _ = events.send(SfuEvent::ScreenArrived(t.peer.clone())).await;
                        }
                        t.side.screen(au);
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
        need_keyframe |= if t.screen {
            t.side.take_screen_decoder_failure()
        } else {
            t.side.take_decoder_failure()
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(kind: &str, mindex: u32, mid: &str) -> StreamInfo {
        StreamInfo {
            kind: kind.to_owned(),
            mindex,
            mid: Some(mid.to_owned()),
            feed_id: None,
            feed_display: None,
            feed_mid: None,
            codec: None,
        }
    }

    fn publisher(id: u64, streams: Vec<StreamInfo>) -> PublisherInfo {
        PublisherInfo {
            id,
            display: Some(format!("p{id}")),
            streams,
        }
    }

    #[test]
    fn a_feeds_second_video_stream_in_its_publishers_order_is_its_share() {
        let mut feeds = Feeds::default();
        // Listed out of order: the m-line index decides, not the list's order.
        feeds.note_publisher(&publisher(
            7,
            vec![
                stream("video", 2, "s"),
                stream("audio", 0, "a"),
                stream("video", 1, "c"),
            ],
        ));
        assert!(feeds.is_screen(7, Some("s")));
        assert!(!feeds.is_screen(7, Some("c")));
        assert!(!feeds.is_screen(7, Some("a")));
        assert!(!feeds.is_screen(7, None));
        // A feed without a share, and one we know nothing of.
        feeds.note_publisher(&publisher(
            8,
            vec![stream("audio", 0, "0"), stream("video", 1, "1")],
        ));
        assert!(!feeds.is_screen(8, Some("1")));
        assert!(!feeds.is_screen(9, Some("2")));
    }

    #[test]
    fn only_media_streams_a_subscription_lacks_are_wanted() {
        let streams = [
            stream("audio", 0, "0"),
            stream("video", 1, "1"),
            stream("video", 2, "2"),
            stream("data", 3, "3"),
        ];
        let have: HashSet<String> = ["0", "1"].map(str::to_owned).into();
        assert_eq!(new_media_mids(&streams, Some(&have)), vec!["2".to_owned()]);
        assert_eq!(new_media_mids(&streams, None).len(), 3);
    }
}
