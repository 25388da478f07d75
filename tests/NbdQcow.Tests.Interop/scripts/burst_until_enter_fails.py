#!/usr/bin/python3
"""`burst_until_enter_fails.py URI ROUNDS`: ROUNDS bursts of 16 aligned 64 KiB writes in flight at once (libnbd aio),
each burst at its own offsets with its own byte; every command must complete within 30 s. Then one more burst
(the export must be serving again), a FLUSH, and a read-back of every write that succeeded.
Prints one JSON object: how many writes failed, their errnos, whether the flush succeeded and whether the data of
every successful write reads back.
"""
import errno
import json
import sys
import time

import nbd

uri, rounds = sys.argv[1], int(sys.argv[2])
h = nbd.NBD()
h.connect_uri(uri)
size = 64 << 10
deadline = time.monotonic() + 30
failed = []
ok = []


def burst(index):
    pending = {}
    for i in range(16):
        offset = (index * 16 + i) * size
        data = bytes([(index * 16 + i) % 251 + 1]) * size
        pending[h.aio_pwrite(data, offset)] = (offset, data)
    while pending:
        if time.monotonic() > deadline:
            print(json.dumps({"hung": True, "pending": len(pending)}))
            sys.exit(3)
        h.poll(100)
        for cookie in list(pending):
            try:
                done = h.aio_command_completed(cookie)
            except nbd.Error as e:
                # libnbd gives the errno by name ("EIO") or number depending on its version.
                failed.append(getattr(errno, e.errno, -1) if isinstance(e.errno, str) else e.errno)
                del pending[cookie]
                continue
            if done:
                ok.append(pending.pop(cookie))


for index in range(rounds):
    burst(index)
burst(rounds)
flushed = True
try:
    h.flush()
except nbd.Error:
    flushed = False
verified = all(h.pread(size, offset) == data for offset, data in ok)
h.shutdown()
print(json.dumps({"hung": False, "failed": len(failed), "errnos": sorted(set(failed)), "succeeded": len(ok),
                  "flushed": flushed, "verified": verified, "eio": errno.EIO}))
