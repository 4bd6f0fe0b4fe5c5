//! The room registry: who is in which room, and every rule about joining, leaving, resuming
//! and relaying. Sockets reach it through [`Outbox`]es; it never awaits while holding its
//! lock, so one std `Mutex` serves (critical sections are short, allocation-light).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ServerConfig;
use super::closing::{End, Ending, code};
use super::limits::{AddressFailures, Failures, SocketCaps};
use super::metrics::Metrics;
use super::sfu::{self, HostedRoom};
use super::turn::turn_credentials;
use crate::proto::{
    CHAT_HISTORY, ChatMessage, ErrorCode, FEATURE_SFU_JANUS, IceServer, JoinRequest,
    MAX_CHAT_CHARS, MAX_SIGNAL_PAYLOAD_BYTES, Peer, ServerMessage, SfuRoom, SignalPayload,
    StateUpdate, generate_room_code, normalize_room_code, validate_name,
};

/// A refusal: the error code and the sentence sent with it.
pub(crate) type Refusal = (ErrorCode, String);

/// The way into one socket: its bounded write queue, and the way to end it.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    /// Serialized messages, each shared between all receivers of a broadcast.
    pub(crate) tx: mpsc::Sender<Utf8Bytes>,
    /// Closing goes around the queue, so a full queue cannot hold a close back.
    pub(crate) ending: Arc<Ending>,
}

impl Outbox {
    fn push(&self, text: Utf8Bytes) {
        match self.tx.try_send(text) {
            Ok(()) => {}
            // A reader this far behind would only fall further behind: close the socket
            // and let the client resume, rather than buffer without bound.
            Err(mpsc::error::TrySendError::Full(_)) => self
                .ending
                .request(End::Close(code::POLICY, "too slow to keep up")),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn send(&self, msg: &ServerMessage) {
        self.push(encode(msg));
    }
}

fn encode(msg: &ServerMessage) -> Utf8Bytes {
    serde_json::to_string(msg)
        .expect("server messages always serialize")
        .into()
}

/// A socket's place in a room, once joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    pub(crate) room: String,
    pub(crate) id: String,
}

enum Link {
    Live {
        conn: u64,
        out: Outbox,
    },
    /// Inside the resume grace period; `epoch` tells this absence from a later one.
    Away {
        epoch: u64,
        queue: VecDeque<Utf8Bytes>,
    },
}

struct Member {
    peer: Peer,
    token: String,
    link: Link,
    /// Declared `sfu-janus` on its join.
    sfu_capable: bool,
}

/// Where a room's media goes (`docs/protocol-sfu.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Media {
    /// Peer to peer, as protocol.md v1.
    Mesh,
    /// `trigger`'s join took the room past the mesh limit; the SFU room is being made
    /// (`sfu` is `None`) or members are moving onto it. `epoch` tells this move from a
    /// later one, for the timers and the task that makes the room.
    Moving {
        epoch: u64,
        trigger: String,
        sfu: Option<SfuRoom>,
        ready: HashSet<String>,
    },
    /// Every member is on the SFU; the room stays there until it empties.
    Sfu(SfuRoom),
}

impl Media {
    /// The SFU room members should be on, once it exists.
    fn sfu(&self) -> Option<&SfuRoom> {
        match self {
            Media::Mesh => None,
            Media::Moving { sfu, .. } => sfu.as_ref(),
            Media::Sfu(sfu) => Some(sfu),
        }
    }
}

struct Room {
    passcode: Option<String>,
    /// In join order, so `peers` lists members the way they arrived.
    members: Vec<Member>,
    next_peer: u64,
    chat: VecDeque<ChatMessage>,
    /// Wrong passcodes against this room, from any address.
    failures: Failures,
    media: Media,
    /// The Janus room made for this room, destroyed when the room ends.
    hosted: Option<HostedRoom>,
}

impl Room {
    fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.peer.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.peer.id == id)
    }

    fn broadcast(&self, except: Option<&str>, msg: &ServerMessage) {
        let text = encode(msg);
        for m in &self.members {
            if Some(m.peer.id.as_str()) == except {
                continue;
            }
            if let Link::Live { out, .. } = &m.link {
                out.push(text.clone());
            }
        }
    }

    fn peers_except(&self, id: &str) -> Vec<Peer> {
        self.members
            .iter()
            .filter(|m| m.peer.id != id)
            .map(|m| m.peer.clone())
            .collect()
    }
}

/// Every room of one server.
pub(crate) struct Hub {
    rooms: Mutex<HashMap<String, Room>>,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Metrics,
    /// Caps on open sockets.
    pub(crate) sockets: Arc<SocketCaps>,
    /// Wrong passcodes per client address.
    address_failures: AddressFailures,
    /// Cancelled when the server shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Socket tasks and grace timers, so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    next_conn: AtomicU64,
    next_epoch: AtomicU64,
}

impl Hub {
    pub(crate) fn new(config: ServerConfig, shutdown: CancellationToken) -> Self {
        let sockets = Arc::new(SocketCaps::new(
            config.max_sockets,
            config.max_sockets_per_ip,
        ));
        Self {
            rooms: Mutex::new(HashMap::new()),
            config,
            metrics: Metrics::default(),
            sockets,
            address_failures: AddressFailures::default(),
            shutdown,
            tasks: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
            next_epoch: AtomicU64::new(1),
        }
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        // A panic while holding the lock would be a bug in this file; the map itself is
        // still consistent between statements, so keep serving rather than cascade.
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Room and member counts, for `/metrics` and tests.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let rooms = self.rooms();
        (rooms.len(), rooms.values().map(|r| r.members.len()).sum())
    }

    /// Handles a `join` from socket `conn`, whose client has address (key) `addr`. On success `joined` (and for a resume, the
    /// queued signals) are already in `out`.
    pub(crate) fn join(
        self: &Arc<Self>,
        conn: u64,
        addr: IpAddr,
        out: &Outbox,
        req: JoinRequest,
    ) -> Result<Membership, Refusal> {
        // Checks run in the order protocol.md gives for competing errors.
        let code = match req.room.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(normalize_room_code(raw).ok_or_else(|| {
                (
                    ErrorCode::BadRoomCode,
                    "A room code is 3 to 64 of a-z, 0-9 and '-', not starting or ending with '-'."
                        .to_owned(),
                )
            })?),
        };
        let name = validate_name(&req.name).ok_or_else(bad_name)?;
        let mut rooms = self.rooms();
        if let Some(ticket) = &req.resume {
            let bad_resume = || {
                (
                    ErrorCode::BadResume,
                    "That membership cannot be resumed; join afresh.".to_owned(),
                )
            };
            let code = code.ok_or_else(bad_resume)?;
            let room = rooms.get_mut(&code).ok_or_else(bad_resume)?;
            let member = room.member_mut(&ticket.id).ok_or_else(bad_resume)?;
            if member.token != ticket.token {
                return Err(bad_resume());
            }
            return Ok(self.resume(room, code, ticket.id.clone(), name, &req, conn, out));
        }
        let code = match code {
            Some(code) => code,
            None => loop {
                let fresh = generate_room_code();
                if !rooms.contains_key(&fresh) {
                    break fresh;
                }
            },
        };
        let room = match rooms.entry(code.clone()) {
            Entry::Occupied(entry) => {
                let room = entry.into_mut();
                if room.passcode.is_some() {
                    self.check_passcode(room, addr, req.passcode.as_deref())?;
                }
                room
            }
            Entry::Vacant(entry) => entry.insert(Room {
                passcode: req.passcode.clone().filter(|p| !p.is_empty()),
                members: Vec::new(),
                next_peer: 1,
                chat: VecDeque::new(),
                failures: Failures::default(),
                media: Media::Mesh,
                hosted: None,
            }),
        };
        let sfu_capable = req.features.iter().any(|f| f == FEATURE_SFU_JANUS);
        let starts_move = self.admit(room, sfu_capable)?;
        let id = format!("p{}", room.next_peer);
        room.next_peer += 1;
        let peer = Peer {
            id: id.clone(),
            name,
            audio: req.audio,
            video: req.video,
            screen: false,
        };
        let token = new_token();
        out.send(&ServerMessage::Joined {
            room: code.clone(),
            self_id: id.clone(),
            token: token.clone(),
            peers: room.peers_except(&id),
            ice_servers: self.ice_servers(&id),
            chat: room.chat.iter().cloned().collect(),
            resumed: false,
            sfu: room.media.sfu().cloned().map(Box::new),
        });
        room.broadcast(None, &ServerMessage::PeerJoined { peer: peer.clone() });
        room.members.push(Member {
            peer,
            token,
            link: Link::Live {
                conn,
                out: out.clone(),
            },
            sfu_capable,
        });
        if starts_move {
            self.start_move(room, &code, &id);
        }
        Ok(Membership { room: code, id })
    }

    /// Whether a newcomer (`sfu_capable` or not) may join `room`, and whether its join
    /// moves the room onto the SFU.
    fn admit(&self, room: &Room, sfu_capable: bool) -> Result<bool, Refusal> {
        let size = room.members.len();
        let full = |limit: usize| {
            (
                ErrorCode::RoomFull,
                format!("The room is full ({limit} people)."),
            )
        };
        let Some(sfu) = &self.config.sfu else {
            return if size >= self.config.max_room_size {
                Err(full(self.config.max_room_size))
            } else {
                Ok(false)
            };
        };
        match &room.media {
            Media::Mesh if size < sfu.above.min(self.config.max_room_size) => Ok(false),
            Media::Mesh if sfu_capable && room.members.iter().all(|m| m.sfu_capable) => {
                if size >= sfu.above {
                    Ok(true)
                } else {
                    Err(full(self.config.max_room_size))
                }
            }
            // Someone cannot move: the room stays a mesh, as without --sfu.
            Media::Mesh if size < self.config.max_room_size => Ok(false),
            Media::Mesh => Err((
                ErrorCode::RoomFull,
                format!(
                    "The room is full ({} people); it cannot move onto the media server \
                     because a member's app does not support it.",
                    self.config.max_room_size
                ),
            )),
            _ if !sfu_capable => Err((
                ErrorCode::SfuRequired,
                "This room runs on a media server; this client does not support it. Update meshcall."
                    .to_owned(),
            )),
            // Members who joined mid-move would have to be carried through a cancel too;
            // the window is a few seconds, and the client joins again by itself.
            Media::Moving { .. } => Err((
                ErrorCode::RoomMoving,
                "The room is moving onto the media server; join again in a moment.".to_owned(),
            )),
            Media::Sfu(_) if size >= sfu.max_room_size => Err(full(sfu.max_room_size)),
            Media::Sfu(_) => Ok(false),
        }
    }

    /// `trigger` just took `room` past the mesh limit: have Janus make a room, then tell
    /// everyone to move (`move-to-sfu`), and call the move off unless all are ready in time.
    fn start_move(self: &Arc<Self>, room: &mut Room, code: &str, trigger: &str) {
        let Some(sfu) = self.config.sfu.clone() else {
            return;
        };
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        room.media = Media::Moving {
            epoch,
            trigger: trigger.to_owned(),
            sfu: None,
            ready: HashSet::new(),
        };
        tracing::info!(room = %code, members = room.members.len(), "moving the room onto the SFU");
        let hub = Arc::clone(self);
        let code = code.to_owned();
        self.tasks.spawn(async move {
            let description = format!("meshcall {code}");
            let made = tokio::select! {
                made = sfu::create_room(&sfu, &description, sfu.max_room_size) => made,
                () = hub.shutdown.cancelled() => return,
            };
            match made {
                Ok(hosted) => hub.room_made(&code, epoch, hosted).await,
                Err(e) => {
                    tracing::warn!(room = %code, "the SFU could not make a room: {e}");
                    hub.cancel_move(&code, epoch, "the media server could not make a room");
                }
            }
        });
    }

    /// Janus made the room for move `epoch`: tell every member, and start the clock.
    async fn room_made(self: &Arc<Self>, code: &str, epoch: u64, hosted: HostedRoom) {
        let stale = {
            let mut rooms = self.rooms();
            match rooms.get_mut(code) {
                Some(room) if matches!(&room.media, Media::Moving { epoch: e, sfu: None, .. } if *e == epoch) =>
                {
                    if let Media::Moving { sfu, .. } = &mut room.media {
                        *sfu = Some(hosted.public.clone());
                    }
                    for m in &room.members {
                        if let Link::Live { out, .. } = &m.link {
                            out.send(&ServerMessage::MoveToSfu {
                                sfu: hosted.public.clone(),
                                ice_servers: self.ice_servers(&m.peer.id),
                            });
                        }
                    }
                    room.hosted = Some(hosted);
                    None
                }
                // The room ended or the move was called off meanwhile.
                _ => Some(hosted),
            }
        };
        if let Some(hosted) = stale {
            self.destroy_later(hosted);
            return;
        }
        let hub = Arc::clone(self);
        let code = code.to_owned();
        let limit = self.config.sfu.as_ref().map(|s| s.ready_timeout);
        self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(limit.unwrap_or_default()) => {
                    hub.cancel_move(&code, epoch, "not every member was ready in time");
                }
                () = hub.shutdown.cancelled() => {}
            }
        });
    }

    /// Calls move `epoch` off (if it is still under way): everyone keeps the mesh, and the
    /// member whose join caused it is told `room-full` and removed.
    fn cancel_move(&self, room_code: &str, epoch: u64, why: &str) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(room_code) else {
            return;
        };
        let trigger = match &room.media {
            Media::Moving {
                epoch: e, trigger, ..
            } if *e == epoch => trigger.clone(),
            _ => return,
        };
        tracing::warn!(room = %room_code, "move onto the SFU called off: {why}");
        room.media = Media::Mesh;
        let hosted = room.hosted.take();
        room.broadcast(None, &ServerMessage::MoveCancelled);
        if let Some(Link::Live { out, .. }) = room.member(&trigger).map(|m| &m.link) {
            self.metrics.refused(ErrorCode::RoomFull);
            out.send(&ServerMessage::Error {
                code: ErrorCode::RoomFull,
                message: format!("The room could not move onto the media server ({why})."),
            });
            out.ending.request(End::Close(code::NORMAL, "room-full"));
        }
        let gone = Membership {
            room: room_code.to_owned(),
            id: trigger,
        };
        let hosted = hosted.or(remove_member(&mut rooms, &gone));
        drop(rooms);
        if let Some(hosted) = hosted {
            self.destroy_later(hosted);
        }
    }

    /// Destroys a Janus room in the background (logged, not retried: Janus drops an empty
    /// room's state anyway when it restarts).
    fn destroy_later(&self, hosted: HostedRoom) {
        let Some(sfu) = self.config.sfu.clone() else {
            return;
        };
        self.tasks.spawn(async move {
            match sfu::destroy_room(&sfu, &hosted).await {
                Ok(()) => tracing::info!(room = hosted.public.room, "destroyed the SFU room"),
                Err(e) => tracing::warn!(
                    room = hosted.public.room,
                    "could not destroy the SFU room: {e}"
                ),
            }
        });
    }

    /// At shutdown: destroys every Janus room still in use (rooms made over the API would
    /// otherwise stay in Janus until it restarts).
    pub(crate) async fn destroy_hosted_rooms(&self) {
        let Some(sfu) = &self.config.sfu else {
            return;
        };
        let hosted: Vec<HostedRoom> = self
            .rooms()
            .values_mut()
            .filter_map(|r| r.hosted.take())
            .collect();
        let destroys = hosted.iter().map(|h| async move {
            if let Err(e) = sfu::destroy_room(sfu, h).await {
                tracing::warn!(room = h.public.room, "could not destroy the SFU room: {e}");
            }
        });
        futures_util::future::join_all(destroys).await;
    }

    /// `sfu-ready`: the member publishes on the SFU and receives everyone through it.
    pub(crate) fn sfu_ready(&self, m: &Membership, feed: u64) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.room) else {
            return;
        };
        tracing::debug!(room = %m.room, peer = %m.id, feed, "ready on the SFU");
        if let Media::Moving { ready, .. } = &mut room.media {
            ready.insert(m.id.clone());
        }
        settle_move(room);
    }

    /// `sfu-failed`: during a move it calls the move off; later (a newcomer to a room
    /// already on the SFU) the member stays without media, and only the log says why.
    pub(crate) fn sfu_failed(&self, m: &Membership, reason: &str) {
        let epoch = {
            let rooms = self.rooms();
            match rooms.get(&m.room).map(|r| &r.media) {
                Some(Media::Moving { epoch, .. }) => *epoch,
                _ => {
                    tracing::warn!(room = %m.room, peer = %m.id, "a member cannot use the SFU: {reason}");
                    return;
                }
            }
        };
        self.cancel_move(
            &m.room,
            epoch,
            &format!("{} could not use it: {reason}", m.id),
        );
    }

    /// Compares `given` with the room's passcode, unless the room or the address is backing
    /// off after wrong ones: then the answer is `rate-limited` and nothing is compared.
    fn check_passcode(
        &self,
        room: &mut Room,
        addr: IpAddr,
        given: Option<&str>,
    ) -> Result<(), Refusal> {
        let limits = &self.config.passcode;
        let now = Instant::now();
        let wait = room
            .failures
            .wait(now, &limits.per_room)
            .max(self.address_failures.wait(addr, now, &limits.per_address));
        if let Some(wait) = wait {
            self.metrics
                .passcode_backoffs
                .fetch_add(1, Ordering::Relaxed);
            let secs = (wait + Duration::from_millis(999)).as_secs();
            return Err((
                ErrorCode::RateLimited,
                format!("Too many wrong passcodes; try again in {secs} s."),
            ));
        }
        self.metrics.passcode_checks.fetch_add(1, Ordering::Relaxed);
        if given == room.passcode.as_deref() {
            return Ok(());
        }
        room.failures.fail(now, &limits.per_room);
        self.address_failures.fail(addr, now, &limits.per_address);
        Err((
            ErrorCode::WrongPasscode,
            "This room needs a passcode, and that one is not it.".to_owned(),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn resume(
        &self,
        room: &mut Room,
        code: String,
        id: String,
        name: String,
        req: &JoinRequest,
        conn: u64,
        out: &Outbox,
    ) -> Membership {
        let token = new_token();
        let member = room.member_mut(&id).expect("caller found the member");
        member.token = token.clone();
        let old = std::mem::replace(
            &mut member.link,
            Link::Live {
                conn,
                out: out.clone(),
            },
        );
        let queued = match old {
            Link::Live { out: old_out, .. } => {
                old_out
                    .ending
                    .request(End::Close(code::REPLACED, "replaced"));
                VecDeque::new()
            }
            Link::Away { queue, .. } => queue,
        };
        let changed = member.peer.name != name
            || member.peer.audio != req.audio
            || member.peer.video != req.video;
        member.peer.name = name;
        member.peer.audio = req.audio;
        member.peer.video = req.video;
        let peer = member.peer.clone();
        out.send(&ServerMessage::Joined {
            room: code.clone(),
            self_id: id.clone(),
            token,
            peers: room.peers_except(&id),
            ice_servers: self.ice_servers(&id),
            chat: room.chat.iter().cloned().collect(),
            resumed: true,
            sfu: room.media.sfu().cloned().map(Box::new),
        });
        for text in queued {
            out.push(text);
        }
        if changed {
            room.broadcast(Some(&id), &ServerMessage::PeerUpdated { peer });
        }
        Membership { room: code, id }
    }

    fn ice_servers(&self, peer_id: &str) -> Vec<IceServer> {
        let mut servers = self.config.ice_servers.clone();
        if let Some(turn) = &self.config.turn {
            let expires = unix_millis() / 1000 + turn.ttl_secs;
            let (username, credential) = turn_credentials(&turn.secret, peer_id, expires);
            servers.push(IceServer {
                urls: turn.urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        servers
    }

    /// Removes the member at once and tells the others (`leave`).
    pub(crate) fn leave(&self, m: &Membership) {
        let hosted = remove_member(&mut self.rooms(), m);
        if let Some(hosted) = hosted {
            self.destroy_later(hosted);
        }
    }

    /// The socket `conn` of member `m` is gone without `leave`: hold the place for the grace
    /// period, then drop it unless it was resumed.
    pub(crate) fn disconnected(self: &Arc<Self>, m: &Membership, conn: u64) {
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        {
            let mut rooms = self.rooms();
            let Some(member) = rooms.get_mut(&m.room).and_then(|r| r.member_mut(&m.id)) else {
                return;
            };
            // A socket replaced by a resume no longer speaks for the member.
            if !matches!(member.link, Link::Live { conn: c, .. } if c == conn) {
                return;
            }
            member.link = Link::Away {
                epoch,
                queue: VecDeque::new(),
            };
        }
        let hub = Arc::clone(self);
        let m = m.clone();
        let grace = self.config.grace;
        self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(grace) => hub.expire(&m, epoch),
                // At shutdown every room goes anyway; nobody is left to tell.
                () = hub.shutdown.cancelled() => {}
            }
        });
    }

    fn expire(&self, m: &Membership, epoch: u64) {
        let mut rooms = self.rooms();
        let still_away = rooms
            .get(&m.room)
            .and_then(|r| r.member(&m.id))
            .is_some_and(|mem| matches!(mem.link, Link::Away { epoch: e, .. } if e == epoch));
        if still_away && let Some(hosted) = remove_member(&mut rooms, m) {
            drop(rooms);
            self.destroy_later(hosted);
        }
    }

    /// Relays a `signal` to `to`, queueing it while `to` is inside its grace period.
    pub(crate) fn signal(
        &self,
        m: &Membership,
        to: &str,
        payload: SignalPayload,
    ) -> Result<(), Refusal> {
        if payload.len() > MAX_SIGNAL_PAYLOAD_BYTES {
            return Err((
                ErrorCode::TooLarge,
                format!(
                    "A signal payload may be at most {MAX_SIGNAL_PAYLOAD_BYTES} bytes; this one is {}.",
                    payload.len()
                ),
            ));
        }
        let mut rooms = self.rooms();
        let target = rooms
            .get_mut(&m.room)
            .and_then(|r| r.member_mut(to))
            .filter(|t| t.peer.id != m.id)
            .ok_or_else(|| {
                (
                    ErrorCode::UnknownPeer,
                    format!("There is no other member '{to}' in this room."),
                )
            })?;
        let text = encode(&ServerMessage::Signal {
            from: m.id.clone(),
            payload,
        });
        match &mut target.link {
            Link::Live { out, .. } => out.push(text),
            Link::Away { queue, .. } => {
                if queue.len() >= self.config.signal_queue {
                    queue.pop_front();
                }
                queue.push_back(text);
            }
        }
        self.metrics.relayed();
        Ok(())
    }

    /// Applies a `state` and announces it when something changed.
    pub(crate) fn state(&self, m: &Membership, update: StateUpdate) -> Result<(), Refusal> {
        let name = match update.name.as_deref() {
            Some(raw) => Some(validate_name(raw).ok_or_else(bad_name)?),
            None => None,
        };
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.room) else {
            return Ok(());
        };
        let Some(member) = room.member_mut(&m.id) else {
            return Ok(());
        };
        let before = member.peer.clone();
        let p = &mut member.peer;
        if let Some(name) = name {
            p.name = name;
        }
        p.audio = update.audio.unwrap_or(p.audio);
        p.video = update.video.unwrap_or(p.video);
        p.screen = update.screen.unwrap_or(p.screen);
        if *p != before {
            let peer = p.clone();
            room.broadcast(Some(&m.id), &ServerMessage::PeerUpdated { peer });
        }
        Ok(())
    }

    /// Sends a chat message to the whole room (sender included) and keeps it in history.
    pub(crate) fn chat(&self, m: &Membership, text: String) -> Result<(), Refusal> {
        let chars = text.chars().count();
        if !(1..=MAX_CHAT_CHARS).contains(&chars) {
            return Err((
                ErrorCode::BadMessage,
                format!("A chat message is 1 to {MAX_CHAT_CHARS} characters; this one is {chars}."),
            ));
        }
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.room) else {
            return Ok(());
        };
        let Some(name) = room.member(&m.id).map(|mem| mem.peer.name.clone()) else {
            return Ok(());
        };
        let msg = ChatMessage {
            from: m.id.clone(),
            name,
            text,
            ts: unix_millis(),
        };
        if room.chat.len() >= CHAT_HISTORY {
            room.chat.pop_front();
        }
        room.chat.push_back(msg.clone());
        room.broadcast(None, &ServerMessage::Chat(msg));
        self.metrics.relayed();
        Ok(())
    }
}

/// Removes a member; when that ends the room, returns the Janus room to destroy.
#[must_use]
fn remove_member(rooms: &mut HashMap<String, Room>, m: &Membership) -> Option<HostedRoom> {
    let room = rooms.get_mut(&m.room)?;
    let before = room.members.len();
    room.members.retain(|mem| mem.peer.id != m.id);
    if room.members.len() == before {
        return None;
    }
    if room.members.is_empty() {
        // The room ends with its last member: chat history, passcode and SFU room go with it.
        return rooms.remove(&m.room).and_then(|r| r.hosted);
    }
    room.broadcast(None, &ServerMessage::PeerLeft { id: m.id.clone() });
    // The one who left may have been the last one the move waited for.
    settle_move(room);
    None
}

/// Ends a move once every member is ready on the SFU.
fn settle_move(room: &mut Room) {
    if let Media::Moving {
        sfu: Some(sfu),
        ready,
        ..
    } = &room.media
        && room.members.iter().all(|m| ready.contains(&m.peer.id))
    {
        tracing::info!(room = sfu.room, "every member is on the SFU");
        room.media = Media::Sfu(sfu.clone());
    }
}

fn bad_name() -> Refusal {
    (
        ErrorCode::BadName,
        "A name is 1 to 64 characters after trimming spaces, without control characters."
            .to_owned(),
    )
}

fn new_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
