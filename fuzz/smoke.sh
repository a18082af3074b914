#!/usr/bin/env bash
# Short coverage-guided run of every fuzz target (default 20 s each), seeded
# from the shipped topologies and a capture. Needs cargo-fuzz (installed if
# missing); the machine's stable toolchain runs it with RUSTC_BOOTSTRAP=1.
# Usage: fuzz/smoke.sh [seconds-per-target] [target ...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-20}
shift || true
targets=${*:-wire_views conntrack_packets nat_packets icmp_errors lb_packets vlan_frame vxlan_datagram vxlan_gro frame_pipeline gso southbound_message switch_message topology pcap esp_open ike_message}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for target in $targets; do mkdir -p "corpus/$target"; done
mkdir -p corpus/topology corpus/pcap corpus/wire_views corpus/vlan_frame corpus/vxlan_datagram corpus/frame_pipeline corpus/gso corpus/icmp_errors corpus/nat_packets corpus/lb_packets
cp ../topologies/*.yaml corpus/topology/
cp ../controller/testdata/*.pcap corpus/pcap/ 2>/dev/null || true
# Frames of the capture fixture seed the frame parsers (plain virtio-net header for gso).
python3 - <<'PY' || true
import struct, glob
for path in glob.glob("../controller/testdata/*.pcap"):
    data = open(path, "rb").read()
    track, nat = [], []
    at, n = 24, 0
    while at + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, at + 8)[0]
        frame = data[at + 16: at + 16 + caplen]
        seeds = (("wire_views", b""), ("vlan_frame", b""), ("frame_pipeline", b"\x01"), ("gso", bytes(10)), ("icmp_errors", b"\x10"),
                 ("vxlan_datagram", b"\x08\x00\x00\x00\x00\x13\x89\x00"))
        for target, prefix in seeds:
            open(f"corpus/{target}/seed-{n}", "wb").write(prefix + frame)
        # The same frame tagged for VLAN 10, and again inside an 802.1ad tag.
        tagged = frame[:12] + b"\x81\x00\x00\x0a" + frame[12:]
        open(f"corpus/vlan_frame/tagged-{n}", "wb").write(tagged)
        open(f"corpus/vlan_frame/qinq-{n}", "wb").write(frame[:12] + b"\x88\xa8\x00\x64" + tagged[12:])
        # IPv4 packets of the capture, in order, as one conntrack sequence.
        if frame[12:14] == b"\x08\x00":
            l3 = frame[14:14 + 255]
            track.append(bytes([4 if n % 2 == 0 else 0, len(l3)]) + l3)
            # Committed with source NAT, then translated as an existing connection.
            nat.append(bytes([0x0a if n % 2 == 0 else 0x06, len(l3)]) + l3)
        at, n = at + 16 + caplen, n + 1
    open(f"corpus/conntrack_packets/seed-{path.split('/')[-1]}", "wb").write(b"".join(track))
    open(f"corpus/nat_packets/seed-{path.split('/')[-1]}", "wb").write(b"".join(nat))
# Frames a subnet gateway answers or routes, for icmp_errors (whose flows
# route 10.0.2.0/24, NAT 198.51.100.0/24, answer 10.0.1.1, refuse the rest).
def csum(b):
    b = b + b"\0" * (len(b) % 2)
    s = sum(struct.unpack(f"!{len(b)//2}H", b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def ipv4(src, dst, proto, l4, ttl=64, df=False):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 7, 0x4000 if df else 0, ttl, proto, 0,
                    bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + l4
def l4(src, dst, proto, body):
    if proto == 1: return body[:2] + struct.pack("!H", csum(body)) + body[4:]
    pseudo = bytes(map(int, src.split("."))) + bytes(map(int, dst.split("."))) + struct.pack("!BBH", 0, proto, len(body))
    at = 16 if proto == 6 else 6
    return body[:at] + struct.pack("!H", csum(pseudo + body)) + body[at + 2:]
eth = bytes.fromhex("025d00000001" "020000000110" "0800")
tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x02, 64240, 0, 0)
udp = lambda n: struct.pack("!HHHH", 5000, 53, 8 + n, 0) + b"q" * n
cases = {
    "ttl1": ("10.0.1.10", "10.0.2.5", 6, tcp, 1, False),
    "routed": ("10.0.1.10", "10.0.2.5", 6, tcp + b"x" * 100, 64, False),
    "too-big-df": ("10.0.1.10", "10.0.2.5", 17, udp(1400), 64, True),
    "fragment": ("10.0.1.10", "10.0.2.5", 17, udp(1400), 64, False),
    "nat": ("10.0.1.10", "198.51.100.7", 17, udp(20), 64, False),
    "ping-gw": ("10.0.1.10", "10.0.1.1", 1, b"\x08\0\0\0\x42\x42\0\x01" + b"p" * 16, 64, False),
    "unreachable": ("10.0.1.10", "8.8.8.8", 6, tcp, 64, False),
}
for name, (src, dst, proto, body, ttl, df) in cases.items():
    frame = eth + ipv4(src, dst, proto, l4(src, dst, proto, body), ttl, df)
    open(f"corpus/icmp_errors/{name}", "wb").write(b"\x10" + frame)
arp = bytes.fromhex("ffffffffffff" "020000000110" "0806" "0001080006040001" "020000000110") + bytes([10, 0, 1, 10]) + bytes(6) + bytes([10, 0, 1, 1])
open("corpus/icmp_errors/arp-gw", "wb").write(b"\x10" + arp)
# Step sequences for lb_packets: a header (each group's algorithm, then the
# conntrack size: 0xff keeps the default) and steps, each an opcode and its
# arguments (see the target's `Run::step`).
syn = lambda client, port, rule=0: [1, client, port, 0, rule, 7]
ack = lambda client, port, flags=2, rule=0: [1, client, port, flags, rule, 7]
answer = lambda conn, kind=0: [4, conn, kind, 0]
dns = lambda client, port: [3, client, port, 0, 8]
later = lambda amount: [6, amount]
# Algorithms: 0 round robin, 4 weighted, 8 least connections, 13 source IP,
# 14 source IP and protocol, 15 five-tuple hash; weights index the target's
# WEIGHTS (1 is 1, 3 is 2, 5 is 7).
def group(index, version=0, algorithm=0, members=7, healthy=True, weights=(1, 3, 1), all_up=False):
    shape = (algorithm & 7) | ((algorithm & 8) << 4) | (8 if all_up else 0) | (members << 4)
    return [5, index | (version << 2), shape] + [w | (0 if healthy else 8) for w in weights]
def handshakes(n, rule=0, base=0):
    ports = range(base, base + n)
    steps = sum((syn(p % 3, p, rule) for p in ports), [])
    steps += sum((answer(c) for c in range(base + n)), [])
    return steps + sum((ack(p % 3, p, 2, rule) + ack(p % 3, p, 3, rule) for p in ports), [])
def closes(n, rule=0, base=0):
    return sum((ack(p % 3, p, 4, rule) + answer(p, 4) + ack(p % 3, p, 2, rule) for p in range(base, base + n)), [])
lb_seeds = {
    "round-robin": [0, 0, 0, 0xff] + handshakes(6) + closes(6) + later(2 | (30 << 2)) + handshakes(3, 0, 6),
    "weighted": [4, 4, 4, 0xff] + handshakes(8) + group(0, 0, 4, weights=(2, 5, 1)) + handshakes(8, 0, 8) + later(3),
    "least-connections": [8, 8, 8, 0xff] + handshakes(6) + ack(0, 3, 5) + handshakes(4, 0, 6) + [7, 2, 1]
        + handshakes(3, 0, 10),
    "hashing": [13, 14, 15, 0xff] + handshakes(5) + sum((dns(c, c * 3) for c in range(4)), []) + dns(1, 9) + answer(0)
        + group(1, 0, 15, healthy=False) + dns(2, 7) + group(1, 0, 15, healthy=False, all_up=True) + dns(2, 8)
        + group(1, 2, 15) + group(0, 0, 13, members=0) + handshakes(3, 0, 5) + handshakes(3, 3, 8),
    "small-table": [0, 0, 0, 2] + handshakes(8) + later(1 | (9 << 2)) + handshakes(4, 0, 8) + later(3) + [7, 4, 0],
    "client-port-reuse": [15, 0, 0, 0xff] + syn(0, 3, 0) + answer(0) + ack(0, 3, 2, 0) + ack(0, 3, 5, 0) + syn(0, 3, 3)
        + answer(1) + [7, 3, 1] + syn(0, 2, 5) + answer(0) + later(1 | (10 << 2)) + [7, 0, 0] + handshakes(2, 0, 4),
}
for name, steps in lb_seeds.items():
    open(f"corpus/lb_packets/{name}", "wb").write(bytes(steps))
PY
# Build first, so that a target that does not compile fails the run.
cargo fuzz build
for target in $targets; do
  echo "== fuzz $target for ${seconds}s"
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 2>&1 \
    | grep -E 'Done|stat::number_of_executed_units|ERROR|panicked|SUMMARY' || true
  if [ -n "$(ls artifacts/"$target" 2>/dev/null)" ]; then
    echo "fuzz $target found a crash: see fuzz/artifacts/$target" >&2
    exit 1
  fi
done
echo "fuzz smoke run passed"
