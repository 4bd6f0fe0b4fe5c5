//! H.264 decoder (openh264): Annex-B access units in, owned I420 frames out.
//!
//! A corrupt, truncated or unreferenceable access unit yields [`VideoError::CorruptStream`];
//! the caller then asks the sender for a keyframe, and decoding resumes from that IDR.

use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, nal_units};
use tracing::debug;

use super::VideoError;
use super::convert::{RgbaImage, i420_to_rgba};
use super::frame::{FrameTime, I420Frame};

/// NAL unit types that carry picture data (non-IDR and IDR slices).
const SLICE_NAL_TYPES: [u8; 2] = [1, 5];

/// Decodes one H.264 stream (one remote participant).
pub struct H264Decoder {
    decoder: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder").finish_non_exhaustive()
    }
}

impl H264Decoder {
    /// Creates a decoder that outputs each picture as soon as its access unit is complete.
    pub fn new() -> Result<Self, VideoError> {
        // Flushing after every AU gives zero decoder delay, which a call wants; baseline
        // streams have no reordering, so nothing is lost by it.
        let config = DecoderConfig::new().flush_after_decode(Flush::Flush);
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| VideoError::DecoderInit(e.to_string()))?;
        Ok(Self { decoder })
    }

    /// Decodes one access unit; None for one without a picture (e.g. only SPS/PPS).
    ///
    /// The returned frame's timestamp is the moment it was decoded; the capture time
    /// travels separately (RTP) or inside the picture (the test pattern's time band).
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<Option<I420Frame>, VideoError> {
        let has_slice = nal_units(access_unit)
            .any(|nal| nal_type(nal).is_some_and(|t| SLICE_NAL_TYPES.contains(&t)));
        match self.decoder.decode(access_unit) {
            Ok(Some(picture)) => copy_out(&picture).map(Some),
            // openh264 reports the cases we know (truncated or damaged slices, a missing
            // reference frame) as errors; this catches any slice it swallows silently, so a
            // frozen picture always leads to a keyframe request.
            Ok(None) if has_slice => Err(VideoError::CorruptStream),
            Ok(None) => Ok(None),
            Err(e) => {
                debug!(error = %e, "H.264 access unit rejected");
                Err(VideoError::CorruptStream)
            }
        }
    }

    /// Decodes one access unit straight to RGBA for display.
    pub fn decode_rgba(&mut self, access_unit: &[u8]) -> Result<Option<RgbaImage>, VideoError> {
        self.decode(access_unit)?
            .map(|frame| i420_to_rgba(&frame))
            .transpose()
    }
}

/// The NAL unit type of a unit with or without its start code.
fn nal_type(nal: &[u8]) -> Option<u8> {
    let start = nal.iter().position(|&b| b != 0)?;
    // Skip the 0x01 that ends a start code, if present.
    let header = if nal[start] == 1 && start >= 2 {
        nal.get(start + 1)?
    } else {
        &nal[start]
    };
    Some(header & 0x1F)
}

/// Copies the decoder's strided planes (valid only until the next call) into an owned frame.
fn copy_out(picture: &DecodedYUV<'_>) -> Result<I420Frame, VideoError> {
    let (w, h) = picture.dimensions();
    let (ys, us, vs) = picture.strides();
    let (cw, ch) = (w / 2, h / 2);
    let copy = |plane: &[u8], stride: usize, width: usize, rows: usize| -> Vec<u8> {
        plane
            .chunks(stride)
            .take(rows)
            .flat_map(|row| &row[..width])
            .copied()
            .collect()
    };
    let y = copy(picture.y(), ys, w, h);
    let u = copy(picture.u(), us, cw, ch);
    let v = copy(picture.v(), vs, cw, ch);
    let width = u32::try_from(w).map_err(|_| VideoError::CorruptStream)?;
    let height = u32::try_from(h).map_err(|_| VideoError::CorruptStream)?;
    // Odd sizes or short planes would mean the stream described an unusable picture.
    I420Frame::new(width, height, y, u, v, FrameTime::now()).map_err(|e| {
        debug!(error = %e, "decoded picture unusable");
        VideoError::CorruptStream
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_type_reads_header_after_start_code() {
        assert_eq!(nal_type(&[0, 0, 0, 1, 0x67, 1]), Some(7));
        assert_eq!(nal_type(&[0, 0, 1, 0x65]), Some(5));
        assert_eq!(nal_type(&[0x41, 2]), Some(1));
        assert_eq!(nal_type(&[0, 0, 0]), None);
    }

    #[test]
    fn garbage_is_a_typed_error_not_a_panic() {
        let mut decoder = H264Decoder::new().unwrap();
        let mut junk = vec![0, 0, 0, 1, 0x65];
        junk.extend((0..500u32).map(|i| (i * 7919 % 251) as u8));
        assert!(matches!(
            decoder.decode(&junk),
            Err(VideoError::CorruptStream)
        ));
    }
}
