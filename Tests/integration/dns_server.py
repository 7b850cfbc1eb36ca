#!/usr/bin/python3
"""A small authoritative DNS server for tlsgate's tests (Python 3 stdlib only), run in the
lab's server namespace:

  dns_server.py --bind 198.19.0.29 --zone ZONE.json [--max-seconds 300] [--log FILE]

ZONE.json, read again for every query (tests change it while the server runs):
  {"origin.test": {"a": ["198.19.0.21"], "aaaa": [], "ttl": 2, "rcode": 0}}
rcode 2 answers SERVFAIL, 3 NXDOMAIN; a name not in the zone gets NXDOMAIN. UDP only, one
question per query, answers of at most 512 bytes. Bounded by --max-seconds; each query is
logged as one line "QNAME QTYPE RCODE" to --log. Prints "ready" once bound.
"""
import argparse
import ipaddress
import json
import socket
import struct
import sys
import time


def parse_question(data):
    if len(data) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    if flags & 0x8000 or qd != 1:
        return None
    pos, labels = 12, []
    while pos < len(data) and data[pos] != 0:
        n = data[pos]
        if n > 63 or pos + 1 + n > len(data):
            return None
        labels.append(data[pos + 1:pos + 1 + n].decode("ascii", "replace").lower())
        pos += 1 + n
    if pos + 5 > len(data):
        return None
    qtype, qclass = struct.unpack("!HH", data[pos + 1:pos + 5])
    return qid, flags, ".".join(labels), qtype, data[12:pos + 5]


def answer(zone, query):
    qid, flags, name, qtype, question = query
    entry = zone.get(name)
    rcode = 3 if entry is None else int(entry.get("rcode", 0))
    records = b""
    count = 0
    if rcode == 0:
        ttl = int(entry.get("ttl", 60))
        key, family, size = ("a", socket.AF_INET, 4) if qtype == 1 else ("aaaa", socket.AF_INET6, 16)
        if qtype in (1, 28):
            for address in entry.get(key, []):
                rdata = socket.inet_pton(family, str(ipaddress.ip_address(address)))
                records += struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, size) + rdata
                count += 1
    out_flags = 0x8400 | (flags & 0x0100) | rcode  # QR, AA, RD copied
    return struct.pack("!HHHHHH", qid, out_flags, 1, count, 0, 0) + question + records, rcode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--zone", required=True)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--log", default=None)
    args = ap.parse_args()
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((args.bind, args.port))
    sock.settimeout(0.5)
    print("ready", flush=True)
    deadline = time.monotonic() + args.max_seconds
    log = open(args.log, "a", buffering=1) if args.log else None
    while time.monotonic() < deadline:
        try:
            data, peer = sock.recvfrom(512)
        except socket.timeout:
            continue
        query = parse_question(data)
        if query is None:
            continue
        try:
            with open(args.zone) as f:
                zone = json.load(f)
        except (OSError, ValueError):
            zone = {}
        reply, rcode = answer(zone, query)
        if log:
            log.write("%s %d %d\n" % (query[2], query[3], rcode))
        sock.sendto(reply[:512], peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
