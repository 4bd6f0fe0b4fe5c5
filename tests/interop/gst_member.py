#!/usr/bin/env python3
"""A meshcall member made with GStreamer's webrtcbin (Debian's GStreamer 1.22 and
python3-gi): joins a room over the signaling protocol, offers (to those already in the
room) or answers, sends H.264 constrained baseline (x264enc) and an Opus tone, decodes
what comes in and writes what it received from each peer as JSON. Driven by run.py;
judged by tests/interop_gstreamer.rs.

    gst_member.py --server ws://127.0.0.1:8787/ws --room R --name N --duration S --report F

Runs with /usr/bin/python3 (python3-gi is built for it), not the aiortc venv.
"""

import argparse
import array
import asyncio
import math
import re
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import Gst, GstSdp, GstWebRTC  # noqa: E402

from signaling import Signaling, answer_codecs, log, offered_payload_type, write_report  # noqa: E402

# What we offer with; an answer takes the offer's numbers instead.
H264_PT, OPUS_PT = 102, 111

AUDIO = (
    "audiotestsrc is-live=true wave=sine freq=400 volume=0.25 ! audioconvert ! audioresample"
    " ! audio/x-raw,rate=48000,channels=2 ! opusenc frame-size=20 ! rtpopuspay pt={pt}"
    ' ! capsfilter caps="application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload={pt}"'
)
# x264enc writes profile-level-id 42c0xx into its caps (constrained baseline, its own
# level); meshcall offers and accepts only 42e01f, which every 42c0xx stream decodes as,
# so capssetter states that (machine.md). A description cannot end in bare caps (the
# parser takes them for an element), hence the explicit capsfilters.
VIDEO = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1"
    " ! videoconvert ! queue ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30"
    " bitrate=500 threads=1 ! video/x-h264,profile=constrained-baseline"
    " ! rtph264pay config-interval=-1 aggregate-mode=zero-latency pt={pt}"
    " ! capssetter caps=\"application/x-rtp,profile-level-id=(string)42e01f,packetization-mode=(string)1\""
    ' ! capsfilter caps="application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt}"'
)


def description(kind, text):
    ok, msg = GstSdp.SDPMessage.new_from_text(text)
    if ok != GstSdp.SDPResult.OK:
        raise ValueError(f"bad SDP: {text!r}")
    return GstWebRTC.WebRTCSessionDescription.new(kind, msg)


class Peer:
    """One webrtcbin (in its own pipeline) to another member, and what came from it."""

    def __init__(self, member, peer_id, name, offer_sdp=None):
        self.member, self.id, self.name = member, peer_id, name
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
        self.pipe = Gst.Pipeline.new(f"peer-{peer_id}")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)
        # libnice leaves loopback out of the addresses it gathers on, so in the test's
        # lo-only namespace it would gather nothing. PyGObject drops its wrapper of the ICE
        # object unless we hold it, and the process crashes later (machine.md).
        self.ice = self.webrtc.get_property("ice-agent")
        self.ice.emit("add-local-ip-address", "127.0.0.1")
        self.ice.set_property("ice-tcp", False)
        self.webrtc.connect("on-ice-candidate", self.on_local_candidate)
        self.webrtc.connect("pad-added", self.on_incoming_pad)
        self.webrtc.connect("notify::connection-state", self.on_state)
        self.local_mids = []
        self.offering = offer_sdp is None
        self.offered = False
        if self.offering:
            self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
            pts = (OPUS_PT, H264_PT)
        else:
            pts = (
                offered_payload_type(offer_sdp, "audio", "opus") or OPUS_PT,
                offered_payload_type(
                    offer_sdp, "video", "H264", ("packetization-mode=1", "profile-level-id=42e01f")
                )
                or H264_PT,
            )
        # Audio first, then the camera, as protocol.md's senders do.
        for template, pt in zip((AUDIO, VIDEO), pts):
            branch = Gst.parse_bin_from_description(template.format(pt=pt), True)
            self.pipe.add(branch)
            if not branch.link(self.webrtc):
                raise RuntimeError("cannot link a media branch to webrtcbin")
        self.pipe.set_state(Gst.State.PLAYING)

    # --- called on GStreamer's threads; signaling goes through the member's loop ---

    def on_state(self, webrtc, _pspec):
        state = webrtc.get_property("connection-state").value_nick
        self.stats["connection"] = state
        if state == "connected" and self.stats["connected_ms"] is None:
            self.stats["connected_ms"] = round((time.monotonic() - self.started) * 1000)
        log(f"gstreamer: {self.name}: {state}")

    def on_negotiation_needed(self, webrtc):
        if self.offered:
            return
        self.offered = True
        webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(self.on_created, "offer"))

    def on_created(self, promise, kind):
        promise.wait()
        reply = promise.get_reply()
        desc = reply.get_value(kind)
        self.webrtc.emit("set-local-description", desc, Gst.Promise.new())
        text = desc.sdp.as_text()
        self.local_mids = re.findall(r"^a=mid:(\S+)", text, re.M)
        if kind == "answer":
            self.stats["codecs"] = answer_codecs(text)
        self.member.send(self.id, {"sdp": {"type": kind, "sdp": text}})

    def on_local_candidate(self, _webrtc, mline, candidate):
        # The mids come from the text we set, not from webrtcbin's local-description:
        # reading that boxed description's SDP from this thread crashed PyGObject.
        mid = self.local_mids[mline] if mline < len(self.local_mids) else None
        self.member.send(
            self.id, {"candidate": {"candidate": candidate, "sdpMid": mid, "sdpMLineIndex": mline}}
        )

    def on_incoming_pad(self, _webrtc, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded_pad)
        self.pipe.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded_pad(self, _decode, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        kind = caps.get_structure(0).get_name()
        if kind.startswith("video/"):
            desc = "queue ! videoconvert ! fakesink name=sink sync=false"
        else:
            desc = "queue ! audioconvert ! audio/x-raw,format=S16LE ! fakesink name=sink sync=false"
        sink = Gst.parse_bin_from_description(desc, True)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        probe = self.count_video if kind.startswith("video/") else self.count_audio
        sink.get_by_name("sink").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe)

    def count_video(self, pad, info):
        self.stats["video_frames"] += 1
        if self.stats["resolution"] is None:
            s = pad.get_current_caps().get_structure(0)
            self.stats["resolution"] = f"{s.get_value('width')}x{s.get_value('height')}"
        return Gst.PadProbeReturn.OK

    def count_audio(self, pad, info):
        buf = info.get_buffer()
        s = pad.get_current_caps().get_structure(0)
        rate, channels = s.get_value("rate"), s.get_value("channels")
        size = buf.get_size()
        self.stats["audio_frames"] += 1
        self.stats["audio_ms"] += round(size / 2 / channels * 1000 / rate)
        if self.stats["audio_frames"] % 10 == 0:
            pcm = array.array("h", buf.extract_dup(0, size))
            if pcm:
                self.rms_sum += math.sqrt(sum(v * v for v in pcm) / len(pcm))
                self.rms_n += 1
                self.stats["audio_rms"] = round(self.rms_sum / self.rms_n, 1)
        return Gst.PadProbeReturn.OK

    # --- called on the member's loop ---

    def on_description(self, desc):
        kind = GstWebRTC.WebRTCSDPType.OFFER if desc["type"] == "offer" else GstWebRTC.WebRTCSDPType.ANSWER
        if desc["type"] == "answer":
            self.stats["codecs"] = answer_codecs(desc["sdp"])
            self.webrtc.emit("set-remote-description", description(kind, desc["sdp"]), Gst.Promise.new())
            return

        def answer(promise, _):
            promise.wait()
            self.webrtc.emit(
                "create-answer", None, Gst.Promise.new_with_change_func(self.on_created, "answer")
            )

        self.webrtc.emit(
            "set-remote-description", description(kind, desc["sdp"]), Gst.Promise.new_with_change_func(answer, None)
        )

    def on_remote_candidate(self, c):
        # webrtcbin 1.22 has no way to be told the candidates have ended; nothing needs it.
        if c and c.get("candidate"):
            self.webrtc.emit("add-ice-candidate", c.get("sdpMLineIndex") or 0, c["candidate"])

    def close(self):
        self.pipe.set_state(Gst.State.NULL)


class Member:
    def __init__(self, sig, loop):
        self.sig, self.loop = sig, loop
        self.names = {}
        self.peers = {}

    def send(self, to, payload):
        """Thread-safe: GStreamer's callbacks run on its own threads."""
        asyncio.run_coroutine_threadsafe(self.sig.signal(to, payload), self.loop)

    def poll_bus(self):
        for peer in self.peers.values():
            bus = peer.pipe.get_bus()
            while True:
                msg = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.WARNING)
                if msg is None:
                    break
                err, debug = msg.parse_error() if msg.type == Gst.MessageType.ERROR else msg.parse_warning()
                log(f"gstreamer: {peer.name}: {msg.src.get_name()}: {err.message} ({debug})")

    async def run(self, joined):
        for p in joined["peers"]:
            self.names[p["id"]] = p["name"]
            self.peers[p["id"]] = Peer(self, p["id"], p["name"])
        # GStreamer's errors are logged as they come (its bus is polled between messages).
        recv = asyncio.ensure_future(self.sig.recv())
        try:
            while True:
                done, _ = await asyncio.wait({recv}, timeout=0.2)
                self.poll_bus()
                if not done:
                    continue
                msg = recv.result()
                recv = asyncio.ensure_future(self.sig.recv())
                t = msg["type"]
                if t == "peer-joined":
                    self.names[msg["peer"]["id"]] = msg["peer"]["name"]
                elif t == "signal":
                    self.on_signal(msg["from"], msg["payload"])
                elif t == "error":
                    log(f"gstreamer: server error {msg}")
        finally:
            recv.cancel()

    def on_signal(self, sender, payload):
        peer = self.peers.get(sender)
        if "sdp" in payload:
            if peer is None:
                name = self.names.get(sender, "?")
                peer = self.peers[sender] = Peer(self, sender, name, offer_sdp=payload["sdp"]["sdp"])
            peer.on_description(payload["sdp"])
        elif "candidate" in payload and peer is not None:
            peer.on_remote_candidate(payload["candidate"])


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server")
    ap.add_argument("--room")
    ap.add_argument("--name", default="gstreamer")
    ap.add_argument("--duration", type=float)
    ap.add_argument("--report")
    ap.add_argument("--check", action="store_true", help="only say which elements are missing")
    args = ap.parse_args()
    Gst.init(None)
    if args.check:
        need = ["webrtcbin", "nicesrc", "dtlssrtpenc", "srtpenc", "rtpbin", "x264enc", "rtph264pay",
                "capssetter", "opusenc", "rtpopuspay", "decodebin", "avdec_h264", "opusdec",
                "videotestsrc", "audiotestsrc"]
        missing = [e for e in need if Gst.ElementFactory.find(e) is None]
        if missing:
            raise SystemExit(f"GStreamer elements missing: {' '.join(missing)}")
        return

    sig = await Signaling.connect(args.server)
    joined = await sig.join(args.room, args.name)
    log(f"gstreamer: joined {joined['room']} as {joined['self']} with {len(joined['peers'])} peers")
    member = Member(sig, asyncio.get_running_loop())
    try:
        await asyncio.wait_for(member.run(joined), args.duration)
    except asyncio.TimeoutError:
        pass
    report = {"self": sig.self_id, "peers": {pid: dict(p.stats) for pid, p in member.peers.items()}}
    await sig.leave()
    for peer in member.peers.values():
        peer.close()
    write_report(args.report, report)
    log(f"gstreamer: report {report}")


if __name__ == "__main__":
    asyncio.run(main())
