// Codec order: H.264 constrained baseline first, as protocol.md asks, then the rest.

function rank(codec) {
  const mime = codec.mimeType.toLowerCase();
  if (mime !== 'video/h264') return 3;
  const fmtp = (codec.sdpFmtpLine || '').toLowerCase();
  const baseline = fmtp.includes('profile-level-id=42e01f');
  const mode1 = fmtp.includes('packetization-mode=1');
  if (baseline && mode1) return 0;
  return mode1 ? 1 : 2;
}

/** Puts H.264 42e01f mode 1 first on every video transceiver that supports preferences. */
export function preferH264(pc) {
  if (!('setCodecPreferences' in RTCRtpTransceiver.prototype)) return;
  const caps = RTCRtpReceiver.getCapabilities('video');
  if (!caps) return;
  const codecs = [...caps.codecs].sort((a, b) => rank(a) - rank(b));
  for (const t of pc.getTransceivers()) {
    const kind = t.receiver.track && t.receiver.track.kind;
    if (kind !== 'video' || t.stopped) continue;
    try { t.setCodecPreferences(codecs); } catch (e) { console.warn('codec preferences', e); }
  }
}
