// The Chromium half of the impaired-call benchmark (issue 11): N headless Chromium
// instances, each its own browser process with its own UDP port range, join one room on
// our browser page and talk for DURATION seconds while scripts/impair/chromium-call keeps
// member C's downlink impaired. Writes what every member received and sent, the bitrate of
// every directed pair (nft byte counters) and the CPU time of every instance as JSON.
//
// Run by scripts/impair/chromium-call, inside the private network namespace it made (only
// `lo`), after `impair_init`/`impair_apply`/`impair_counter` and with `meshcall serve` up.
//
//   node impaired.mjs
// env: SERVER_URL (http://127.0.0.1:PORT), MEMBERS ("A:40960-41215,B:41216-41471,..."),
//      SCENARIO, DURATION (s), OUT (result file), CHROMIUM (default /usr/bin/chromium),
//      WINDOW ("12-27": seconds of the call the bitrate is measured over; default 40 % and
//      90 % of DURATION). Byte counters: the rules named sent_X_Y / got_X_Y in nft table
//      `inet imp` (lib.sh's impair_counter / impair_counter_in).
//
// Each instance runs under its own mount namespace in which a private directory is
// bind-mounted over /etc/chromium/policies/managed, holding only
// {"WebRtcUdpPortRange": "LO-HI"}: Chromium binds every WebRTC UDP socket inside that
// range, so nft can tell the members' traffic apart on 127.0.0.1.
//
// What the pages send: the page's getUserMedia is replaced (addInitScript) by
// - video: a 640x360 canvas redrawn 30 times a second (moving background, a bouncing box,
//   the name and frame counter, like meshcall's test pattern) carrying a time band: two
//   rows of 20 cells of 32x32 px at the top, black/white, holding the low 32 bits of
//   Date.now() at drawing time and a CRC-8. Every receiving page reads the band back from
//   each remote <video> with requestVideoFrameCallback, so latency_ms is glass-to-glass
//   (drawn -> shown) on one machine clock.
// - audio: a 440 Hz WebAudio tone (like `meshcall join --audio tone`); Chromium's fake
//   microphone if the AudioContext does not run.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readdirSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const SERVER_URL = process.env.SERVER_URL || 'http://127.0.0.1:8787';
const SCENARIO = process.env.SCENARIO || 'clean';
const DURATION = Number(process.env.DURATION || 30);
const OUT = process.env.OUT;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ROOM = 'impaired-call';
const MEMBERS = (process.env.MEMBERS || 'A:40960-41215,B:41216-41471,C:41472-41727')
  .split(',').map((m) => {
    const [name, range] = m.split(':');
    const [lo, hi] = range.split('-').map(Number);
    return { name, lo, hi, range };
  });
const [WIN_FROM, WIN_TO] = (process.env.WINDOW || `${DURATION * 0.4}-${DURATION * 0.9}`)
  .split('-').map(Number);

const tmp = mkdtempSync(join(tmpdir(), 'meshcall-impaired-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[chromium-call]', ...a);
const problems = [];

// ---------------------------------------------------------------- in the page

/** Injected before the page's scripts: synthetic camera and mic, and the band reader. */
function inject({ name }) {
  const W = 640;
  const H = 360;
  const CELL = 32;
  const COLS = 20;
  const BAND = 2 * CELL;
  const info = { video: null, audio: null, drawn: 0, lat: {}, bad: {}, presented: {}, sizes: {} };
  window.__impaired = info;

  const crc8 = (bytes) => {
    let crc = 0;
    for (const b of bytes) {
      crc ^= b;
      for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
    }
    return crc;
  };
  const be32 = (v) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
  const tri = (v) => { const t = v % 512; return t < 256 ? t : 511 - t; };
  const clamp = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);
  /** BT.601 limited-range YUV to RGB, as meshcall's pattern is specified in YUV. */
  const rgb = (y, u, v) => {
    const c = 1.164 * (y - 16);
    return [clamp(c + 1.596 * (v - 128)), clamp(c - 0.392 * (u - 128) - 0.813 * (v - 128)), clamp(c + 2.017 * (u - 128))];
  };

  /** The background, periodic in x with period 512, so a frame is one blit at an offset. */
  function background() {
    const bw = W + 512;
    const c = document.createElement('canvas');
    c.width = bw;
    c.height = H;
    const g = c.getContext('2d');
    const img = g.createImageData(bw, H);
    for (let row = 0; row < H; row++) {
      for (let col = 0; col < bw; col++) {
        const y = 40 + (tri(col + (row >> 1)) * 150) / 256;
        const u = 64 + tri(col * 2) / 2;
        const v = 64 + tri(row * 3 + col) / 2;
        const [r, gg, b] = rgb(y, u, v);
        const i = (row * bw + col) * 4;
        img.data[i] = r; img.data[i + 1] = gg; img.data[i + 2] = b; img.data[i + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
    return c;
  }

  function videoTrack() {
    const canvas = document.createElement('canvas');
    canvas.width = W;
    canvas.height = H;
    const g = canvas.getContext('2d', { alpha: false });
    const bg = background();
    const box = `rgb(${rgb(82, 90, 240).map(Math.round).join(',')})`;
    const size = H / 4;
    const span = W - size;
    const draw = (n) => {
      g.drawImage(bg, -((n * 3) % 512), 0);
      const travel = (n * 8) % (2 * span);
      g.fillStyle = box;
      g.fillRect(travel < span ? travel : 2 * span - travel, (H - size) / 2, size, size);
      g.fillStyle = '#000';
      g.fillRect(4, BAND + 4, 200, 48);
      g.fillStyle = '#fff';
      g.font = '18px monospace';
      g.fillText(name, 8, BAND + 24);
      g.fillText(`#${String(n).padStart(6, '0')}`, 8, BAND + 46);
      // The time band, drawn last: 32 bits of the clock and a CRC-8, most significant first.
      const now = Date.now() >>> 0;
      const bytes = be32(now);
      const bits = [];
      for (const b of [...bytes, crc8(bytes)]) for (let i = 7; i >= 0; i--) bits.push((b >> i) & 1);
      bits.forEach((bit, k) => {
        g.fillStyle = bit ? '#fff' : '#000';
        g.fillRect((k % COLS) * CELL, Math.floor(k / COLS) * CELL, CELL, CELL);
      });
      info.drawn = n + 1;
    };
    // 30 frames a second, on a schedule that does not drift.
    const start = performance.now();
    let n = 0;
    const tick = () => {
      draw(n++);
      setTimeout(tick, Math.max(0, start + (n * 1000) / 30 - performance.now()));
    };
    tick();
    info.video = 'canvas 640x360 30 fps, time band';
    return canvas.captureStream(30).getVideoTracks()[0];
  }

  async function toneTrack() {
    try {
      const ac = new AudioContext({ sampleRate: 48000 });
      const osc = ac.createOscillator();
      osc.frequency.value = 440;
      const gain = ac.createGain();
      gain.gain.value = 0.25;
      const dst = ac.createMediaStreamDestination();
      osc.connect(gain).connect(dst);
      osc.start();
      await Promise.race([ac.resume(), new Promise((r) => setTimeout(r, 1000))]);
      if (ac.state !== 'running') return null;
      info.audio = 'WebAudio 440 Hz tone';
      return dst.stream.getAudioTracks()[0];
    } catch (e) {
      console.warn('tone', e);
      return null;
    }
  }

  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = async (constraints) => {
      if (constraints && constraints.video) return new MediaStream([videoTrack()]);
      if (constraints && constraints.audio) {
        const tone = await toneTrack();
        if (tone) return new MediaStream([tone]);
        info.audio = 'Chromium fake microphone';
      }
      return original(constraints);
    };
  }

  /** Reads the band of every frame shown in `video`; keeps [shown at, latency, w, h]. */
  function hook(video, peer) {
    const c = document.createElement('canvas');
    c.width = COLS * 8;
    c.height = 16;
    const g = c.getContext('2d', { willReadFrequently: true });
    info.lat[peer] = info.lat[peer] || [];
    info.bad[peer] = info.bad[peer] || 0;
    info.presented[peer] = info.presented[peer] || 0;
    const onFrame = (_now, meta) => {
      // When the frame went to the compositor, not when this callback got to run (the
      // main thread may be busy), on the same clock as the sender's Date.now().
      const shown = meta.presentationTime ? Math.round(performance.timeOrigin + meta.presentationTime) : Date.now();
      info.presented[peer] += 1;
      try {
        const vw = meta.width || video.videoWidth;
        const vh = meta.height || video.videoHeight;
        const key = `${vw}x${vh}`;
        info.sizes[peer] = info.sizes[peer] || {};
        info.sizes[peer][key] = (info.sizes[peer][key] || 0) + 1;
        g.drawImage(video, 0, 0, vw, (vh * BAND) / H, 0, 0, c.width, c.height);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        const bits = [];
        for (let k = 0; k < 40; k++) {
          const x0 = (k % COLS) * 8 + 2;
          const y0 = Math.floor(k / COLS) * 8 + 2;
          let sum = 0;
          for (let y = y0; y < y0 + 4; y++) {
            for (let x = x0; x < x0 + 4; x++) {
              const i = (y * c.width + x) * 4;
              sum += (d[i] + d[i + 1] + d[i + 2]) / 3;
            }
          }
          const mean = sum / 16;
          if (mean <= 80) bits.push(0);
          else if (mean >= 170) bits.push(1);
          else { bits.push(-1); break; }
        }
        let ok = bits.length === 40 && !bits.includes(-1);
        if (ok) {
          const bytes = [];
          for (let b = 0; b < 5; b++) bytes.push(bits.slice(b * 8, b * 8 + 8).reduce((a, x) => (a << 1) | x, 0));
          ok = crc8(bytes.slice(0, 4)) === bytes[4];
          if (ok) {
            const stamp = ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
            const lat = ((shown >>> 0) - stamp) >>> 0;
            if (lat < 600000) info.lat[peer].push([shown, lat, vw, vh]);
            else ok = false;
          }
        }
        if (!ok) info.bad[peer] += 1;
      } catch (e) {
        info.bad[peer] += 1;
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  // Hooks every remote tile's <video> once the page has made it.
  const hooked = new WeakSet();
  setInterval(() => {
    const m = window.meshcall;
    if (!m || !m.state.tiles) return;
    for (const [id, tile] of m.state.tiles.tiles) {
      if (id === m.state.self || hooked.has(tile.video)) continue;
      const peer = m.state.peers.get(id);
      if (!peer) continue;
      hooked.add(tile.video);
      hook(tile.video, peer.name);
    }
  }, 200);
}

/** The raw WebRTC stats of every connection of the page, by the other member's name. */
function pageStats() {
  const { state } = window.meshcall;
  const keep = new Set(['inbound-rtp', 'outbound-rtp', 'remote-inbound-rtp', 'transport', 'candidate-pair',
    'local-candidate', 'remote-candidate', 'codec']);
  return (async () => {
    const out = {};
    for (const [id, link] of state.links) {
      const report = await link.pc.getStats();
      const all = {};
      report.forEach((x) => { if (keep.has(x.type)) all[x.id] = { ...x }; });
      out[(state.peers.get(id) || { name: id }).name] = { at: Date.now(), connection: link.pc.connectionState, stats: all };
    }
    return out;
  })();
}

// ---------------------------------------------------------------- stats, in node

/** The stats objects of one type (and kind); for inbound/outbound the busiest one. */
function find(stats, type, kind) {
  const xs = Object.values(stats).filter((x) => x.type === type && (!kind || x.kind === kind));
  const weight = (x) => x.framesDecoded || x.framesEncoded || x.packetsReceived || x.packetsSent || 0;
  return xs.sort((a, b) => weight(b) - weight(a))[0];
}

function selectedPair(stats) {
  const transport = find(stats, 'transport');
  const pair = (transport && stats[transport.selectedCandidatePairId])
    || Object.values(stats).find((x) => x.type === 'candidate-pair' && x.nominated && x.state === 'succeeded');
  if (!pair) return null;
  return { pair, local: stats[pair.localCandidateId], remote: stats[pair.remoteCandidateId] };
}

const round = (v, d = 1) => (v == null || Number.isNaN(v) ? null : Math.round(v * 10 ** d) / 10 ** d);

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** What `me` received from `from`, in the harness's terms. */
function receivedFrom(end, mid, lat, sizes, bad, presented, t0, tEnd) {
  const s = end.stats;
  const v = find(s, 'inbound-rtp', 'video') || {};
  const a = find(s, 'inbound-rtp', 'audio') || {};
  const vMid = (mid && find(mid.stats, 'inbound-rtp', 'video')) || {};
  const codec = v.codecId && s[v.codecId];
  const sel = selectedPair(s);
  const rttMs = sel && sel.pair.currentRoundTripTime != null ? sel.pair.currentRoundTripTime * 1000 : null;
  const vjb = v.jitterBufferEmittedCount ? (v.jitterBufferDelay / v.jitterBufferEmittedCount) * 1000 : null;
  const ajb = a.jitterBufferEmittedCount ? (a.jitterBufferDelay / a.jitterBufferEmittedCount) * 1000 : null;
  const lossPct = (x) => {
    const total = (x.packetsLost || 0) + (x.packetsReceived || 0);
    return total ? ((x.packetsLost || 0) / total) * 100 : null;
  };
  const inCall = lat.filter(([t]) => t >= t0 && t <= tEnd).map(([, l]) => l).sort((x, y) => x - y);
  const fpsSpan = mid ? (end.at - mid.at) / 1000 : null;
  const decodeMs = v.framesDecoded ? (v.totalDecodeTime / v.framesDecoded) * 1000 : null;
  return {
    connection: end.connection,
    video_codec: codec ? codec.mimeType : null,
    video_frames: v.framesDecoded || 0,
    audio_frames: Math.floor(((a.totalSamplesReceived || 0) - (a.concealedSamples || 0)) / 960),
    audio_concealed: Math.floor((a.concealedSamples || 0) / 960),
    fps: fpsSpan ? round(((v.framesDecoded || 0) - (vMid.framesDecoded || 0)) / fpsSpan) : null,
    freezes: v.freezeCount ?? null,
    freeze_ms: v.totalFreezesDuration != null ? Math.round(v.totalFreezesDuration * 1000) : null,
    resolution: v.frameWidth ? `${v.frameWidth}x${v.frameHeight}` : null,
    resolutions_shown: sizes || {},
    nack_sent: v.nackCount ?? null,
    pli_sent: v.pliCount ?? null,
    rtx_received: v.retransmittedPacketsReceived ?? null,
    loss_pct: round(lossPct(v), 2),
    audio_loss_pct: round(lossPct(a), 2),
    latency_ms: inCall.length ? { p50: percentile(inCall, 50), p95: percentile(inCall, 95), n: inCall.length } : null,
    band_unreadable: bad || 0,
    frames_shown: presented || 0,
    latency_estimate_ms: vjb != null ? round(vjb + (rttMs || 0) / 2) : null,
    video_jitter_buffer_ms: round(vjb),
    audio_jitter_buffer_ms: round(ajb),
    video_decode_ms: round(decodeMs, 2),
    rtt_ms: round(rttMs),
    frames_dropped: v.framesDropped ?? null,
    video_packets: { received: v.packetsReceived || 0, lost: v.packetsLost || 0 },
    audio_packets: { received: a.packetsReceived || 0, lost: a.packetsLost || 0 },
    audio_samples: { total: a.totalSamplesReceived || 0, concealed: a.concealedSamples || 0,
      silent_concealed: a.silentConcealedSamples || 0, fec_packets: a.fecPacketsReceived ?? null },
  };
}

/** What `me` sent to `to`: the per-peer encoder's view. */
function sentTo(end) {
  const s = end.stats;
  const v = find(s, 'outbound-rtp', 'video') || {};
  const a = find(s, 'outbound-rtp', 'audio') || {};
  const durations = v.qualityLimitationDurations || {};
  return {
    frames_encoded: v.framesEncoded || 0,
    frames_sent: v.framesSent || 0,
    resolution: v.frameWidth ? `${v.frameWidth}x${v.frameHeight}` : null,
    quality_limitation: v.qualityLimitationReason ?? null,
    quality_limitation_s: Object.fromEntries(Object.entries(durations).map(([k, x]) => [k, round(x)])),
    target_kbps: v.targetBitrate != null ? round(v.targetBitrate / 1000) : null,
    encoder: v.encoderImplementation ?? null,
    keyframes: v.keyFramesEncoded ?? null,
    nack_received: v.nackCount ?? null,
    pli_received: v.pliCount ?? null,
    rtx_packets_sent: v.retransmittedPacketsSent ?? null,
    audio_packets_sent: a.packetsSent || 0,
  };
}

// ---------------------------------------------------------------- processes

const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** Chromium's name for a process's role: browser, renderer, gpu-process, utility, zygote... */
function role(pid) {
  try {
    // Chromium rewrites its children's titles: one string, arguments split by spaces.
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split(/[\0 ]+/);
    const type = args.find((a) => a.startsWith('--type='));
    if (!type) return 'browser';
    const sub = args.find((a) => a.startsWith('--utility-sub-type='));
    return sub ? `utility:${sub.split('=')[1].split('.').pop()}` : type.slice(7);
  } catch {
    return 'gone';
  }
}

/**
 * CPU seconds (user + system, live and reaped children) of `root` and everything under it,
 * in total and by process role.
 */
function treeCpu(root) {
  const procs = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const text = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      procs.set(Number(d), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
    } catch { /* gone */ }
  }
  const kids = new Map();
  for (const [pid, p] of procs) {
    if (!kids.has(p.ppid)) kids.set(p.ppid, []);
    kids.get(p.ppid).push(pid);
  }
  let ticks = 0;
  let count = 0;
  const byRole = {};
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop();
    const p = procs.get(pid);
    if (!p) continue;
    ticks += p.ticks;
    count += 1;
    const r = role(pid);
    byRole[r] = (byRole[r] || 0) + p.ticks / TICK;
    stack.push(...(kids.get(pid) || []));
  }
  return { s: ticks / TICK, processes: count, byRole };
}

/** The browser process of member `name`: the one started with our marker switch. */
function browserPid(name) {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const args = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (args.includes(`--meshcall-member=${name}`) && !args.some((a) => a.startsWith('--type='))) return Number(d);
    } catch { /* gone */ }
  }
  return null;
}

/**
 * Bytes counted so far by every named nft counter, and when. The same reading as lib.sh's
 * impair_all_bytes (the rules' comments name the counters), done here with one `nft`
 * call so that the time of the reading is known to a few milliseconds (a shell that
 * sources lib.sh and starts python took up to 2 s on a loaded machine).
 */
function readCounters() {
  const before = Date.now();
  const text = execFileSync('nft', ['-j', 'list', 'table', 'inet', 'imp'], { timeout: 20000 }).toString();
  const at = (before + Date.now()) / 2;
  const bytes = {};
  for (const item of JSON.parse(text).nftables || []) {
    const rule = item.rule;
    if (!rule || !rule.comment) continue;
    for (const e of rule.expr || []) {
      if (e.counter) bytes[rule.comment] = (bytes[rule.comment] || 0) + e.counter.bytes;
    }
  }
  return { at, bytes };
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);

async function waitServer() {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${SERVER_URL}/healthz`)).ok) return;
    } catch { /* not up yet */ }
    await sleep(100);
  }
  throw new Error('the server did not start');
}

/** Starts one browser for member `m` with its port range, and opens the room page. */
async function launch(m) {
  const policies = join(tmp, `policies-${m.name}`);
  mkdirSync(policies, { recursive: true });
  writeFileSync(join(policies, 'impaired.json'), JSON.stringify({ WebRtcUdpPortRange: m.range }));
  // A mount namespace per instance, so each sees only its own policy directory.
  const wrapper = join(tmp, 'chromium-wrapper');
  writeFileSync(wrapper, `#!/bin/sh
exec unshare -m sh -c 'mount --bind "$IMPAIRED_POLICIES" /etc/chromium/policies/managed && exec "$IMPAIRED_CHROMIUM" "$@"' chromium "$@"
`);
  chmodSync(wrapper, 0o755);
  const home = join(tmp, `home-${m.name}`);
  mkdirSync(home, { recursive: true });
  const browser = await chromium.launch({
    executablePath: wrapper,
    headless: true,
    env: { ...process.env, IMPAIRED_POLICIES: policies, IMPAIRED_CHROMIUM: CHROMIUM, HOME: home,
      XDG_CONFIG_HOME: join(home, 'config'), PULSE_RUNTIME_PATH: join(home, 'pulse') },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--autoplay-policy=no-user-gesture-required', `--meshcall-member=${m.name}`],
    timeout: 30000,
  });
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  await context.grantPermissions(['camera', 'microphone']);
  await context.addInitScript(inject, { name: m.name });
  const page = await context.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error' || msg.type() === 'warning') log(`${m.name} console.${msg.type()}:`, msg.text()); });
  page.on('pageerror', (e) => log(`${m.name} page error:`, e.message));
  await page.goto(`${SERVER_URL}/r/${ROOM}`);
  return { ...m, browser, page, pid: browserPid(m.name) };
}

async function policyCheck(page) {
  try {
    await page.goto('chrome://policy', { timeout: 10000 });
    // The policy table is drawn in shadow DOM, which Playwright's text locators pierce.
    const row = page.locator('text=WebRtcUdpPortRange').first();
    await row.waitFor({ timeout: 10000 });
    return true;
  } catch {
    return null;
  }
}

/** One line per figure of issue 11's table, on stderr. */
function summary(r) {
  const f = (me, from) => (r.members[me] && r.members[me].from[from]) || {};
  const pair = (a, b, key) => `${f(b, a)[key] ?? '-'}/${f(a, b)[key] ?? '-'}`;
  const lines = [`chromium ${r.scenario} (${r.duration_s} s, load ${r.load_avg.start[0]} -> ${r.load_avg.end[0]}):`];
  if (r.members.C && !r.members.D) {
    lines.push(`  A<->B kbps ${r.kbps ? `${r.kbps['A->B']}/${r.kbps['B->A']}` : '-'}; A<->B video frames ${pair('A', 'B', 'video_frames')}`);
    const c = (key) => `${f('C', 'A')[key] ?? '-'}, ${f('C', 'B')[key] ?? '-'}`;
    lines.push(`  C from A, B: video frames ${c('video_frames')}; fps ${c('fps')}; audio frames ${c('audio_frames')} (concealed ${c('audio_concealed')})`);
    lines.push(`  C's latency p50/p95 ms: from A ${f('C', 'A').latency_p50_ms}/${f('C', 'A').latency_p95_ms}, from B ${f('C', 'B').latency_p50_ms}/${f('C', 'B').latency_p95_ms}; freezes ${c('freezes')}`);
  }
  lines.push(`  CPU s during the call: ${Object.entries(r.members).map(([n, m]) => `${n} ${m.cpu_s}`).join(', ')}`);
  if (r.errors.length) lines.push(`  errors: ${r.errors.join('; ')}`);
  log(lines.join('\n'));
}

const snapshot = (members) => Promise.all(members.map(async (m) => [m.name, await m.page.evaluate(pageStats)]))
  .then(Object.fromEntries);

/** Receiver-side RTP bytes (payload + headers) from `from` in `me`'s snapshot, of `kind` or all. */
function rtpBytes(snap, me, from, kind) {
  const s = snap && snap[me] && snap[me][from];
  if (!s) return null;
  return Object.values(s.stats).filter((x) => x.type === 'inbound-rtp' && (!kind || x.kind === kind))
    .reduce((sum, x) => sum + (x.bytesReceived || 0) + (x.headerBytesReceived || 0), 0);
}

async function main() {
  if (!OUT) throw new Error('OUT is not set');
  await waitServer();
  const version = execFileSync(CHROMIUM, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  const members = [];
  try {
    for (const m of MEMBERS) members.push(await launch(m));
    for (const m of members) if (!m.pid) problems.push(`no browser process found for ${m.name}`);
    for (const m of members) await m.page.fill('#name', m.name);
    // t = 0 when A joins (as when `meshcall join` A starts); the others join once the room
    // exists, all at once. Every member leaves at t = DURATION.
    const join = async (m) => {
      await m.page.click('#join');
      await m.page.waitForSelector('#call:not([hidden])', { timeout: 15000 });
      m.joinedAt = Date.now();
    };
    const load0 = loadavg();
    const cpu0 = Object.fromEntries(members.map((m) => [m.name, m.pid ? treeCpu(m.pid) : null]));
    const t0 = Date.now();
    const at = (s) => sleep(Math.max(0, t0 + s * 1000 - Date.now()));
    await join(members[0]);
    await Promise.all(members.slice(1).map(join));
    const pairs = [];
    for (const a of members) for (const b of members) if (a !== b) pairs.push([a.name, b.name]);
    // Counters (and stats) at WIN_FROM and WIN_TO, stats 10 s before the end (fps) and at the end.
    const events = [
      { t: WIN_FROM, what: 'from' }, { t: WIN_TO, what: 'to' }, { t: Math.max(DURATION - 10, 0), what: 'mid' },
    ].sort((x, y) => x.t - y.t);
    const counters = {};
    const snaps = {};
    for (const e of events) {
      await at(e.t);
      if (e.what !== 'mid') counters[e.what] = readCounters();
      snaps[e.what] = await snapshot(members);
    }
    await at(DURATION);
    const tEnd = Date.now();
    const end = await snapshot(members);
    const load1 = loadavg();
    const cpu1 = Object.fromEntries(members.map((m) => [m.name, m.pid ? treeCpu(m.pid) : null]));
    const pageInfo = Object.fromEntries(await Promise.all(members.map(async (m) => [m.name, await m.page.evaluate(() => {
      const i = window.__impaired;
      return { lat: i.lat, bad: i.bad, presented: i.presented, sizes: i.sizes, video: i.video, audio: i.audio, drawn: i.drawn };
    })])));
    const policy = await policyCheck(members[0].page);

    // Bitrate of each directed pair over the window, from the nft counters: sent (output
    // hook, before cap and loss) and delivered (input hook, after them).
    let kbps = null;
    let delivered = null;
    let window = [WIN_FROM, WIN_TO];
    if (counters.from && counters.to) {
      const secs = (counters.to.at - counters.from.at) / 1000;
      const rate = (name) => round(((counters.to.bytes[name] - counters.from.bytes[name]) * 8) / secs / 1000);
      kbps = Object.fromEntries(pairs.map(([a, b]) => [`${a}->${b}`, rate(`sent_${a}_${b}`)]));
      delivered = Object.fromEntries(pairs.map(([a, b]) => [`${a}->${b}`, rate(`got_${a}_${b}`)]));
      window = [round((counters.from.at - t0) / 1000), round((counters.to.at - t0) / 1000)];
    } else {
      problems.push('no nft counters');
    }
    const rtpKbps = {};
    for (const [a, b] of pairs) {
      const r0 = rtpBytes(snaps.from, b, a);
      const r1 = rtpBytes(snaps.to, b, a);
      if (r0 != null && r1 != null) rtpKbps[`${a}->${b}`] = round(((r1 - r0) * 8) / ((snaps.to[b][a].at - snaps.from[b][a].at) / 1000) / 1000);
    }

    const out = {};
    for (const me of members) {
      const from = {};
      const sentTo_ = {};
      const used = new Set();
      for (const other of members) {
        if (other === me) continue;
        const e = end[me.name][other.name];
        if (!e) {
          problems.push(`${me.name} has no connection to ${other.name} at the end`);
          continue;
        }
        const info = pageInfo[me.name];
        const r = receivedFrom(e, snaps.mid && snaps.mid[me.name][other.name], info.lat[other.name] || [],
          info.sizes[other.name], info.bad[other.name], info.presented[other.name], t0, tEnd);
        const v0 = rtpBytes(snaps.from, me.name, other.name, 'video');
        const v1 = rtpBytes(snaps.to, me.name, other.name, 'video');
        const vkbps = v0 != null && v1 != null
          ? round(((v1 - v0) * 8) / ((snaps.to[me.name][other.name].at - snaps.from[me.name][other.name].at) / 1000) / 1000) : null;
        from[other.name] = {
          video_frames: r.video_frames,
          audio_frames: r.audio_frames,
          latency_p50_ms: r.latency_ms ? r.latency_ms.p50 : null,
          latency_p95_ms: r.latency_ms ? r.latency_ms.p95 : null,
          rtt_ms: r.rtt_ms,
          fps: r.fps,
          freezes: r.freezes,
          freeze_ms: r.freeze_ms,
          audio_concealed: r.audio_concealed,
          nack_sent: r.nack_sent,
          rtx_received: r.rtx_received,
          loss_pct: r.loss_pct,
          resolution: r.resolution,
          video_kbps: vkbps,
          ...Object.fromEntries(Object.entries(r).filter(([k]) => !(k in {
            video_frames: 1, audio_frames: 1, rtt_ms: 1, fps: 1, freezes: 1, freeze_ms: 1, audio_concealed: 1,
            nack_sent: 1, rtx_received: 1, loss_pct: 1, resolution: 1 }))),
        };
        sentTo_[other.name] = sentTo(e);
        const sel = selectedPair(e.stats);
        if (sel && sel.local) {
          used.add(`${sel.local.protocol} ${sel.local.address}:${sel.local.port} -> ${sel.remote ? sel.remote.port : '?'}`);
          if (sel.local.protocol !== 'udp' || sel.local.port < me.lo || sel.local.port > me.hi) {
            problems.push(`${me.name} -> ${other.name} uses ${sel.local.protocol} port ${sel.local.port}, outside ${me.range}`);
          }
        } else {
          problems.push(`${me.name} -> ${other.name}: no selected candidate pair`);
        }
        for (const x of Object.values(e.stats)) {
          if (x.type === 'local-candidate' && x.protocol === 'udp' && (x.port < me.lo || x.port > me.hi)) {
            problems.push(`${me.name} gathered udp port ${x.port}, outside ${me.range}`);
          }
        }
      }
      const c1 = cpu1[me.name];
      const cpu = c1 ? round(c1.s - cpu0[me.name].s, 2) : null;
      const byRole = c1 ? Object.fromEntries(Object.entries(c1.byRole)
        .map(([k, v]) => [k, round(v - (cpu0[me.name].byRole[k] || 0), 2)]).sort((x, y) => y[1] - x[1])) : null;
      const wall = round((tEnd - t0) / 1000, 2);
      const sends = Object.values(sentTo_);
      out[me.name] = {
        ok: Object.keys(from).length === members.length - 1,
        exit_code: 0,
        cpu_s: cpu,
        wall_s: wall,
        cpu_pct: cpu != null ? round((cpu / wall) * 100) : null,
        cpu_total_s: c1 ? round(c1.s, 2) : null,
        cpu_by_process_s: byRole,
        processes: c1 ? c1.processes : null,
        joined_s: round((me.joinedAt - t0) / 1000, 2),
        captured_frames: pageInfo[me.name].drawn,
        // Chromium encodes once per peer connection: the sum over its connections.
        encoded_frames: sends.reduce((s, x) => s + x.frames_encoded, 0),
        sent_audio_frames: Math.max(0, ...sends.map((x) => x.audio_packets_sent)),
        problems: [],
        from,
        sent_to: sentTo_,
        ports: { range: me.range, selected: [...used].sort() },
      };
    }
    const audio = (receiver, sender) => out[receiver] && out[receiver].from[sender] ? out[receiver].from[sender].audio_frames : null;
    const audioVsClean = {};
    if (out.C) {
      for (const [sender, clean] of [['A', 'B'], ['B', 'A']]) {
        const imp = audio('C', sender);
        const ref = audio(clean, sender);
        audioVsClean[sender] = { impaired: imp, clean: ref, pct: imp != null && ref ? round((imp / ref) * 100) : null };
      }
    }
    const result = {
      tool: 'chromium',
      scenario: SCENARIO,
      impaired: SCENARIO === 'clean4' ? null : 'C',
      duration_s: DURATION,
      window_s: window,
      kbps,
      delivered_kbps: delivered,
      rtp_kbps: rtpKbps,
      members: out,
      audio_vs_clean: audioVsClean,
      chromium: version,
      sources: { video: pageInfo[members[0].name].video, audio: pageInfo[members[0].name].audio },
      policy_seen: policy,
      load_avg: { start: load0, end: load1 },
      errors: problems,
    };
    writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);
    summary(result);
  } finally {
    await Promise.all(members.map((m) => m.browser.close().catch(() => {})));
    rmSync(tmp, { recursive: true, force: true });
  }
}

const guard = setTimeout(() => { log('ran too long; giving up'); process.exit(2); }, (DURATION + 150) * 1000);
guard.unref();
main()
  .then(() => { if (problems.length) log('problems:', problems.join('; ')); })
  .catch((e) => { log(e.stack || String(e)); process.exitCode = 1; });
