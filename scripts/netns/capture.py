#!/usr/bin/env python3
"""Captures every frame on every interface of the current network namespace (run it in the
test bed's bridge namespace with `ip netns exec <prefix>-br`), with an AF_PACKET raw socket:
no tcpdump needed. Writes a pcap file, and on exit prints one JSON line of statistics.

Usage: capture.py OUT.pcap MAX_SECONDS [MAX_BYTES]
Stops at SIGTERM/SIGINT, after MAX_SECONDS, or once MAX_BYTES were captured (default 64 MiB).
Prints "ready" on stdout once the socket is open, so the caller can start the traffic.
"""
import json
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def main():
    out_path, max_seconds = sys.argv[1], float(sys.argv[2])
    max_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else 64 << 20
    stop = {"now": False}

    def on_signal(_sig, _frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    stats = {"frames": 0, "bytes": 0, "ipv4": 0, "tcp": 0, "tcp_payload_bytes": 0, "udp": 0,
             "tcp_between_hosts": 0}
    deadline = time.monotonic() + max_seconds
    with open(out_path, "wb") as out:
        # pcap global header: Ethernet link type, 256 KiB snap length.
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        print("ready", flush=True)
        while not stop["now"] and time.monotonic() < deadline and stats["bytes"] < max_bytes:
            try:
                ready, _, _ = select.select([sock], [], [], 0.1)
            except InterruptedError:
                continue
            if not ready:
                continue
            frame, addr = sock.recvfrom(262144)
            if addr[2] == PACKET_OUTGOING:
                # Each bridged frame is seen arriving on one port and leaving by another:
                # keep the arrivals only.
                continue
            now = time.time()
            out.write(struct.pack("<IIII", int(now), int((now % 1) * 1e6), len(frame), len(frame)))
            out.write(frame)
            stats["frames"] += 1
            stats["bytes"] += len(frame)
            if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
                stats["ipv4"] += 1
                ihl = (frame[14] & 0x0F) * 4
                proto = frame[23]
                total = struct.unpack("!H", frame[16:18])[0]
                src, dst = frame[26:30], frame[30:34]
                if proto == 6 and len(frame) >= 14 + ihl + 20:
                    stats["tcp"] += 1
                    doff = (frame[14 + ihl + 12] >> 4) * 4
                    payload = max(0, total - ihl - doff)
                    stats["tcp_payload_bytes"] += payload
                    if src[:3] == bytes([10, 77, 0]) and dst[:3] == bytes([10, 77, 0]) and payload > 0:
                        stats["tcp_between_hosts"] += 1
                elif proto == 17:
                    stats["udp"] += 1
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
