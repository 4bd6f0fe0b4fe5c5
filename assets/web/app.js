// Wires the lobby, the signaling socket, one PeerLink per member and the call view.

import { Signaling } from './signaling.js';
import { PeerLink } from './peer.js';
import { slotOf } from './slots.js';
import { SfuMove } from './sfu.js';
import { LocalMedia } from './media.js';
import { Tiles, addChat, clearChat } from './ui.js';

const $ = (id) => document.getElementById(id);

const ERRORS = {
  'room-full': 'This room is full. Try again when someone has left, or use another room code.',
  'wrong-passcode': 'This room needs a passcode. Enter it and join again.',
  'bad-room-code': 'That room code is not valid (3 to 64 of a-z, 0-9 and -).',
  'bad-name': 'Please enter a name (at most 64 characters).',
};

// `?relay` in the page's address (the room link): use only relay (TURN) candidates, as
// `meshcall join --relay-only` does, so every connection goes through the TURN server.
const RELAY_ONLY = new URLSearchParams(location.search).has('relay');

const state = {
  relayOnly: RELAY_ONLY,
  signaling: null,
  media: new LocalMedia(),
  tiles: null,
  self: null,
  myState: null,
  iceServers: [],
  links: new Map(),  // peer id -> PeerLink
  sfu: null,         // SfuMove while the room's media goes (or is going) through Janus
  peers: new Map(),  // peer id -> peer object
  inCall: false,
  mediaWarning: '',  // why a device is off since join, for the call view
};

function lobbyMessage(text) {
  $('lobby-message').textContent = text;
}

function status(text) {
  $('status').textContent = text;
}

/** A lasting message in the call view, e.g. why the camera is off. */
function notice(text) {
  $('notice').textContent = text;
  $('notice').hidden = !text;
}

/** Labels the mic and camera buttons after what is being sent now. */
function showButtons() {
  const mic = state.media.sending('audio');
  const cam = state.media.sending('video');
  $('toggle-mic').textContent = mic ? 'Mute' : 'Unmute';
  $('toggle-mic').setAttribute('aria-pressed', String(!mic));
  $('toggle-cam').textContent = cam ? 'Camera off' : 'Camera on';
  $('toggle-cam').setAttribute('aria-pressed', String(!cam));
  const screen = state.media.screen;
  $('share').textContent = screen ? 'Stop sharing' : 'Share screen';
  $('share').setAttribute('aria-pressed', String(!!screen));
  $('sharing').textContent = screen ? `You are sharing ${screen.label || 'your screen'}` : '';
  $('sharing').hidden = !screen;
}

function send(msg) {
  state.signaling.send(msg);
}

function link(peerId, initiator) {
  let l = state.links.get(peerId);
  if (l) return l;
  l = new PeerLink({
    selfId: state.self,
    peerId,
    initiator,
    iceServers: state.iceServers,
    relayOnly: state.relayOnly,
    media: state.media,
    hooks: {
      signal: (payload) => send({ type: 'signal', to: peerId, payload }),
      track: (track, slot) => state.tiles.attach(peerId, track, slot),
    },
  });
  state.links.set(peerId, l);
  return l;
}

function dropPeer(id) {
  const l = state.links.get(id);
  if (l) l.close();
  state.links.delete(id);
  state.peers.delete(id);
  state.tiles.remove(id);
  if (state.sfu) state.sfu.forget(id);
}

/** Shows member `id`'s media from its mesh connection again (a move was called off). */
function showMeshTracks(id) {
  const l = state.links.get(id);
  if (!l) return;
  for (const t of l.pc.getTransceivers()) {
    const slot = !t.stopped && t.receiver.track && slotOf(l.pc, t);
    if (slot) state.tiles.attach(id, t.receiver.track, slot);
  }
}

/**
 * Media through Janus: `moving` for a mesh room on its way (make-before-break, mesh
 * connections close as each member's media arrives through Janus), else the room is on
 * Janus already and no mesh connection is made.
 */
function startSfu(sfu, moving) {
  if (state.sfu) return;
  if (sfu.kind !== 'janus-videoroom') {
    send({ type: 'sfu-failed', reason: `unknown media server kind ${sfu.kind}` });
    return;
  }
  state.sfu = new SfuMove({
    sfu,
    moving,
    selfId: state.self,
    iceServers: state.iceServers,
    relayOnly: state.relayOnly,
    media: state.media,
    peers: state.peers,
    links: state.links,
    hooks: {
      show: (id, track, slot) => state.tiles.attach(id, track, slot),
      closeLink: (id) => {
        const l = state.links.get(id);
        if (l) l.close();
        state.links.delete(id);
      },
      ready: (feed) => send({ type: 'sfu-ready', feed }),
      failed: (reason, duringMove) => sfuFailed(reason, duringMove),
    },
  });
  // A share already on (a mesh room moving): Janus carries it too.
  if (state.media.screen) state.sfu.setScreen(state.media.screen, state.media.screenStream);
}

/** Janus could not be used: a move is called off; in a room already on Janus we leave. */
function sfuFailed(reason, duringMove) {
  console.warn('media server:', reason);
  state.sfu = null;
  if (duringMove) {
    send({ type: 'sfu-failed', reason });
    for (const id of state.links.keys()) showMeshTracks(id);
    return;
  }
  leave();
  lobbyMessage(`The call's media server failed (${reason}). Join again to continue.`);
}

/** `move-cancelled`: Janus goes, the mesh stays. */
function cancelMove() {
  if (!state.sfu) return;
  state.sfu.close();
  state.sfu = null;
  for (const id of state.links.keys()) showMeshTracks(id);
}

function stopSfu() {
  if (state.sfu) state.sfu.close();
  state.sfu = null;
}

function showPeer(peer) {
  state.peers.set(peer.id, peer);
  state.tiles.update(peer.id, peer);
}

function onJoined(msg) {
  if (msg.resumed && state.inCall && msg.self === state.self) {
    // Peer connections survived the outage; only reconcile who is still here.
    const present = new Set(msg.peers.map((p) => p.id));
    for (const id of [...state.peers.keys()]) if (!present.has(id)) dropPeer(id);
    for (const p of msg.peers) showPeer(p);
    if (msg.sfu && !state.sfu) startSfu(msg.sfu, false);
    status('');
    return;
  }
  // A fresh join (first, or after the grace period ran out): start over as the newcomer,
  // with a new id, so every old connection and tile goes, our own old tile included.
  stopSfu();
  for (const id of new Set([...state.links.keys(), ...state.peers.keys()])) dropPeer(id);
  if (state.self) state.tiles.remove(state.self);
  state.self = msg.self;
  state.iceServers = msg.iceServers || [];
  state.inCall = true;
  $('lobby').hidden = true;
  $('call').hidden = false;
  $('room-label').textContent = `Room ${msg.room}`;
  history.replaceState(null, '', `/r/${msg.room}${RELAY_ONLY ? '?relay' : ''}`);
  status('');
  // Once: a later fresh join (after a lost resume) must not bring back a stale warning.
  notice(state.mediaWarning);
  state.mediaWarning = '';
  showButtons();
  state.tiles.update(state.self, state.myState, ' (you)');
  state.tiles.showLocal(state.self, state.media.stream);
  clearChat();
  for (const c of msg.chat || []) addChat(c);
  // A fresh join starts with screen false on the server; a share still on says so again.
  if (state.media.screen) send({ type: 'state', screen: true });
  for (const p of msg.peers) {
    showPeer(p);
    // A room on Janus already: no mesh connections at all (protocol-sfu.md).
    if (!msg.sfu) link(p.id, true);
  }
  if (msg.sfu) startSfu(msg.sfu, false);
}

/** A mesh signal: new connections only while the room is a mesh or moving. */
function onSignal(msg) {
  if (state.sfu && !state.sfu.moving && !state.links.has(msg.from)) return;
  link(msg.from, false).receive(msg.payload);
}

function onError(msg) {
  // Signaling joins again by itself after both.
  if (msg.code === 'bad-resume' || msg.code === 'room-moving') return;
  if (!state.inCall) {
    let text = ERRORS[msg.code] || msg.message || msg.code;
    if (msg.code === 'wrong-passcode') {
      $('passcode-row').hidden = false;
      // Tell "you need one" from "that one is wrong".
      if (state.signaling.join.passcode) text = 'Wrong passcode. Check it and join again.';
    }
    lobbyMessage(text);
    $('join').disabled = false;
    if (ERRORS[msg.code]) {
      state.signaling.leave();
      state.media.stop();
    }
    return;
  }
  console.warn('server refused', msg.code, msg.message);
}

function onMessage(msg) {
  switch (msg.type) {
    case 'joined': return onJoined(msg);
    case 'peer-joined': return showPeer(msg.peer);
    case 'peer-updated': return showPeer(msg.peer);
    case 'peer-left': return dropPeer(msg.id);
    case 'signal': return onSignal(msg);
    case 'move-to-sfu':
      state.iceServers = msg.iceServers || state.iceServers;
      return startSfu(msg.sfu, true);
    case 'move-cancelled': return cancelMove();
    case 'chat': return addChat(msg);
    case 'error': return onError(msg);
    default: return undefined;
  }
}

async function join(ev) {
  ev.preventDefault();
  $('join').disabled = true;
  lobbyMessage('Starting camera and microphone…');
  const warning = await state.media.open();
  // Shown in the lobby now and in the call view once joined.
  state.mediaWarning = warning;
  lobbyMessage(warning);
  const name = $('name').value.trim();
  const room = $('room').value.trim().toLowerCase();
  const passcode = $('passcode').value;
  state.myState = { name, audio: state.media.sending('audio'), video: state.media.sending('video') };
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  state.signaling = new Signaling(url, {
    message: onMessage,
    dropped: () => status('Connection lost, reconnecting…'),
    unreachable: () => {
      lobbyMessage('Cannot reach the meshcall server. Check the link and try again.');
      $('join').disabled = false;
      state.media.stop();
    },
  });
  state.signaling.start({
    room: room || null, name, passcode: passcode || null, ...mediaFlags(), features: ['sfu-janus'],
  });
}

function mediaFlags() {
  return { audio: state.media.sending('audio'), video: state.media.sending('video') };
}

async function toggle(kind) {
  let track;
  if (!state.media.track(kind)) {
    // Missing since join (refused, absent or busy): ask the browser again. The button
    // waits meanwhile, so a second click cannot open the device twice.
    const button = $(kind === 'audio' ? 'toggle-mic' : 'toggle-cam');
    button.disabled = true;
    const problem = await state.media.acquire(kind);
    button.disabled = false;
    notice(problem);
    if (problem || !state.inCall) return;
    track = state.media.track(kind);
    state.tiles.showLocal(state.self, state.media.stream);
  } else {
    track = state.media.toggle(kind);
  }
  for (const l of state.links.values()) l.setSending(kind, track, state.media.stream);
  if (state.sfu) state.sfu.setSending(kind, track);
  const on = state.media.sending(kind);
  showButtons();
  state.myState = { ...state.myState, ...mediaFlags() };
  state.signaling.join = { ...state.signaling.join, ...mediaFlags() };
  state.tiles.update(state.self, state.myState, ' (you)');
  send({ type: 'state', [kind]: on });
}

/** Starts a share, or stops the one that is on. */
async function toggleShare() {
  if (state.media.screen) {
    stopShare();
    return;
  }
  $('share').disabled = true;
  const problem = await state.media.startShare(stopShare);
  $('share').disabled = false;
  notice(problem);
  // The user may have left while the browser's picker was open.
  if (problem || !state.inCall) {
    if (!state.inCall) state.media.stopShare();
    return;
  }
  shareChanged();
}

/** Ends the share: our Stop button, or the browser's own "Stop sharing" (track ended). */
function stopShare() {
  if (!state.media.screen) return;
  state.media.stopShare();
  if (state.inCall) shareChanged();
}

/** Tells every connection and the server what the screen slot carries now. */
function shareChanged() {
  const { screen, screenStream } = state.media;
  for (const l of state.links.values()) l.setScreen(screen, screenStream);
  if (state.sfu) state.sfu.setScreen(screen, screenStream);
  state.myState = { ...state.myState, screen: !!screen };
  showButtons();
  send({ type: 'state', screen: !!screen });
}

function leave() {
  stopSfu();
  state.signaling.leave();
  for (const id of [...state.links.keys()]) dropPeer(id);
  state.tiles.clear();
  state.media.stop();
  state.inCall = false;
  $('call').hidden = true;
  $('lobby').hidden = false;
  $('join').disabled = false;
  lobbyMessage('You left the call.');
}

function sendChat(ev) {
  ev.preventDefault();
  const input = $('chat-text');
  const text = input.value.trim();
  if (text) send({ type: 'chat', text });
  input.value = '';
}

function main() {
  state.tiles = new Tiles();
  $('join-form').addEventListener('submit', join);
  $('chat-form').addEventListener('submit', sendChat);
  $('leave').addEventListener('click', leave);
  $('toggle-mic').addEventListener('click', () => toggle('audio'));
  $('toggle-cam').addEventListener('click', () => toggle('video'));
  $('share').addEventListener('click', toggleShare);
  const room = document.body.dataset.room;
  if (room) $('room').value = room;
  // Tests read peer connections from here; nothing in the page depends on it.
  window.meshcall = { state };
}

main();
