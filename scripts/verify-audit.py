#!/usr/bin/env python3
"""Independent check of a sandbox audit log, for auditors.

Uses only the Python standard library and the documented canonical form:
each line is a JSON object ending with the member `,"hash":"sha256:<hex>"`;
the event's hash is the SHA-256 of the line with that member removed (the
bytes up to it, then `}`); `prev` is the previous event's hash (64 zeros
for the first); `seq` counts 0, 1, 2, ... without gaps.

Usage: verify-audit.py FILE    exit 0 when intact, 1 naming the first bad seq
"""
import hashlib
import json
import re
import sys

SUFFIX = re.compile(rb',"hash":"sha256:([0-9a-f]{64})"\}$')


def verify(path):
    prev = "sha256:" + "0" * 64
    seq = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                return f"seq {seq} (line {number}): incomplete last line"
            line = raw[:-1]
            m = SUFFIX.search(line)
            if not m:
                return f"seq {seq} (line {number}): no trailing hash member"
            try:
                event = json.loads(line)
            except ValueError as e:
                return f"seq {seq} (line {number}): not JSON: {e}"
            if event.get("seq") != seq:
                return f"seq {seq} (line {number}): line holds seq {event.get('seq')}"
            digest = hashlib.sha256(line[: m.start()] + b"}").hexdigest()
            if digest != m.group(1).decode():
                return f"seq {seq} (line {number}): content does not match its hash"
            if event.get("prev") != prev:
                return f"seq {seq} (line {number}): prev does not match the previous hash"
            prev = "sha256:" + digest
            seq += 1
    print(f"ok: {seq} events, head {prev}")
    return None


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    problem = verify(sys.argv[1])
    if problem:
        print(f"not intact: {problem}")
        sys.exit(1)
