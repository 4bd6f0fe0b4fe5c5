use super::errors::ErrorCode;
use super::messages::{ClientMessage, ServerMessage};

/// Why a frame could not be read as a protocol message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Always `bad-message` today; kept so callers answer with the code they are given.
    pub code: ErrorCode,
    /// A sentence for the sender.
    pub message: String,
}

/// Reads one client → server text frame.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ParseError> {
    serde_json::from_str(text).map_err(bad_message)
}

/// Reads one server → client text frame.
pub fn parse_server_message(text: &str) -> Result<ServerMessage, ParseError> {
    serde_json::from_str(text).map_err(bad_message)
}

fn bad_message(err: serde_json::Error) -> ParseError {
    let message = if err.is_syntax() || err.is_eof() {
        format!("not valid JSON: {err}")
    } else {
        // serde names the offending type or field: "unknown variant `x`", "missing field `name`".
        format!("malformed message: {err}")
    };
    ParseError {
        code: ErrorCode::BadMessage,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{JoinRequest, StateUpdate};

    #[test]
    fn join_fields_and_nulls() {
        let m = parse_client_message(
            r#"{"type":"join","name":"Ada","room":null,"audio":null,"video":true,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ClientMessage::Join(JoinRequest {
                name: "Ada".into(),
                video: true,
                ..Default::default()
            })
        );
    }

    #[test]
    fn wrong_types_and_missing_fields_are_bad_messages() {
        for text in [
            "not json",
            "[]",
            "42",
            r#"{"name":"x"}"#,
            r#"{"type":5}"#,
            r#"{"type":"dance"}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"join","name":5}"#,
            r#"{"type":"join","name":"a","audio":"yes"}"#,
            r#"{"type":"signal","to":"p1"}"#,
            r#"{"type":"signal","payload":{}}"#,
            r#"{"type":"signal","to":"p1","payload":"x"}"#,
            r#"{"type":"chat"}"#,
            r#"{"type":"chat","text":7}"#,
            r#"{"type":"state","audio":1}"#,
        ] {
            let err = parse_client_message(text).expect_err(text);
            assert_eq!(err.code, ErrorCode::BadMessage, "{text}");
        }
    }

    #[test]
    fn messages_serialize_as_the_protocol_shows() {
        let state = ClientMessage::State(StateUpdate {
            audio: Some(false),
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            r#"{"type":"state","audio":false}"#
        );
        assert_eq!(
            serde_json::to_string(&ClientMessage::Leave).unwrap(),
            r#"{"type":"leave"}"#
        );
        let err = ServerMessage::Error {
            code: ErrorCode::RoomFull,
            message: "full".into(),
        };
        let text = serde_json::to_string(&err).unwrap();
        assert_eq!(
            text,
            r#"{"type":"error","code":"room-full","message":"full"}"#
        );
        assert_eq!(parse_server_message(&text).unwrap(), err);
    }

    #[test]
    fn signal_payload_is_relayed_as_sent() {
        let text = r#"{"type":"signal","to":"p1","payload":{"z":1,"a":{"b":[1,2]}}}"#;
        let ClientMessage::Signal { payload, .. } = parse_client_message(text).unwrap() else {
            panic!("not a signal");
        };
        assert_eq!(payload.as_str(), r#"{"z":1,"a":{"b":[1,2]}}"#);
        let out = ServerMessage::Signal {
            from: "p2".into(),
            payload,
        };
        let text = serde_json::to_string(&out).unwrap();
        assert_eq!(
            text,
            r#"{"type":"signal","from":"p2","payload":{"z":1,"a":{"b":[1,2]}}}"#
        );
        assert_eq!(parse_server_message(&text).unwrap(), out);
    }

    /// The SFU addition's wire shapes (docs/protocol-sfu.md).
    #[test]
    fn sfu_messages_have_the_documented_shape() {
        let join =
            parse_client_message(r#"{"type":"join","name":"a","features":["sfu-janus"]}"#).unwrap();
        let ClientMessage::Join(req) = join else {
            panic!("not a join");
        };
        assert_eq!(req.features, [crate::proto::FEATURE_SFU_JANUS]);
        let ClientMessage::Join(req) =
            parse_client_message(r#"{"type":"join","name":"a","features":null}"#).unwrap()
        else {
            panic!("not a join");
        };
        assert!(req.features.is_empty());
        // A v1 join is unchanged on the wire.
        assert_eq!(
            serde_json::to_string(&ClientMessage::Join(JoinRequest {
                name: "a".into(),
                ..Default::default()
            }))
            .unwrap(),
            r#"{"type":"join","name":"a","audio":false,"video":false}"#
        );
        assert_eq!(
            parse_client_message(r#"{"type":"sfu-ready","feed":42}"#).unwrap(),
            ClientMessage::SfuReady { feed: 42 }
        );
        assert_eq!(
            parse_client_message(r#"{"type":"sfu-failed","reason":"x"}"#).unwrap(),
            ClientMessage::SfuFailed { reason: "x".into() }
        );
        let err = parse_client_message(r#"{"type":"sfu-ready","feed":"42"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadMessage);

        let moving = ServerMessage::MoveToSfu {
            sfu: crate::proto::SfuRoom {
                kind: crate::proto::SFU_KIND_JANUS.into(),
                url: "ws://h:8188".into(),
                room: 7,
                pin: "p".into(),
            },
            ice_servers: Vec::new(),
        };
        let text = serde_json::to_string(&moving).unwrap();
        assert_eq!(
            text,
            r#"{"type":"move-to-sfu","sfu":{"kind":"janus-videoroom","url":"ws://h:8188","room":7,"pin":"p"},"iceServers":[]}"#
        );
        assert_eq!(parse_server_message(&text).unwrap(), moving);
        assert_eq!(
            serde_json::to_string(&ServerMessage::MoveCancelled).unwrap(),
            r#"{"type":"move-cancelled"}"#
        );
        assert_eq!(ErrorCode::SfuRequired.as_str(), "sfu-required");
        assert_eq!(
            serde_json::to_string(&ErrorCode::SfuRequired).unwrap(),
            r#""sfu-required""#
        );
        assert_eq!(
            serde_json::to_string(&ErrorCode::RoomMoving).unwrap(),
            r#""room-moving""#
        );
        // The wire name and the counters' order come from one place each.
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{code}\""));
            assert_eq!(ErrorCode::ALL[code.index()], code);
        }
    }
}
