// The local camera and mic. Muting swaps the track out of every sender (no renegotiation).

export class LocalMedia {
  constructor() {
    this.stream = new MediaStream();
    this.on = { audio: false, video: false };
  }

  /** Asks for camera and mic; returns a message for the user when something was refused. */
  async open() {
    const problems = [];
    for (const kind of ['audio', 'video']) {
      const constraints = kind === 'video' ? { video: { width: 640, height: 360 } } : { audio: true };
      try {
        const s = await navigator.mediaDevices.getUserMedia(constraints);
        for (const t of s.getTracks()) this.stream.addTrack(t);
        this.on[kind] = true;
      } catch (e) {
        problems.push(`${kind === 'video' ? 'camera' : 'microphone'} unavailable (${e.name})`);
      }
    }
    return problems.length ? `Joining without ${problems.join(' and ')}.` : '';
  }

  track(kind) {
    return kind === 'audio' ? this.stream.getAudioTracks()[0] : this.stream.getVideoTracks()[0];
  }

  sending(kind) {
    return this.on[kind] && !!this.track(kind);
  }

  /** Flips one kind; returns the track to send now (null while off). */
  toggle(kind) {
    const track = this.track(kind);
    if (!track) return null;
    this.on[kind] = !this.on[kind];
    track.enabled = this.on[kind];
    return this.on[kind] ? track : null;
  }

  stop() {
    for (const t of this.stream.getTracks()) t.stop();
    this.stream = new MediaStream();
    this.on = { audio: false, video: false };
  }
}
