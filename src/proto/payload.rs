use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The opaque JSON object a `signal` carries. The server never looks inside; it keeps the
/// serialized text so it relays exactly what it was given (and measures that text's size).
#[derive(Debug, Clone)]
pub struct SignalPayload(Box<RawValue>);

impl SignalPayload {
    /// Wraps any serializable object as a payload.
    pub fn from_serialize<T: Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        let raw = serde_json::value::to_raw_value(value)?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: Box<RawValue>) -> Result<Self, serde_json::Error> {
        if raw.get().trim_start().starts_with('{') {
            Ok(Self(raw))
        } else {
            Err(serde_json::Error::custom("payload must be a JSON object"))
        }
    }

    /// The serialized JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Size of the serialized JSON, in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Whether the payload is empty (never, for a valid object).
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// Reads the payload as a typed peer-to-peer message.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for SignalPayload {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Serialize for SignalPayload {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(ser)
    }
}

impl<'de> Deserialize<'de> for SignalPayload {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        // Inside an internally tagged enum serde buffers the fields, which RawValue cannot
        // read from, so go through Value (key order is preserved by serde_json's
        // `preserve_order`) and serialize it back compactly.
        let value = serde_json::Value::deserialize(de)?;
        if !value.is_object() {
            return Err(D::Error::custom("payload must be a JSON object"));
        }
        let raw = serde_json::value::to_raw_value(&value).map_err(D::Error::custom)?;
        Ok(Self(raw))
    }
}

/// What peers put in a `signal` payload: the browser's own JSON shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerPayload {
    /// An offer or answer (RTCSessionDescriptionInit).
    Sdp(SessionDescription),
    /// A trickled candidate (RTCIceCandidateInit); `None` marks the end of candidates.
    Candidate(Option<IceCandidateInit>),
}

/// RTCSessionDescriptionInit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    /// `offer`, `answer` (or `pranswer`, `rollback`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The SDP text.
    pub sdp: String,
}

/// RTCIceCandidateInit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidateInit {
    /// The `candidate:` line.
    pub candidate: String,
    /// The media section id.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The media section index.
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_m_line_index: Option<u16>,
    /// The ICE ufrag this candidate belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct PeerPayloadWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sdp: Option<SessionDescription>,
    // Outer Option: field present; inner: `null` = end of candidates.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    candidate: Option<Option<IceCandidateInit>>,
}

fn present_or_null<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<Option<IceCandidateInit>>, D::Error> {
    Ok(Some(Option::deserialize(de)?))
}

impl PeerPayload {
    /// Reads a payload; `None` when it is neither an SDP nor a candidate.
    pub fn from_payload(payload: &SignalPayload) -> Option<Self> {
        let wire: PeerPayloadWire = payload.parse().ok()?;
        match (wire.sdp, wire.candidate) {
            (Some(sdp), _) => Some(PeerPayload::Sdp(sdp)),
            (None, Some(candidate)) => Some(PeerPayload::Candidate(candidate)),
            (None, None) => None,
        }
    }

    /// Wraps this as a `signal` payload.
    pub fn to_payload(&self) -> SignalPayload {
        let wire = match self {
            PeerPayload::Sdp(sdp) => PeerPayloadWire {
                sdp: Some(sdp.clone()),
                candidate: None,
            },
            PeerPayload::Candidate(c) => PeerPayloadWire {
                sdp: None,
                candidate: Some(c.clone()),
            },
        };
        SignalPayload::from_serialize(&wire).expect("a struct always serializes to an object")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_null_is_end_of_candidates() {
        let p: SignalPayload = serde_json::from_str(r#"{"candidate":null}"#).unwrap();
        assert_eq!(
            PeerPayload::from_payload(&p),
            Some(PeerPayload::Candidate(None))
        );
        assert_eq!(
            PeerPayload::Candidate(None).to_payload().as_str(),
            r#"{"candidate":null}"#
        );
    }

    #[test]
    fn browser_shapes_round_trip() {
        let text = r#"{"candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abc"}}"#;
        let p: SignalPayload = serde_json::from_str(text).unwrap();
        let typed = PeerPayload::from_payload(&p).unwrap();
        assert_eq!(typed.to_payload().as_str(), text);
        let sdp = PeerPayload::Sdp(SessionDescription {
            kind: "offer".into(),
            sdp: "v=0".into(),
        });
        assert_eq!(
            sdp.to_payload().as_str(),
            r#"{"sdp":{"type":"offer","sdp":"v=0"}}"#
        );
    }

    #[test]
    fn payload_must_be_an_object() {
        assert!(serde_json::from_str::<SignalPayload>("[1]").is_err());
        assert!(serde_json::from_str::<SignalPayload>("null").is_err());
        assert!(SignalPayload::from_serialize(&5).is_err());
    }
}
