//! The VideoRoom plugin's requests (Janus 1.x, multistream): create a room whose codecs
//! are ours, join it as a publisher and publish with a JSEP offer, and subscribe to many
//! publishers through one connection (Janus offers, we answer with `start`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::JanusError;
use super::transport::{HandleEvent, Jsep, JsepKind, PluginHandle, Session};

/// The plugin's package name.
const PLUGIN: &str = "janus.plugin.videoroom";

/// How a room is made. Its codecs are fixed to what every meshcall member sends, so Janus
/// forwards our packets untouched: H.264 constrained baseline 3.1 (`42e01f`) and Opus.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// The room's number; Janus picks one when `None`.
    pub room: Option<u64>,
    /// Shown in Janus' room list.
    pub description: String,
    /// Publishers at most.
    pub max_publishers: u32,
    /// The highest video bitrate Janus asks publishers for (REMB), bits per second.
    pub bitrate: u32,
    /// Janus asks every publisher for a keyframe this often (seconds; 0 = only when a
    /// subscriber needs one).
    pub fir_freq: u32,
    /// Needed to join the room (publishers and subscribers alike).
    pub pin: Option<String>,
    /// Needed to destroy or change the room.
    pub secret: Option<String>,
    /// Janus' VideoRoom `admin_key`, when its configuration asks for one to create rooms.
    pub admin_key: Option<String>,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            room: None,
            description: "meshcall".to_owned(),
            max_publishers: 16,
            // Matches the engine's ceiling (peer_factory.rs `BitrateRange`).
            bitrate: 2_500_000,
            fir_freq: 0,
            pin: None,
            secret: None,
            admin_key: None,
        }
    }
}

/// One published stream as VideoRoom lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamInfo {
    /// `audio`, `video` or `data`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The stream's m-line index (in the publisher's SDP, or in a subscriber's).
    pub mindex: u32,
    /// Its mid.
    #[serde(default)]
    pub mid: Option<String>,
    /// In a subscription: the publisher it comes from.
    #[serde(default)]
    pub feed_id: Option<u64>,
    /// In a subscription: the publisher's display name.
    #[serde(default)]
    pub feed_display: Option<String>,
    /// In a subscription: the mid of the publisher's stream this one carries.
    #[serde(default)]
    pub feed_mid: Option<String>,
    /// The codec (`h264`, `opus`).
    #[serde(default)]
    pub codec: Option<String>,
}

/// A publisher in the room.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PublisherInfo {
    /// Its feed id (what subscribers ask for).
    pub id: u64,
    /// Its display name.
    #[serde(default)]
    pub display: Option<String>,
    /// What it publishes.
    #[serde(default)]
    pub streams: Vec<StreamInfo>,
}

/// What joining as a publisher tells us.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PublisherJoined {
    /// The room.
    pub room: u64,
    /// Our feed id.
    pub id: u64,
    /// Ties our subscriptions to our publisher (rooms may require it).
    #[serde(default)]
    pub private_id: Option<u64>,
    /// Who publishes already.
    #[serde(default)]
    pub publishers: Vec<PublisherInfo>,
}

/// Janus' offer for a subscription, and which stream is which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberOffer {
    /// The SDP offer to answer.
    pub sdp: String,
    /// Every stream in it, with the publisher it comes from.
    pub streams: Vec<StreamInfo>,
}

/// What VideoRoom tells a handle without being asked, typed where we act on it.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoRoomEvent {
    /// Publishers started publishing.
    Publishers(Vec<PublisherInfo>),
    /// A publisher stopped publishing (feed id).
    Unpublished(u64),
    /// A participant left (feed id).
    Leaving(u64),
    /// A subscription changed and Janus offers a new SDP for it.
    Updated(SubscriberOffer),
    /// The connection is up (ICE and DTLS).
    WebrtcUp,
    /// The connection is gone.
    Hangup(String),
    /// Anything else.
    Other(HandleEvent),
}

/// A handle on the VideoRoom plugin: one per role (a publisher, a subscriber).
pub struct VideoRoom {
    handle: PluginHandle,
}

fn parse<T: for<'de> Deserialize<'de>>(data: &Value, request: &str) -> Result<T, JanusError> {
    serde_json::from_value(data.clone()).map_err(|e| JanusError::Protocol {
        request: request.to_owned(),
        detail: format!("{e} in {data}"),
    })
}

/// Checks `data.videoroom` is what the request should yield.
fn expect(data: &Value, request: &str, what: &str) -> Result<(), JanusError> {
    match data.get("videoroom").and_then(Value::as_str) {
        Some(w) if w == what => Ok(()),
        _ => Err(JanusError::Protocol {
            request: request.to_owned(),
            detail: format!("expected videoroom `{what}`, got {data}"),
        }),
    }
}

fn want_jsep(jsep: Option<Jsep>, kind: JsepKind, request: &str) -> Result<String, JanusError> {
    match jsep {
        Some(j) if j.kind == kind => Ok(j.sdp),
        other => Err(JanusError::Protocol {
            request: request.to_owned(),
            detail: format!("expected a JSEP {kind:?}, got {other:?}"),
        }),
    }
}

fn subscriber_offer(
    data: &Value,
    jsep: Option<Jsep>,
    request: &str,
) -> Result<SubscriberOffer, JanusError> {
    let streams = match data.get("streams") {
        Some(s) => parse(s, request)?,
        None => Vec::new(),
    };
    Ok(SubscriberOffer {
        sdp: want_jsep(jsep, JsepKind::Offer, request)?,
        streams,
    })
}

impl VideoRoom {
    /// Attaches a new VideoRoom handle to `session`.
    pub async fn attach(session: &Session) -> Result<Self, JanusError> {
        Ok(Self {
            handle: session.attach(PLUGIN).await?,
        })
    }

    /// The underlying handle (for trickle).
    pub fn handle(&self) -> &PluginHandle {
        &self.handle
    }

    /// Creates a room for H.264 42e01f + Opus and returns its number.
    pub async fn create_room(&self, config: &RoomConfig) -> Result<u64, JanusError> {
        let mut body = json!({
            "request": "create",
            "description": config.description,
            "publishers": config.max_publishers,
            "bitrate": config.bitrate,
            "fir_freq": config.fir_freq,
            "videocodec": "h264",
            "h264_profile": "42e01f",
            "audiocodec": "opus",
            // Members learn about each other from our own server, not from Janus.
            "notify_joining": false,
        });
        if let Some(room) = config.room {
            body["room"] = json!(room);
        }
        for (key, value) in [
            ("pin", &config.pin),
            ("secret", &config.secret),
            ("admin_key", &config.admin_key),
        ] {
            if let Some(v) = value {
                body[key] = json!(v);
            }
        }
        let (data, _) = self.handle.message(body, None).await?;
        expect(&data, "create", "created")?;
        data.get("room")
            .and_then(Value::as_u64)
            .ok_or_else(|| JanusError::Protocol {
                request: "create".to_owned(),
                detail: format!("no room number in {data}"),
            })
    }

    /// Destroys `room` (its `secret`, if it has one); its participants are kicked.
    pub async fn destroy_room(&self, room: u64, secret: Option<&str>) -> Result<(), JanusError> {
        let mut body = json!({"request": "destroy", "room": room});
        if let Some(s) = secret {
            body["secret"] = json!(s);
        }
        let (data, _) = self.handle.message(body, None).await?;
        expect(&data, "destroy", "destroyed")
    }

    /// Joins `room` (with its `pin`, if it has one) as a publisher named `display` (not
    /// publishing yet).
    pub async fn join_as_publisher(
        &self,
        room: u64,
        pin: Option<&str>,
        display: &str,
    ) -> Result<PublisherJoined, JanusError> {
        let mut body =
            json!({"request": "join", "ptype": "publisher", "room": room, "display": display});
        if let Some(p) = pin {
            body["pin"] = json!(p);
        }
        let (data, _) = self.handle.message(body, None).await?;
        expect(&data, "join", "joined")?;
        parse(&data, "join")
    }

    /// Publishes with our SDP offer; returns Janus' answer.
    pub async fn publish(&self, offer_sdp: &str) -> Result<String, JanusError> {
        self.offer_publisher("publish", offer_sdp).await
    }

    /// Renegotiates what we publish (e.g. a stream added for a screen share) with a new
    /// SDP offer; returns Janus' answer. Janus then tells the room's other participants
    /// our new stream list (a `publishers` event).
    pub async fn configure(&self, offer_sdp: &str) -> Result<String, JanusError> {
        self.offer_publisher("configure", offer_sdp).await
    }

    async fn offer_publisher(&self, request: &str, offer_sdp: &str) -> Result<String, JanusError> {
        let offer = Jsep {
            kind: JsepKind::Offer,
            sdp: offer_sdp.to_owned(),
        };
        let (data, jsep) = self
            .handle
            .message(json!({ "request": request }), Some(&offer))
            .await?;
        if data.get("configured").and_then(Value::as_str) != Some("ok") {
            return Err(JanusError::Protocol {
                request: request.to_owned(),
                detail: format!("not configured: {data}"),
            });
        }
        want_jsep(jsep, JsepKind::Answer, request)
    }

    /// Joins `room` (with its `pin`) as a subscriber to every stream of `feeds`; returns
    /// Janus' offer.
    /// `private_id` ties the subscription to our publisher.
    pub async fn join_as_subscriber(
        &self,
        room: u64,
        pin: Option<&str>,
        private_id: Option<u64>,
        feeds: &[u64],
    ) -> Result<SubscriberOffer, JanusError> {
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let mut body =
            json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams});
        if let Some(p) = pin {
            body["pin"] = json!(p);
        }
        if let Some(p) = private_id {
            body["private_id"] = json!(p);
        }
        let (data, jsep) = self.handle.message(body, None).await?;
        expect(&data, "join", "attached")?;
        subscriber_offer(&data, jsep, "join")
    }

    /// Adds `feeds` to this subscription; Janus answers with a new offer for it.
    pub async fn subscribe(&self, feeds: &[u64]) -> Result<SubscriberOffer, JanusError> {
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        self.subscribe_streams(streams).await
    }

    /// Adds single streams (`feed`, publisher `mid`) to this subscription, e.g. a stream a
    /// publisher added after we subscribed to it; Janus answers with a new offer.
    pub async fn subscribe_mids(
        &self,
        streams: &[(u64, String)],
    ) -> Result<SubscriberOffer, JanusError> {
        let streams: Vec<Value> = streams
            .iter()
            .map(|(f, m)| json!({"feed": f, "mid": m}))
            .collect();
        self.subscribe_streams(streams).await
    }

    async fn subscribe_streams(&self, streams: Vec<Value>) -> Result<SubscriberOffer, JanusError> {
        let (data, jsep) = self
            .handle
            .message(json!({"request": "subscribe", "streams": streams}), None)
            .await?;
        expect(&data, "subscribe", "updated")?;
        subscriber_offer(&data, jsep, "subscribe")
    }

    /// Answers Janus' subscription offer, which starts the media.
    pub async fn start(&self, answer_sdp: &str) -> Result<(), JanusError> {
        let answer = Jsep {
            kind: JsepKind::Answer,
            sdp: answer_sdp.to_owned(),
        };
        let (data, _) = self
            .handle
            .message(json!({"request": "start"}), Some(&answer))
            .await?;
        if data.get("started").and_then(Value::as_str) == Some("ok") {
            Ok(())
        } else {
            Err(JanusError::Protocol {
                request: "start".to_owned(),
                detail: format!("not started: {data}"),
            })
        }
    }

    /// Leaves the room (a publisher stops publishing; a subscriber's streams end).
    pub async fn leave(&self) -> Result<(), JanusError> {
        self.handle
            .message(json!({"request": "leave"}), None)
            .await
            .map(drop)
    }

    /// The next event about this handle, typed; `None` once the connection to Janus is gone.
    pub async fn next_event(&mut self) -> Option<VideoRoomEvent> {
        let event = self.handle.next_event().await?;
        Some(classify(event))
    }
}

/// Types what VideoRoom sends unasked.
fn classify(event: HandleEvent) -> VideoRoomEvent {
    match event {
        HandleEvent::WebrtcUp => VideoRoomEvent::WebrtcUp,
        HandleEvent::Hangup { reason } => VideoRoomEvent::Hangup(reason),
        HandleEvent::Plugin { data, jsep } => {
            if let Some(p) = data.get("publishers")
                && let Ok(list) = serde_json::from_value::<Vec<PublisherInfo>>(p.clone())
            {
                return VideoRoomEvent::Publishers(list);
            }
            if let Some(id) = data.get("unpublished").and_then(Value::as_u64) {
                return VideoRoomEvent::Unpublished(id);
            }
            if let Some(id) = data.get("leaving").and_then(Value::as_u64) {
                return VideoRoomEvent::Leaving(id);
            }
            if data.get("videoroom").and_then(Value::as_str) == Some("updated")
                && let Ok(offer) = subscriber_offer(&data, jsep.clone(), "updated")
            {
                return VideoRoomEvent::Updated(offer);
            }
            VideoRoomEvent::Other(HandleEvent::Plugin { data, jsep })
        }
        other => VideoRoomEvent::Other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn janus_events_become_typed_videoroom_events() {
        let publishers = HandleEvent::Plugin {
            data: json!({"videoroom": "event", "room": 5, "publishers": [
                {"id": 11, "display": "ann", "streams": [
                    {"type": "audio", "mindex": 0, "mid": "0", "codec": "opus"},
                    {"type": "video", "mindex": 1, "mid": "1", "codec": "h264"}]}]}),
            jsep: None,
        };
        match classify(publishers) {
            VideoRoomEvent::Publishers(list) => {
                assert_eq!(list[0].id, 11);
                assert_eq!(list[0].streams[1].codec.as_deref(), Some("h264"));
            }
            other => panic!("expected publishers, got {other:?}"),
        }
        let gone = HandleEvent::Plugin {
            data: json!({"videoroom": "event", "room": 5, "unpublished": 11}),
            jsep: None,
        };
        assert_eq!(classify(gone), VideoRoomEvent::Unpublished(11));
    }

    #[test]
    fn an_answer_without_the_expected_jsep_is_a_protocol_error() {
        let err = want_jsep(None, JsepKind::Answer, "publish").unwrap_err();
        assert!(matches!(err, JanusError::Protocol { .. }), "{err}");
    }
}
