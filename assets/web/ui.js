// The call view: one tile per member, a large tile per screen share (spotlight layout),
// and the chat log.

const $ = (id) => document.getElementById(id);

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return parts.slice(0, 2).map((p) => [...p][0].toUpperCase()).join('') || '?';
}

export class Tiles {
  constructor() {
    this.el = $('tiles');
    this.tiles = new Map();
    // Per member: { name, sharing (their state.screen), track (the screen m-section's), tile }.
    this.shares = new Map();
  }

  /** The tile for member `id`, made on first use. */
  ensure(id) {
    let tile = this.tiles.get(id);
    if (tile) return tile;
    const root = document.createElement('div');
    root.className = 'tile';
    root.dataset.peer = id;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // sound plays through the <audio> element
    const audio = document.createElement('audio');
    audio.autoplay = true;
    const face = document.createElement('div');
    face.className = 'initials';
    const label = document.createElement('span');
    label.className = 'label';
    const name = document.createElement('span');
    const muted = document.createElement('span');
    muted.className = 'muted';
    muted.textContent = 'muted';
    label.append(name, muted);
    root.append(video, audio, face, label);
    this.el.append(root);
    tile = { root, video, audio, face, name };
    this.tiles.set(id, tile);
    return tile;
  }

  /** Shows a member's name (plus `suffix`, e.g. " (you)") and media state. */
  update(id, { name, audio, video, screen }, suffix = '') {
    const share = this.share(id);
    share.name = name;
    share.sharing = !!screen;
    this.showShare(id);
    const tile = this.ensure(id);
    tile.name.textContent = name + suffix;
    // From the name alone: "Web (you)" made "W(".
    tile.face.textContent = initials(name);
    tile.root.classList.toggle('mic-off', !audio);
    tile.root.classList.toggle('camera-off', !video);
  }

  /** Plays a remote track in member `id`'s tile, or in their share tile for 'screen'. */
  attach(id, track, slot) {
    if (slot === 'screen') {
      // Kept while no share is on: the m-section stays, and a later share reuses the track.
      this.share(id).track = track;
      this.showShare(id);
      return;
    }
    const tile = this.ensure(id);
    const el = track.kind === 'video' ? tile.video : tile.audio;
    el.srcObject = new MediaStream([track]);
    el.play().catch(() => {});
  }

  showLocal(id, stream) {
    const tile = this.ensure(id);
    // Assigned afresh so a camera added after join shows up.
    tile.video.srcObject = null;
    tile.video.srcObject = stream;
    tile.root.classList.add('self');
  }

  share(id) {
    let share = this.shares.get(id);
    if (!share) {
      share = { name: '', sharing: false, track: null, tile: null };
      this.shares.set(id, share);
    }
    return share;
  }

  /**
   * Shows member `id`'s share while they say one is on and its track has come; removes
   * the tile otherwise. Our own share has no received track, so it never gets a tile here.
   */
  showShare(id) {
    const share = this.shares.get(id);
    if (!share) return;
    const on = share.sharing && !!share.track;
    if (on && !share.tile) {
      const root = document.createElement('div');
      root.className = 'tile share';
      root.dataset.peer = id;
      root.title = 'Click to switch between fit and actual size';
      const video = document.createElement('video');
      video.autoplay = true;
      video.playsInline = true;
      video.muted = true;
      video.srcObject = new MediaStream([share.track]);
      const label = document.createElement('span');
      label.className = 'label';
      root.append(video, label);
      root.addEventListener('click', () => root.classList.toggle('actual'));
      this.el.prepend(root);
      video.play().catch(() => {});
      share.tile = { root, label };
    } else if (!on && share.tile) {
      share.tile.root.remove();
      share.tile = null;
    }
    if (share.tile) share.tile.label.textContent = `${share.name}'s screen`;
    this.el.classList.toggle('spotlight', [...this.shares.values()].some((s) => s.tile));
  }

  remove(id) {
    const share = this.shares.get(id);
    if (share) {
      share.sharing = false;
      this.showShare(id);
      this.shares.delete(id);
    }
    const tile = this.tiles.get(id);
    if (tile) tile.root.remove();
    this.tiles.delete(id);
  }

  clear() {
    for (const id of new Set([...this.tiles.keys(), ...this.shares.keys()])) this.remove(id);
  }
}

/** Appends one chat message to the log. */
export function addChat({ name, text, ts }) {
  const li = document.createElement('li');
  const who = document.createElement('b');
  who.textContent = name;
  const when = new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  li.title = when;
  li.append(who, document.createTextNode(text));
  $('chat-log').append(li);
  li.scrollIntoView({ block: 'end' });
}

export function clearChat() {
  $('chat-log').replaceChildren();
}
