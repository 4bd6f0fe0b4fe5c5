//! TURN messages on a TCP stream (RFC 5766 §2.1, §11.5), without IO.
//!
//! Over UDP each datagram is one message. Over TCP the same messages follow each other on
//! one byte stream, and each says how long it is: a STUN message is a 20-byte header
//! whose length field counts the attributes (always a multiple of 4), ChannelData a 4-byte
//! header whose length counts the application data, padded over TCP to a multiple of 4
//! (a MUST, §11.5: the padding is on the wire but not in the length). The first two bits
//! tell them apart: `00` STUN, `01` ChannelData.

use bytes::{Bytes, BytesMut};

const STUN_HEADER: usize = 20;
const CHANNEL_DATA_HEADER: usize = 4;
/// STUN message type of a Refresh request (method 0x004, class request).
const REFRESH_REQUEST: u16 = 0x0004;
/// Refresh success and error responses.
const REFRESH_RESPONSES: [u16; 2] = [0x0104, 0x0114];
/// The LIFETIME attribute.
const ATTR_LIFETIME: u16 = 0x000D;

/// Why bytes cannot be TURN framing; the connection they came on cannot be trusted after.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FramingError {
    /// Neither STUN (`00`) nor ChannelData (`01`) in the first two bits.
    #[error("not a STUN or ChannelData message (first byte {0:#04x})")]
    NotTurn(u8),
    /// A STUN length that is not a multiple of 4.
    #[error("STUN length {0} is not a multiple of 4")]
    BadStunLength(usize),
    /// A datagram shorter or longer than its own header says.
    #[error("a {kind} datagram of {got} bytes whose header says {said}")]
    LengthMismatch {
        /// "STUN" or "ChannelData".
        kind: &'static str,
        got: usize,
        said: usize,
    },
}

/// What kind of message starts with `first`, from its top two bits.
fn is_channel_data(first: u8) -> Result<bool, FramingError> {
    match first >> 6 {
        0b00 => Ok(false),
        0b01 => Ok(true),
        _ => Err(FramingError::NotTurn(first)),
    }
}

fn round_up_4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// One datagram from the TURN client, as it must go on the TCP stream: a STUN message
/// unchanged, ChannelData with exactly its data and padded to a multiple of 4.
///
/// A datagram whose length disagrees with its header is refused rather than sent: on the
/// stream it would shift every message after it.
pub(crate) fn to_stream(datagram: &[u8]) -> Result<Bytes, FramingError> {
    let Some(&first) = datagram.first() else {
        return Err(FramingError::LengthMismatch {
            kind: "empty",
            got: 0,
            said: 0,
        });
    };
    if is_channel_data(first)? {
        let said = declared_len(datagram, CHANNEL_DATA_HEADER, "ChannelData")?;
        // Over UDP a client may or may not pad; it cannot send less than it declares.
        let end = CHANNEL_DATA_HEADER + said;
        if datagram.len() < end || datagram.len() > round_up_4(end) {
            return Err(FramingError::LengthMismatch {
                kind: "ChannelData",
                got: datagram.len(),
                said: end,
            });
        }
        let mut framed = BytesMut::with_capacity(round_up_4(end));
        framed.extend_from_slice(&datagram[..end]);
        framed.resize(round_up_4(end), 0);
        Ok(framed.freeze())
    } else {
        let said = declared_len(datagram, STUN_HEADER, "STUN")?;
        if said % 4 != 0 {
            return Err(FramingError::BadStunLength(said));
        }
        if datagram.len() != STUN_HEADER + said {
            return Err(FramingError::LengthMismatch {
                kind: "STUN",
                got: datagram.len(),
                said: STUN_HEADER + said,
            });
        }
        Ok(Bytes::copy_from_slice(datagram))
    }
}

/// The length field (bytes 2..4) of a message whose header is `header` bytes long.
fn declared_len(bytes: &[u8], header: usize, kind: &'static str) -> Result<usize, FramingError> {
    if bytes.len() < header {
        return Err(FramingError::LengthMismatch {
            kind,
            got: bytes.len(),
            said: header,
        });
    }
    Ok(usize::from(u16::from_be_bytes([bytes[2], bytes[3]])))
}

/// Cuts the TURN server's TCP stream back into messages, whatever the reads' sizes.
#[derive(Debug, Default)]
pub(crate) struct Deframer {
    buf: BytesMut,
}

impl Deframer {
    /// Adds bytes as read from the stream.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, as a datagram for the TURN client (ChannelData without its
    /// TCP padding); `Ok(None)` until enough bytes have arrived.
    pub(crate) fn next_message(&mut self) -> Result<Option<Bytes>, FramingError> {
        if self.buf.len() < CHANNEL_DATA_HEADER {
            return Ok(None);
        }
        let said = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
        let (message, on_stream) = if is_channel_data(self.buf[0])? {
            let message = CHANNEL_DATA_HEADER + said;
            (message, round_up_4(message))
        } else {
            if said % 4 != 0 {
                return Err(FramingError::BadStunLength(said));
            }
            (STUN_HEADER + said, STUN_HEADER + said)
        };
        if self.buf.len() < on_stream {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(on_stream);
        frame.truncate(message);
        Ok(Some(frame.freeze()))
    }

    /// Bytes held that do not make a whole message yet.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.buf.len()
    }
}

fn stun_type(message: &[u8]) -> Option<u16> {
    (message.len() >= STUN_HEADER && message[0] >> 6 == 0)
        .then(|| u16::from_be_bytes([message[0], message[1]]))
}

/// A Refresh request asking for LIFETIME 0: the client is giving its allocation up
/// (webrtc-rs sends one when a peer connection closes), so the connection can go once the
/// server has answered.
pub(crate) fn is_deallocation(message: &[u8]) -> bool {
    if stun_type(message) != Some(REFRESH_REQUEST) {
        return false;
    }
    let mut attrs = &message[STUN_HEADER..];
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let len = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let Some(value) = attrs.get(4..4 + len) else {
            return false;
        };
        if kind == ATTR_LIFETIME {
            return value == [0, 0, 0, 0];
        }
        attrs = attrs.get(4 + round_up_4(len)..).unwrap_or_default();
    }
    false
}

/// The server's answer to a Refresh request.
pub(crate) fn is_refresh_response(message: &[u8]) -> bool {
    stun_type(message).is_some_and(|t| REFRESH_RESPONSES.contains(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN message of `kind` with `attrs` (already padded) and a fixed transaction id.
    fn stun(kind: u16, attrs: &[u8]) -> Vec<u8> {
        let mut m = kind.to_be_bytes().to_vec();
        m.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(attrs);
        m
    }

    fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
        let mut m = channel.to_be_bytes().to_vec();
        m.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        m.extend_from_slice(data);
        m
    }

    fn lifetime(secs: u32) -> Vec<u8> {
        let mut a = vec![0x00, 0x0D, 0x00, 0x04];
        a.extend_from_slice(&secs.to_be_bytes());
        a
    }

    #[test]
    fn channel_data_is_padded_for_the_stream_and_unpadded_back() {
        let five = channel_data(0x4001, b"hello");
        let framed = to_stream(&five).unwrap();
        assert_eq!(framed.len(), 12, "4 + 5 rounded up to 12");
        assert_eq!(&framed[..9], &five[..]);
        assert_eq!(&framed[9..], &[0, 0, 0]);
        // A client that padded already (webrtc-rs does) gives the same frame.
        let mut padded = five.clone();
        padded.extend_from_slice(&[0, 0, 0]);
        assert_eq!(to_stream(&padded).unwrap(), framed);

        let mut d = Deframer::default();
        d.push(&framed);
        assert_eq!(d.next_message().unwrap().as_deref(), Some(&five[..]));
        assert_eq!(d.pending(), 0, "the padding was consumed");
    }

    #[test]
    fn stun_goes_out_unchanged() {
        let m = stun(0x0003, &lifetime(600));
        assert_eq!(to_stream(&m).unwrap(), m);
    }

    #[test]
    fn datagrams_that_disagree_with_their_header_are_refused() {
        let mut long = stun(0x0001, &[]);
        long.push(0);
        assert!(matches!(
            to_stream(&long),
            Err(FramingError::LengthMismatch { .. })
        ));
        let short = &channel_data(0x4000, b"abcdef")[..7];
        assert!(to_stream(short).is_err());
        let mut over_padded = channel_data(0x4000, b"abcd");
        over_padded.extend_from_slice(&[0; 4]);
        assert!(to_stream(&over_padded).is_err());
        assert_eq!(
            to_stream(&[0xC0, 0, 0, 0]),
            Err(FramingError::NotTurn(0xC0))
        );
        assert!(to_stream(&[]).is_err());
    }

    #[test]
    fn messages_split_across_reads_come_out_whole() {
        let a = stun(0x0101, &lifetime(600));
        let b = channel_data(0x4002, &[9; 13]);
        let c = channel_data(0x4003, &[1; 8]);
        let mut stream = Vec::new();
        for m in [&a, &b, &c] {
            stream.extend_from_slice(&to_stream(m).unwrap());
        }
        // Every way of cutting the stream in two, then one byte at a time.
        for cut in 0..=stream.len() {
            let mut d = Deframer::default();
            let mut out = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                d.push(part);
                while let Some(m) = d.next_message().unwrap() {
                    out.push(m.to_vec());
                }
            }
            assert_eq!(out, vec![a.clone(), b.clone(), c.clone()], "cut at {cut}");
        }
        let mut d = Deframer::default();
        let mut out = Vec::new();
        for byte in &stream {
            d.push(std::slice::from_ref(byte));
            while let Some(m) = d.next_message().unwrap() {
                out.push(m.to_vec());
            }
        }
        assert_eq!(out, vec![a, b, c]);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn garbage_on_the_stream_is_an_error_not_a_guess() {
        let mut d = Deframer::default();
        d.push(&[0x80, 0, 0, 4, 1, 2, 3, 4]);
        assert_eq!(d.next_message(), Err(FramingError::NotTurn(0x80)));
        let mut d = Deframer::default();
        d.push(&stun(0x0101, &[])[..4]);
        d.buf[3] = 3;
        assert_eq!(d.next_message(), Err(FramingError::BadStunLength(3)));
    }

    #[test]
    fn a_refresh_to_lifetime_zero_is_a_deallocation() {
        let software = [0x80, 0x22, 0x00, 0x03, b'a', b'b', b'c', 0];
        let mut attrs = software.to_vec();
        attrs.extend_from_slice(&lifetime(0));
        assert!(is_deallocation(&stun(0x0004, &attrs)));
        assert!(!is_deallocation(&stun(0x0004, &lifetime(600))));
        assert!(!is_deallocation(&stun(0x0004, &software)));
        assert!(!is_deallocation(&stun(0x0003, &lifetime(0))), "an Allocate");
        assert!(!is_deallocation(&channel_data(0x4000, &[0; 28])));
        assert!(is_refresh_response(&stun(0x0104, &[])));
        assert!(is_refresh_response(&stun(0x0114, &[])));
        assert!(!is_refresh_response(&stun(0x0103, &[])));
    }
}
