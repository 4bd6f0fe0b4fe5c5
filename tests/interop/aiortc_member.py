#!/usr/bin/env python3
"""A meshcall member made with aiortc: joins a room over the signaling protocol, offers
(to those already in the room) or answers, sends H.264 video and an Opus tone, and writes
what it received from each peer as JSON. Driven by run.py; judged by tests/interop_aiortc.rs.

    aiortc_member.py --server ws://127.0.0.1:8787/ws --room R --name N --duration S --report F
"""

import argparse
import array
import asyncio
import fractions
import math
import time

import aioice.ice
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp
from av import AudioFrame, VideoFrame

from signaling import Signaling, answer_codecs, log, write_report

# Tests send traffic only to loopback, and aioice leaves 127.0.0.1 out of its host
# addresses (it would gather nothing in the test's lo-only network namespace).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

WIDTH, HEIGHT = 320, 240
RATE = 48000
PTIME = 0.02


class PatternTrack(VideoStreamTrack):
    """Moving stripes at 30 fps: a picture that changes, so the encoder sends real P-frames."""

    def __init__(self):
        super().__init__()
        # One row twice over; each frame starts the row further along (cheap in Python).
        stripes = bytes((x * 4) & 0xFF for x in range(WIDTH))
        self.row2 = stripes + stripes
        self.n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        off = (self.n * 4) % WIDTH
        self.n += 1
        y, u, v = frame.planes
        row = self.row2[off : off + WIDTH] + bytes(y.line_size - WIDTH)
        y.update(row * HEIGHT)
        u.update(bytes([128]) * u.buffer_size)
        v.update(bytes([128]) * v.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneTrack(MediaStreamTrack):
    """A 400 Hz tone, 20 ms frames paced in real time (as aiortc's AudioStreamTrack)."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        samples = int(RATE * PTIME)  # 960: exactly 8 periods of 400 Hz
        self.pcm = array.array(
            "h", (int(8000 * math.sin(2 * math.pi * 400 * i / RATE)) for i in range(samples))
        ).tobytes()
        self.samples = samples
        self.start = None
        self.timestamp = 0

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.time()
        else:
            self.timestamp += self.samples
            await asyncio.sleep(self.start + self.timestamp / RATE - time.time())
        frame = AudioFrame(format="s16", layout="mono", samples=self.samples)
        frame.planes[0].update(self.pcm)
        frame.pts, frame.sample_rate = self.timestamp, RATE
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


def rms(frame):
    pcm = array.array("h", bytes(frame.planes[0])[: frame.samples * 2 * len(frame.layout.channels)])
    return math.sqrt(sum(s * s for s in pcm) / len(pcm)) if pcm else 0.0


class Peer:
    """One peer connection to another member, and what came from it."""

    def __init__(self, member, peer_id, name):
        self.member, self.id, self.name = member, peer_id, name
        # max-bundle as browsers use it; with our audio-first offers aiortc's answerer
        # gathers candidates (issue 12 item 5: a video-first offer left it with none).
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.pending = []  # candidates that came before the remote description
        self.started = time.monotonic()
        self.stats = {
            "name": name,
            "connection": "new",
            "connected_ms": None,
            "video_frames": 0,
            "audio_frames": 0,
            "audio_ms": 0,
            "audio_rms": 0.0,
            "resolution": None,
            "codecs": None,
        }
        self.rms_sum, self.rms_n = 0.0, 0
        self.tasks = []

        @self.pc.on("connectionstatechange")
        def on_state():
            state = self.pc.connectionState
            self.stats["connection"] = state
            if state == "connected" and self.stats["connected_ms"] is None:
                self.stats["connected_ms"] = round((time.monotonic() - self.started) * 1000)
            log(f"aiortc: {self.name}: {state}")

        @self.pc.on("track")
        def on_track(track):
            self.tasks.append(asyncio.ensure_future(self.consume(track)))

    def add_media(self):
        # Audio first, then the camera, as protocol.md's senders do.
        self.pc.addTrack(ToneTrack())
        self.pc.addTrack(PatternTrack())
        # meshcall sends and decodes only H.264 constrained baseline: offer nothing else.
        h264 = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType == "video/H264" and c.parameters.get("profile-level-id") == "42e01f"
        ]
        for t in self.pc.getTransceivers():
            if t.kind == "video":
                t.setCodecPreferences(h264)

    async def consume(self, track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                self.stats["video_frames"] += 1
                self.stats["resolution"] = f"{frame.width}x{frame.height}"
            else:
                self.stats["audio_frames"] += 1
                self.stats["audio_ms"] += round(frame.samples * 1000 / frame.sample_rate)
                if self.stats["audio_frames"] % 10 == 0:
                    self.rms_sum += rms(frame)
                    self.rms_n += 1
                    self.stats["audio_rms"] = round(self.rms_sum / self.rms_n, 1)

    async def offer(self):
        self.add_media()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.send_description()

    async def on_description(self, desc):
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=desc["sdp"], type=desc["type"]))
        for c in self.pending:
            await self.add_candidate(c)
        self.pending = []
        if desc["type"] == "offer":
            self.add_media()
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.send_description()
        answer = self.pc.localDescription if desc["type"] == "offer" else self.pc.remoteDescription
        self.stats["codecs"] = answer_codecs(answer.sdp)

    async def send_description(self):
        # aiortc gathers all its candidates in setLocalDescription; they are in the SDP.
        d = self.pc.localDescription
        await self.member.sig.signal(self.id, {"sdp": {"type": d.type, "sdp": d.sdp}})
        await self.member.sig.signal(self.id, {"candidate": None})

    async def on_candidate(self, c):
        if self.pc.remoteDescription is None:
            self.pending.append(c)
        else:
            await self.add_candidate(c)

    async def add_candidate(self, c):
        if c is None or not c.get("candidate"):
            await self.pc.addIceCandidate(None)
            return
        cand = candidate_from_sdp(c["candidate"].split(":", 1)[1])
        cand.sdpMid = c.get("sdpMid")
        cand.sdpMLineIndex = c.get("sdpMLineIndex")
        await self.pc.addIceCandidate(cand)

    async def close(self):
        await self.pc.close()
        for t in self.tasks:
            t.cancel()


class Member:
    def __init__(self, sig):
        self.sig = sig
        self.names = {}
        self.peers = {}

    async def run(self, joined):
        for p in joined["peers"]:
            self.names[p["id"]] = p["name"]
            peer = self.peers[p["id"]] = Peer(self, p["id"], p["name"])
            await peer.offer()
        while True:
            msg = await self.sig.recv()
            t = msg["type"]
            if t == "peer-joined":
                self.names[msg["peer"]["id"]] = msg["peer"]["name"]
            elif t == "peer-left" and msg["id"] in self.peers:
                await self.peers[msg["id"]].close()
            elif t == "signal":
                await self.on_signal(msg["from"], msg["payload"])
            elif t == "error":
                log(f"aiortc: server error {msg}")

    async def on_signal(self, sender, payload):
        peer = self.peers.get(sender)
        if "sdp" in payload:
            if peer is None:
                peer = self.peers[sender] = Peer(self, sender, self.names.get(sender, "?"))
            await peer.on_description(payload["sdp"])
        elif "candidate" in payload and peer is not None:
            await peer.on_candidate(payload["candidate"])


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--room", required=True)
    ap.add_argument("--name", default="aiortc")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--report", required=True)
    args = ap.parse_args()

    sig = await Signaling.connect(args.server)
    joined = await sig.join(args.room, args.name)
    log(f"aiortc: joined {joined['room']} as {joined['self']} with {len(joined['peers'])} peers")
    member = Member(sig)
    try:
        await asyncio.wait_for(member.run(joined), args.duration)
    except asyncio.TimeoutError:
        pass
    report = {"self": sig.self_id, "peers": {}}
    for pid, peer in member.peers.items():
        report["peers"][pid] = peer.stats
    await sig.leave()
    for peer in member.peers.values():
        await peer.close()
    write_report(args.report, report)
    log(f"aiortc: report {report}")


if __name__ == "__main__":
    asyncio.run(main())
