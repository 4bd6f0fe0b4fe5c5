# shellcheck shell=bash
# Network impairment on loopback: random loss, a rate cap and per-path byte counters.
# Source this file as root INSIDE a network namespace you created yourself (`unshare -n`);
# it changes `lo` and the nftables ruleset of the current namespace only, and refuses to
# run in a namespace that has any interface besides `lo`.
#
#   impair_init                      lo up, nft table `inet imp` (chains `in`, `out`),
#                                    htb root on lo (1:10 = 10 gbit, everything by default)
#   impair_apply SCENARIO MATCH      SCENARIO: clean | loss5 | cap400 | cap400loss5
#                                    MATCH: an nft match for the impaired member's DOWNLINK,
#                                    e.g. 'ip daddr 127.0.0.3' or 'udp dport 41472-41727'
#   impair_counter NAME MATCH        byte counter (output hook: what was sent) named NAME
#   impair_counter_in NAME MATCH     byte counter (input hook: what arrived, after the cap
#                                    and the loss; add it after impair_apply)
#   impair_bytes NAME                prints the bytes counted so far by NAME
#   impair_all_bytes                 prints "NAME BYTES" for every named counter, read at once
#
# How (measured on Debian 12's kernel here, which has no netem, so no delay):
# - loss: a drop rule in the nft *input* hook (a drop in the output hook returns EPERM to
#   the sender instead of losing the packet);
# - cap: htb class 1:20 (400 kbit, ceil 400 kbit, burst 15k, pfifo limit 50) on lo, and the
#   output hook classifies into it by setting the packet's priority: `<MATCH> meta l4proto
#   udp meta priority set 1:20`. htb sends a packet whose skb->priority names one of its
#   leaf classes straight to that class, before any filter, and the priority set in the
#   output hook is still on the skb at lo's egress qdisc. No tc filter at all.
#   Not used, because they do not work on this kernel:
#   * nft `meta mark set 0x14` + `tc filter ... handle 0x14 fw`: "TC classifier not found"
#     (no cls_fw, and no module loading);
#   * `tc filter ... u32 match mark 0x14 0xffffffff`: accepted, but the kernel lacks
#     CONFIG_CLS_U32_MARK, drops the key and the filter matches EVERY packet (a test
#     path to 127.0.0.2 got capped too).
#   `impair_selftest_cap` measures a capped and an uncapped path (~450 vs ~4100 kbit/s
#   for 4 Mbit/s offered, measured here).

IMPAIR_TABLE="inet imp"
IMPAIR_MARK=0x14
IMPAIR_LOSS_PCT=5
IMPAIR_CAP_RATE=400kbit

impair__die() {
  echo "impair: $*" >&2
  return 1
}

# The namespace must be ours: only `lo`.
impair__check_ns() {
  [[ $(id -u) -eq 0 ]] || impair__die "needs root" || return 1
  local links
  links=$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -vx lo || true)
  if [[ -n "$links" ]]; then
    impair__die "refusing: this network namespace has interfaces besides lo ($(echo "$links" | tr '\n' ' ')); run under 'unshare -n'"
    return 1
  fi
}

impair_init() {
  impair__check_ns || return 1
  ip link set lo up || return 1
  nft delete table $IMPAIR_TABLE 2>/dev/null || true
  nft add table $IMPAIR_TABLE || return 1
  nft add chain $IMPAIR_TABLE in '{ type filter hook input priority 0; policy accept; }' || return 1
  nft add chain $IMPAIR_TABLE out '{ type filter hook output priority 0; policy accept; }' || return 1
  tc qdisc del dev lo root 2>/dev/null || true
  tc qdisc add dev lo root handle 1: htb default 10 r2q 1000 || return 1
  tc class add dev lo parent 1: classid 1:10 htb rate 10gbit quantum 200000 || return 1
}

# Loss on the downlink selected by MATCH.
impair__loss() {
  local match=$1
  # shellcheck disable=SC2086  # MATCH is an nft expression, split on purpose
  nft add rule $IMPAIR_TABLE in $match meta l4proto udp numgen random mod 100 lt "$IMPAIR_LOSS_PCT" counter drop
}

# Rate cap on the downlink selected by MATCH.
impair__cap() {
  local match=$1
  # shellcheck disable=SC2086
  tc class add dev lo parent 1: classid 1:20 htb rate "$IMPAIR_CAP_RATE" ceil "$IMPAIR_CAP_RATE" burst 15k quantum 1514 || return 1
  tc qdisc add dev lo parent 1:20 handle 20: pfifo limit 50 || return 1
  # The mark is only a label (visible in `nft list`); the priority does the classifying.
  # shellcheck disable=SC2086
  nft add rule $IMPAIR_TABLE out $match meta l4proto udp meta mark set "$IMPAIR_MARK" meta priority set 1:20
}

impair_apply() {
  local scenario=$1 match=$2
  [[ -n "$match" ]] || impair__die "impair_apply SCENARIO MATCH: no MATCH" || return 1
  case "$scenario" in
    clean) ;;
    loss5) impair__loss "$match" ;;
    cap400) impair__cap "$match" ;;
    cap400loss5) impair__cap "$match" && impair__loss "$match" ;;
    *) impair__die "unknown scenario '$scenario' (clean | loss5 | cap400 | cap400loss5)" ;;
  esac
}

impair_counter() {
  local name=$1 match=$2
  [[ $name =~ ^[A-Za-z0-9_.:-]+$ ]] || impair__die "counter name '$name': letters, digits, _ . : - only" || return 1
  # Inserted at the top of `out`, so a counter sees every packet, marked or not.
  # shellcheck disable=SC2086
  nft insert rule $IMPAIR_TABLE out $match counter comment "\"$name\""
}

# The same in the input hook, appended: added after impair_apply, it counts what survived
# the cap and the loss (what reached the receiver), not what was sent.
impair_counter_in() {
  local name=$1 match=$2
  [[ $name =~ ^[A-Za-z0-9_.:-]+$ ]] || impair__die "counter name '$name': letters, digits, _ . : - only" || return 1
  # shellcheck disable=SC2086
  nft add rule $IMPAIR_TABLE in $match counter comment "\"$name\""
}

impair_bytes() {
  local name=$1
  nft -j list table $IMPAIR_TABLE | python3 -c '
import json, sys
name = sys.argv[1]
total = None
for item in json.load(sys.stdin).get("nftables", []):
    rule = item.get("rule")
    if not rule or rule.get("comment") != name:
        continue
    for e in rule.get("expr", []):
        if "counter" in e:
            total = (total or 0) + e["counter"]["bytes"]
if total is None:
    sys.exit("impair: no counter named " + name)
print(total)
' "$name"
}

impair_all_bytes() {
  nft -j list table $IMPAIR_TABLE | python3 -c '
import json, sys
totals = {}
for item in json.load(sys.stdin).get("nftables", []):
    rule = item.get("rule")
    if not rule or "comment" not in rule:
        continue
    for e in rule.get("expr", []):
        if "counter" in e:
            totals[rule["comment"]] = totals.get(rule["comment"], 0) + e["counter"]["bytes"]
for name, total in totals.items():
    print(name, total)
'
}

# The packets dropped so far by the loss rule, and by the cap's queue (for the report).
impair_stats() {
  tc -s qdisc show dev lo
  nft list table $IMPAIR_TABLE
}

# Measures a path: sends UDP from 127.0.0.1 to DEST (default 127.0.0.3) for SECS (default 3)
# at ~4 Mbit/s and prints what arrived in kbit/s. After `impair_apply cap400 'ip daddr
# 127.0.0.3'` it should print ~400-450 for 127.0.0.3 and ~4100 for any other address.
impair_selftest_cap() {
  local dest=${1:-127.0.0.3} secs=${2:-3}
  python3 - "$dest" "$secs" <<'PY'
import socket, sys, time
dest = sys.argv[1]
secs = float(sys.argv[2])
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind((dest, 0))
rx.setblocking(False)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.bind(("127.0.0.1", 0))
payload = b"x" * 1000
got = 0
sent = 0
start = time.monotonic()
next_send = start
while time.monotonic() - start < secs:
    now = time.monotonic()
    if now >= next_send:
        try:
            tx.sendto(payload, rx.getsockname())
            sent += 1
        except OSError:
            pass
        next_send += 0.002  # 500 packets/s of 1028 bytes on the wire, ~4.1 Mbit/s
    try:
        while True:
            got += len(rx.recv(2048)) + 28
    except BlockingIOError:
        time.sleep(0.0005)
time.sleep(0.5)
try:
    while True:
        got += len(rx.recv(2048)) + 28
except BlockingIOError:
    pass
print(f"to {dest}: sent {sent * 1028 * 8 / secs / 1000:.0f} kbit/s, received {got * 8 / secs / 1000:.0f} kbit/s")
PY
}
