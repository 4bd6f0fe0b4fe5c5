// Which transceiver carries what (protocol.md): audio, and among the video m-sections the
// first is the camera and the second the screen share. Order comes from the SDP, never
// from track ids or the order tracks arrived in.

/** The video mids of one description, in m-line order. */
function videoMids(desc) {
  const mids = [];
  if (!desc) return mids;
  let kind = null;
  for (const line of desc.sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) kind = line.slice(2).split(' ')[0];
    else if (kind === 'video' && line.startsWith('a=mid:')) mids.push(line.slice(6).trim());
  }
  return mids;
}

/**
 * The video transceivers of `pc`, camera first and screen second. m-lines are only ever
 * appended, so every description is a prefix of the longest one; transceivers not yet in
 * any description (just added) follow in the order they were made.
 */
export function videoTransceivers(pc) {
  let mids = [];
  for (const d of [pc.pendingRemoteDescription, pc.pendingLocalDescription,
    pc.currentRemoteDescription, pc.currentLocalDescription]) {
    const m = videoMids(d);
    if (m.length > mids.length) mids = m;
  }
  const video = pc.getTransceivers().filter((t) => !t.stopped && t.receiver.track.kind === 'video');
  const rank = (t) => {
    const i = t.mid === null ? -1 : mids.indexOf(t.mid);
    return i < 0 ? Infinity : i;
  };
  return video.map((t, made) => ({ t, made }))
    .sort((a, b) => (rank(a.t) - rank(b.t)) || (a.made - b.made))
    .map((x) => x.t);
}

/** 'audio', 'camera' or 'screen' for a transceiver of `pc`; null for a third video one. */
export function slotOf(pc, transceiver) {
  if (transceiver.receiver.track.kind === 'audio') return 'audio';
  const i = videoTransceivers(pc).indexOf(transceiver);
  return ['camera', 'screen'][i] || null;
}

/** Byte-string order of two ids, as protocol.md compares them (JS compares UTF-16 units). */
export function idBefore(a, b) {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] < y[i];
  }
  return x.length < y.length;
}
