#!/usr/bin/env bash
# Short coverage-guided run of every fuzz target (default 20 s each), seeded
# from the shipped topologies and a capture. Needs cargo-fuzz (installed if
# missing); the machine's stable toolchain runs it with RUSTC_BOOTSTRAP=1.
# Usage: fuzz/smoke.sh [seconds-per-target] [target ...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-20}
shift || true
targets=${*:-wire_views conntrack_packets vlan_frame vxlan_datagram vxlan_gro frame_pipeline gso southbound_message switch_message topology pcap}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for target in $targets; do mkdir -p "corpus/$target"; done
mkdir -p corpus/topology corpus/pcap corpus/wire_views corpus/vlan_frame corpus/vxlan_datagram corpus/frame_pipeline corpus/gso
cp ../topologies/*.yaml corpus/topology/
cp ../controller/testdata/*.pcap corpus/pcap/ 2>/dev/null || true
# Frames of the capture fixture seed the frame parsers (plain virtio-net header for gso).
python3 - <<'PY' || true
import struct, glob
for path in glob.glob("../controller/testdata/*.pcap"):
    data = open(path, "rb").read()
    track = []
    at, n = 24, 0
    while at + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, at + 8)[0]
        frame = data[at + 16: at + 16 + caplen]
        seeds = (("wire_views", b""), ("vlan_frame", b""), ("frame_pipeline", b"\x01"), ("gso", bytes(10)),
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
        at, n = at + 16 + caplen, n + 1
    open(f"corpus/conntrack_packets/seed-{path.split('/')[-1]}", "wb").write(b"".join(track))
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
