use serde::{Deserialize, Serialize};

/// Every `error.code` the protocol defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not JSON, not an object, no or unknown `type`, a missing or mistyped field.
    BadMessage,
    /// A frame over 64 KiB or a `signal` payload over 32 KiB.
    TooLarge,
    /// A message other than `join` before `joined`.
    NotJoined,
    /// A `join` on a socket that is already in a room.
    AlreadyJoined,
    /// A room code outside the allowed shape.
    BadRoomCode,
    /// A display name that is empty, too long or has control characters.
    BadName,
    /// The room has reached its member limit.
    RoomFull,
    /// The room has a passcode and the join did not match it.
    WrongPasscode,
    /// A `signal` to an id that is not another member of the room.
    UnknownPeer,
    /// The socket exceeded its message rate.
    RateLimited,
    /// A resume the server cannot honour; join afresh.
    BadResume,
    /// The room runs on an SFU and the client did not declare it can use one.
    SfuRequired,
    /// The room is moving onto the SFU right now; join again in a moment (only clients
    /// that declared `sfu-janus` get it).
    RoomMoving,
}

impl ErrorCode {
    /// All codes, in the order protocol.md lists them.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::BadMessage,
        ErrorCode::TooLarge,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::BadRoomCode,
        ErrorCode::BadName,
        ErrorCode::RoomFull,
        ErrorCode::WrongPasscode,
        ErrorCode::UnknownPeer,
        ErrorCode::RateLimited,
        ErrorCode::BadResume,
        ErrorCode::SfuRequired,
        ErrorCode::RoomMoving,
    ];

    /// The code as it travels on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad-message",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::NotJoined => "not-joined",
            ErrorCode::AlreadyJoined => "already-joined",
            ErrorCode::BadRoomCode => "bad-room-code",
            ErrorCode::BadName => "bad-name",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::WrongPasscode => "wrong-passcode",
            ErrorCode::UnknownPeer => "unknown-peer",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::BadResume => "bad-resume",
            ErrorCode::SfuRequired => "sfu-required",
            ErrorCode::RoomMoving => "room-moving",
        }
    }

    /// The index of this code in [`ErrorCode::ALL`], for counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
