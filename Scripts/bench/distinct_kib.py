#!/usr/bin/env python3
"""Prints the KiB of distinct physical pages resident in the given processes, together.

Usage: distinct_kib.py PID...   (root: page frame numbers are hidden from other users)

RSS sums count a library page once in every process that maps it; PSS splits it with
every process on the machine that maps the same file (other programs too). This counts
each physical page once for the processes given and not at all for the rest: what they
keep resident together, as if nothing else on the machine shared their libraries.
Reads /proc/PID/maps and /proc/PID/pagemap (bit 63: present; bits 0-54: frame number).
"""
import os
import struct
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")


def frames(pid):
    found = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if len(fields) > 5 and fields[5] == "[vsyscall]":
                continue
            count = (end - start) // PAGE
            pagemap.seek(start // PAGE * 8)
            data = pagemap.read(count * 8)
            for (entry,) in struct.iter_unpack("<Q", data):
                if entry >> 63 & 1:
                    found.add(entry & ((1 << 55) - 1))
    return found


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: distinct_kib.py PID...")
    pages = set()
    for pid in sys.argv[1:]:
        try:
            pages |= frames(pid)
        except OSError as error:
            sys.exit(f"distinct_kib.py: pid {pid}: {error}")
    if pages == {0}:
        sys.exit("distinct_kib.py: frame numbers are hidden (run as root)")
    print(len(pages) * PAGE // 1024)


if __name__ == "__main__":
    main()
