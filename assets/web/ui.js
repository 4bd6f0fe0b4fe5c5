// The call view: one tile per member, and the chat log.

const $ = (id) => document.getElementById(id);

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return parts.slice(0, 2).map((p) => [...p][0].toUpperCase()).join('') || '?';
}

export class Tiles {
  constructor() {
    this.el = $('tiles');
    this.tiles = new Map();
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
  update(id, { name, audio, video }, suffix = '') {
    const tile = this.ensure(id);
    tile.name.textContent = name + suffix;
    // From the name alone: "Web (you)" made "W(".
    tile.face.textContent = initials(name);
    tile.root.classList.toggle('mic-off', !audio);
    tile.root.classList.toggle('camera-off', !video);
  }

  /** Plays a remote track in member `id`'s tile. */
  attach(id, track) {
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

  remove(id) {
    const tile = this.tiles.get(id);
    if (tile) tile.root.remove();
    this.tiles.delete(id);
  }

  clear() {
    for (const id of [...this.tiles.keys()]) this.remove(id);
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
