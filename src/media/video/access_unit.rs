//! An H.264 access unit as the receive path hands it to a decoder: plain bytes and what the
//! network learnt about them, so decoding needs nothing of RTP.

use bytes::Bytes;

/// A finished access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessUnit {
    /// Annex-B bytes (4-byte start codes).
    pub(crate) data: Bytes,
    /// RTP timestamp (90 kHz).
    pub(crate) timestamp: u32,
    /// Whether it holds an IDR slice.
    pub(crate) keyframe: bool,
    /// Whether units were given up just before it (so a delta unit may not be decodable).
    pub(crate) follows_loss: bool,
}

const NAL_IDR: u8 = 5;

/// Whether an Annex-B access unit holds an IDR slice.
pub(crate) fn has_idr(annex_b: &[u8]) -> bool {
    // Every NAL the depacketizer emits follows a 00 00 00 01 start code.
    annex_b
        .windows(5)
        .any(|w| w[..4] == [0, 0, 0, 1] && w[4] & 0x1f == NAL_IDR)
}
