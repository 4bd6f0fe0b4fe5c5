//! Opus encoder and decoder for 48 kHz mono 20 ms frames, with loss concealment and FEC.

use opus::{Application, Bitrate, Channels};

use super::error::AudioError;
use super::frame::{FRAME_SAMPLES, SAMPLE_RATE};

/// Largest packet we produce; RFC 6716 recommends 1275 bytes as the ceiling for one frame.
pub const MAX_PACKET_BYTES: usize = 1275;
/// Default bitrate: comfortable wideband speech with room for in-band FEC.
pub const DEFAULT_BITRATE: i32 = 32_000;
/// Default loss the encoder plans FEC for, in percent.
pub const DEFAULT_EXPECTED_LOSS_PERCENT: i32 = 10;

/// Encodes 20 ms frames to Opus packets (VoIP mode, in-band FEC on).
pub struct OpusEncoder {
    inner: opus::Encoder,
    out: Vec<u8>,
}

impl OpusEncoder {
    /// A VoIP encoder at `bitrate` bits/s planning FEC for `expected_loss_percent` loss.
    pub fn new(bitrate: i32, expected_loss_percent: i32) -> Result<Self, AudioError> {
        let mut inner = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)?;
        inner.set_bitrate(Bitrate::Bits(bitrate))?;
        // FEC only gets bits when the encoder believes there is loss, so both are needed.
        inner.set_inband_fec(true)?;
        inner.set_packet_loss_perc(expected_loss_percent.clamp(0, 100))?;
        Ok(Self {
            inner,
            out: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// Changes the target bitrate (bits/s), e.g. when the engine's bandwidth estimate moves.
    pub fn set_bitrate(&mut self, bitrate: i32) -> Result<(), AudioError> {
        self.inner.set_bitrate(Bitrate::Bits(bitrate))?;
        Ok(())
    }

    /// Tells the encoder how much loss to protect against, in percent.
    pub fn set_expected_loss(&mut self, percent: i32) -> Result<(), AudioError> {
        self.inner.set_packet_loss_perc(percent.clamp(0, 100))?;
        Ok(())
    }

    /// Encodes one frame; the returned slice is valid until the next call.
    pub fn encode(&mut self, samples: &[f32; FRAME_SAMPLES]) -> Result<&[u8], AudioError> {
        let len = self.inner.encode_float(samples, &mut self.out)?;
        Ok(&self.out[..len])
    }
}

/// Decodes Opus packets to 20 ms frames and fills gaps by concealment or FEC.
pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl OpusDecoder {
    /// A 48 kHz mono decoder.
    pub fn new() -> Result<Self, AudioError> {
        Ok(Self {
            inner: opus::Decoder::new(SAMPLE_RATE, Channels::Mono)?,
        })
    }

    /// Decodes one packet into `out`.
    pub fn decode(
        &mut self,
        packet: &[u8],
        out: &mut [f32; FRAME_SAMPLES],
    ) -> Result<(), AudioError> {
        let n = self.inner.decode_float(packet, out, false)?;
        // A peer that sends 10 ms or 40 ms packets would leave part of the frame stale.
        out[n.min(FRAME_SAMPLES)..].fill(0.0);
        Ok(())
    }

    /// Packet-loss concealment: synthesises 20 ms that continue the last decoded audio.
    pub fn conceal(&mut self, out: &mut [f32; FRAME_SAMPLES]) -> Result<(), AudioError> {
        // An empty input is Opus's signal for "this packet was lost".
        self.inner.decode_float(&[], out, false)?;
        Ok(())
    }

    /// Recovers a lost frame from the FEC data carried in the packet that follows it.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        out: &mut [f32; FRAME_SAMPLES],
    ) -> Result<(), AudioError> {
        // The output length tells Opus how long the lost frame was; it must be exactly 20 ms.
        self.inner.decode_float(next_packet, out, true)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::media::audio::analysis::{goertzel_amplitude, zero_crossing_frequency};
    use crate::media::audio::level::rms;
    use crate::media::audio::tone::{ToneConfig, ToneGenerator};

    fn round_trip(frames: usize) -> (Vec<f32>, Vec<f32>) {
        let mut tone = ToneGenerator::new(ToneConfig::default());
        let mut enc = OpusEncoder::new(DEFAULT_BITRATE, DEFAULT_EXPECTED_LOSS_PERCENT).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let (mut input, mut output) = (Vec::new(), Vec::new());
        let mut out = [0.0; FRAME_SAMPLES];
        for _ in 0..frames {
            let frame = tone.next_frame(Instant::now());
            let packet = enc.encode(&frame.samples).unwrap().to_vec();
            assert!(packet.len() < 400, "packet of {} bytes", packet.len());
            dec.decode(&packet, &mut out).unwrap();
            input.extend_from_slice(&frame.samples);
            output.extend_from_slice(&out);
        }
        (input, output)
    }

    #[test]
    fn opus_round_trip_keeps_frequency_and_level() {
        let (input, output) = round_trip(50);
        // Skip the first 100 ms: the codec's look-ahead and warm-up.
        let steady = &output[4800..];
        let freq = zero_crossing_frequency(steady, SAMPLE_RATE).unwrap();
        assert!((freq - 440.0).abs() < 3.0, "frequency {freq}");
        let (rms_in, rms_out) = (rms(&input[4800..]), rms(steady));
        assert!(
            (rms_out / rms_in - 1.0).abs() < 0.1,
            "rms in {rms_in}, out {rms_out}"
        );
        // The energy is at 440 Hz, not smeared across the band.
        assert!(goertzel_amplitude(steady, SAMPLE_RATE, 440.0) > 0.4);
        assert!(goertzel_amplitude(steady, SAMPLE_RATE, 1000.0) < 0.02);
    }

    #[test]
    fn concealment_and_fec_fill_a_lost_frame_with_the_tone() {
        let mut tone = ToneGenerator::new(ToneConfig::default());
        let mut enc = OpusEncoder::new(DEFAULT_BITRATE, 20).unwrap();
        let packets: Vec<Vec<u8>> = (0..30)
            .map(|_| {
                let f = tone.next_frame(Instant::now());
                enc.encode(&f.samples).unwrap().to_vec()
            })
            .collect();
        let mut out = [0.0; FRAME_SAMPLES];

        // Frame 20 is lost; PLC continues the tone at about its level.
        let mut plc = OpusDecoder::new().unwrap();
        for p in &packets[..20] {
            plc.decode(p, &mut out).unwrap();
        }
        plc.conceal(&mut out).unwrap();
        assert!(rms(&out) > 0.15, "PLC rms {}", rms(&out));

        // FEC from packet 21 recovers frame 20 closely.
        let mut fec = OpusDecoder::new().unwrap();
        for p in &packets[..20] {
            fec.decode(p, &mut out).unwrap();
        }
        fec.decode_fec(&packets[21], &mut out).unwrap();
        let f = zero_crossing_frequency(&out, SAMPLE_RATE).unwrap();
        assert!((f - 440.0).abs() < 10.0, "FEC frequency {f}");
        assert!(rms(&out) > 0.25, "FEC rms {}", rms(&out));
        // The stream goes on normally after the recovered frame.
        fec.decode(&packets[21], &mut out).unwrap();
        assert!(rms(&out) > 0.3);
    }

    #[test]
    fn bitrate_changes_packet_size() {
        let mut tone = ToneGenerator::new(ToneConfig::default());
        let mut enc = OpusEncoder::new(12_000, 0).unwrap();
        let mut small = 0;
        for _ in 0..20 {
            small += enc
                .encode(&tone.next_frame(Instant::now()).samples)
                .unwrap()
                .len();
        }
        enc.set_bitrate(64_000).unwrap();
        let mut large = 0;
        for _ in 0..20 {
            large += enc
                .encode(&tone.next_frame(Instant::now()).samples)
                .unwrap()
                .len();
        }
        assert!(large > small * 2, "12 kb/s: {small} B, 64 kb/s: {large} B");
    }
}
