//! The server's side of rooms on an SFU (`docs/protocol-sfu.md`): its settings, and the two
//! things it asks of Janus — make a VideoRoom room for a room that outgrew the mesh, and
//! destroy it when the room empties. Media never passes through here.

use std::time::Duration;

use rand::Rng;

use crate::proto::{SFU_KIND_JANUS, SfuRoom};
use crate::sfu::janus::{Janus, JanusError, RoomConfig, VideoRoom};

/// Default for [`SfuConfig::above`]: a mesh of up to four, larger rooms on the SFU.
pub const DEFAULT_SFU_ABOVE: usize = 4;
/// Default for [`SfuConfig::max_room_size`]: VideoRoom's own default publisher limit is 3,
/// ours is set per room; 16 keeps a room's downlink (15 streams) within reason.
pub const DEFAULT_SFU_MAX_ROOM_SIZE: usize = 16;

/// How rooms move onto Janus (`meshcall serve --sfu`).
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Janus' WebSocket API as this server reaches it, e.g. `ws://127.0.0.1:8188`.
    pub url: String,
    /// The same API as members reach it (sent in `move-to-sfu`); `None` means [`Self::url`].
    pub public_url: Option<String>,
    /// A mesh room of this many members moves when one more joins.
    pub above: usize,
    /// Members per room on the SFU (the mesh limit `max_room_size` stays for meshes).
    pub max_room_size: usize,
    /// How long every member has to send `sfu-ready` before the move is called off.
    pub ready_timeout: Duration,
    /// How long a request to Janus (connect, create, destroy) may take.
    pub request_timeout: Duration,
    /// VideoRoom's `admin_key`, when Janus' configuration requires one to create rooms.
    pub admin_key: Option<String>,
}

impl SfuConfig {
    /// A configuration with the documented defaults for Janus at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            public_url: None,
            above: DEFAULT_SFU_ABOVE,
            max_room_size: DEFAULT_SFU_MAX_ROOM_SIZE,
            ready_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(5),
            admin_key: None,
        }
    }

    /// The URL members are told.
    pub fn member_url(&self) -> &str {
        self.public_url.as_deref().unwrap_or(&self.url)
    }
}

/// A Janus room this server made: what members get, and the secret only we hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostedRoom {
    pub(crate) public: SfuRoom,
    pub(crate) secret: String,
}

/// Why Janus could not make or destroy a room.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SfuError {
    #[error(transparent)]
    Janus(#[from] JanusError),
    #[error("Janus did not answer within {0:?}")]
    Timeout(Duration),
}

/// Largest room number we pick: 2^53, so the browser page reads it exactly as a JSON
/// number (Janus itself would pick any 64-bit number).
const MAX_ROOM_NUMBER: u64 = 1 << 53;

fn random_secret() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a pinned VideoRoom room (H.264 42e01f, Opus) for up to `publishers` members.
pub(crate) async fn create_room(
    config: &SfuConfig,
    description: &str,
    publishers: usize,
) -> Result<HostedRoom, SfuError> {
    let pin = random_secret();
    let secret = random_secret();
    let room_config = RoomConfig {
        room: Some(rand::rng().random_range(1..MAX_ROOM_NUMBER)),
        description: description.to_owned(),
        max_publishers: u32::try_from(publishers).unwrap_or(u32::MAX),
        pin: Some(pin.clone()),
        secret: Some(secret.clone()),
        admin_key: config.admin_key.clone(),
        ..RoomConfig::default()
    };
    let room = within(config.request_timeout, async {
        let janus = Janus::connect(&config.url).await?;
        let session = janus.create_session().await?;
        let handle = VideoRoom::attach(&session).await?;
        let room = handle.create_room(&room_config).await?;
        // Rooms made over the API outlive the session that made them.
        session.destroy().await?;
        Ok(room)
    })
    .await?;
    Ok(HostedRoom {
        public: SfuRoom {
            kind: SFU_KIND_JANUS.to_owned(),
            url: config.member_url().to_owned(),
            room,
            pin,
        },
        secret,
    })
}

/// Destroys a room made by [`create_room`]; Janus kicks whoever is still in it.
pub(crate) async fn destroy_room(config: &SfuConfig, room: &HostedRoom) -> Result<(), SfuError> {
    within(config.request_timeout, async {
        let janus = Janus::connect(&config.url).await?;
        let session = janus.create_session().await?;
        let handle = VideoRoom::attach(&session).await?;
        handle
            .destroy_room(room.public.room, Some(&room.secret))
            .await?;
        session.destroy().await?;
        Ok(())
    })
    .await
}

async fn within<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, JanusError>>,
) -> Result<T, SfuError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(SfuError::Timeout(limit)),
    }
}
