"""What the foreign members (aiortc_member.py, gst_member.py) share: the meshcall
signaling protocol (docs: /work/shared/protocol.md, "version 1"), the report they print,
and reading the answer's codecs.

Runs on websockets 10 (Debian's python3-websockets, for the GStreamer member, which needs
Debian's python3-gi) and on the pinned websockets in the aiortc venv: only `connect`,
`send` and `recv` are used, which both have.
"""

import asyncio
import json
import os
import re
import sys
import time

import websockets

# INTEROP_DEBUG=1 logs every message both ways (SDP included).
DEBUG = os.environ.get("INTEROP_DEBUG") not in (None, "", "0")


def log(*args):
    """Progress for the test's output; stdout stays free for nothing."""
    print(f"[{time.monotonic():.3f}]", *args, file=sys.stderr, flush=True)


class Signaling:
    """One member's socket to the meshcall server."""

    def __init__(self, ws):
        self.ws = ws
        self.self_id = None

    @classmethod
    async def connect(cls, url):
        # The server may be a moment from listening when a member starts.
        deadline = time.monotonic() + 10
        while True:
            try:
                return cls(await websockets.connect(url, max_size=1 << 20))
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def send(self, msg):
        await self.ws.send(json.dumps(msg))

    async def join(self, room, name):
        await self.send({"type": "join", "room": room, "name": name, "audio": True, "video": True})
        while True:
            msg = await self.recv()
            if msg["type"] == "joined":
                self.self_id = msg["self"]
                return msg
            if msg["type"] == "error":
                raise RuntimeError(f"join refused: {msg}")

    async def recv(self):
        msg = json.loads(await self.ws.recv())
        if DEBUG:
            log(f"<- {msg}")
        return msg

    async def signal(self, to, payload):
        if DEBUG:
            log(f"-> {to}: {payload}")
        await self.send({"type": "signal", "to": to, "payload": payload})

    async def leave(self):
        try:
            await self.send({"type": "leave"})
            await self.ws.close()
        except websockets.ConnectionClosed:
            pass


def answer_codecs(sdp):
    """{kind: mime} of the first codec of each m-section in an answer: what is sent."""
    codecs = {}
    for section in sdp.split("\nm=")[1:]:
        kind, _port, _proto, *pts = section.split("\n", 1)[0].split()
        if not pts or kind in codecs:
            continue
        m = re.search(rf"a=rtpmap:{pts[0]} ([^/\s]+)/", section)
        codecs[kind] = f"{kind}/{m.group(1)}" if m else None
    return codecs


def offered_payload_type(sdp, kind, codec, fmtp_must_have=()):
    """The payload type an offer gives `codec` in its first `kind` m-section, or None."""
    for section in sdp.split("\nm=")[1:]:
        if not section.startswith(kind):
            continue
        for pt, name in re.findall(r"a=rtpmap:(\d+) ([^/\s]+)/", section):
            if name.lower() != codec.lower():
                continue
            fmtp = re.search(rf"a=fmtp:{pt} (\S+)", section)
            params = fmtp.group(1) if fmtp else ""
            if all(p in params for p in fmtp_must_have):
                return int(pt)
        return None
    return None


def write_report(path, report):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
