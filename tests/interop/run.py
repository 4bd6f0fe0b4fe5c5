#!/usr/bin/env python3
"""Runs one interop call and writes what every member received as one JSON object.

Starts `meshcall serve`, then a foreign member (aiortc_member.py or gst_member.py) and a
headless `meshcall join` in the order asked, waits for both to leave, and writes
{"meshcall": <its report>, "foreign": <the foreign member's report>, "seconds": ...}.
Meant to run inside a network namespace holding only `lo` (tests/interop_*.rs start it
with `unshare -n`), so every member's ICE can reach nothing but loopback.

    run.py STACK ORDER OUT      STACK: aiortc | gstreamer; ORDER: foreign-first | foreign-second
env: MESHCALL_BIN (the binary), INTEROP_PYTHON (the Python for STACK's member)
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

PORT = 8787
ROOM = "interop"
# Media both ways for about this long once the second member is in.
CALL_SECONDS = 7.0
# A member that has not left this long after it should have is stuck.
GRACE_SECONDS = 30.0

HERE = os.path.dirname(os.path.abspath(__file__))
MEMBERS = {"aiortc": "aiortc_member.py", "gstreamer": "gst_member.py"}


def log(*args):
    print(f"run.py [{time.monotonic():.3f}]", *args, file=sys.stderr, flush=True)


def metric(name):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def wait_until(what, check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"run.py: {what} did not happen within {timeout} s")


def main():
    stack, order, out = sys.argv[1:4]
    binary = os.environ["MESHCALL_BIN"]
    python = os.environ.get("INTEROP_PYTHON", sys.executable)
    tmp = tempfile.mkdtemp(prefix="meshcall-interop-")
    procs = []
    started = time.monotonic()
    server = subprocess.Popen([binary, "serve", "--bind", f"127.0.0.1:{PORT}"])
    procs.append(server)
    try:
        wait_until("the server listening", lambda: metric("meshcall_members") == 0)

        def foreign(seconds):
            report = os.path.join(tmp, "foreign.json")
            cmd = [python, os.path.join(HERE, MEMBERS[stack]), "--server", f"ws://127.0.0.1:{PORT}/ws",
                   "--room", ROOM, "--name", stack, "--duration", str(seconds), "--report", report]
            return subprocess.Popen(cmd), report

        def meshcall(seconds):
            report = os.path.join(tmp, "meshcall.json")
            env = dict(os.environ)
            env["MESHCALL_ICE_IP"] = "127.0.0.1"
            env.setdefault("RUST_LOG", "warn,rtc_interceptor::registry=error,rtc_dtls=error,rtc_ice=error")
            cmd = [binary, "join", "--server", f"ws://127.0.0.1:{PORT}", "--room", ROOM, "--name", "meshcall",
                   "--duration", str(seconds), "--report", report]
            return subprocess.Popen(cmd, env=env), report

        # The first member stays a little longer than the second, so the second's whole
        # call is counted by both.
        first, second = (foreign, meshcall) if order == "foreign-first" else (meshcall, foreign)
        p1, r1 = first(CALL_SECONDS + 3)
        procs.append(p1)
        wait_until("the first member joining", lambda: metric("meshcall_members") == 1)
        p2, r2 = second(CALL_SECONDS)
        procs.append(p2)
        for p in (p1, p2):
            rc = p.wait(timeout=CALL_SECONDS + 3 + GRACE_SECONDS)
            if rc != 0:
                raise SystemExit(f"run.py: {p.args[:2]} exited with {rc}")
        reports = {}
        for key, path in (("first", r1), ("second", r2)):
            with open(path, encoding="utf-8") as f:
                reports[key] = json.load(f)
        meshcall_report, foreign_report = (
            (reports["second"], reports["first"]) if order == "foreign-first" else (reports["first"], reports["second"])
        )
        result = {
            "stack": stack,
            "order": order,
            "meshcall": meshcall_report,
            "foreign": foreign_report,
            "seconds": round(time.monotonic() - started, 1),
        }
        with open(out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
