#!/usr/bin/python3
"""`mirrored_workload.py URI REFERENCE SEED OPS CLUSTER_SIZE IN_FLIGHT`

A seeded random mix of writes (unaligned, small to 2 MiB, biased to a hot region so clusters are allocated, then
partly rewritten), write-zeroes (plain, NO_HOLE, FAST_ZERO), cluster-aligned trims, flushes and verifying reads,
with up to IN_FLIGHT requests outstanding (never two overlapping ones). Every completed change is mirrored into the
raw REFERENCE file (same size), so afterwards `qemu-img compare` of the served image with REFERENCE must be
identical. Trimmed ranges are expected to read as zeroes. Ends with a full read compared to REFERENCE.
"""
import errno
import os
import random
import sys
import time

import nbd

uri, reference_path, seed, ops, cluster, in_flight_max = (
    sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
rng = random.Random(seed)
h = nbd.NBD()
h.connect_uri(uri)
size = h.get_size()
assert os.path.getsize(reference_path) == size, "reference size differs from the export size"
reference = os.open(reference_path, os.O_RDWR)
hot = min(size, 8 * 1024 * 1024)
pending = []  # (cookie, start, end, on_success, description)
counts = {}
deadline = time.monotonic() + 240


def reap(block):
    while True:
        assert time.monotonic() < deadline, "workload did not finish in time"
        for entry in list(pending):
            cookie, start, end, on_success, description = entry
            try:
                done = h.aio_command_completed(cookie)
            except nbd.Error as e:
                if description.startswith("zero fast") and e.errnum == errno.ENOTSUP:
                    # FAST_ZERO refused. The range may be partly zeroed already (qemu-nbd does that too), so do what
                    # a real client does: fall back to a plain WRITE_ZEROES, which defines the contents again.
                    pending.remove(entry)
                    h.zero(end - start, start)
                    on_success()
                    counts["fast-zero-refused"] = counts.get("fast-zero-refused", 0) + 1
                    continue
                raise AssertionError(f"{description} failed: {e}")
            if done:
                pending.remove(entry)
                on_success()
        if not block(pending):
            return
        h.poll(1000)


def overlaps(start, end):
    return lambda p: any(s < end and start < e for _, s, e, _, _ in p)


def pick_range(max_length):
    length = rng.choice([rng.randint(1, 4096), rng.randint(1, 65536), rng.randint(1, max_length)])
    length = min(length, size)
    region = hot if rng.random() < 0.6 and hot >= length else size
    return rng.randint(0, region - length), length


def submit(start, length, issue, on_success, description):
    end = start + length
    reap(overlaps(start, end))
    reap(lambda p: len(p) >= in_flight_max)
    pending.append((issue(), start, end, on_success, description))
    counts[description.split()[0]] = counts.get(description.split()[0], 0) + 1


def mirror_write(start, data):
    return lambda: os.pwrite(reference, data, start)


def mirror_zero(start, length):
    return lambda: os.pwrite(reference, bytes(length), start)


def verify(start, length):
    reap(overlaps(start, start + length))
    expected = os.pread(reference, length, start)
    actual = h.pread(length, start)
    if expected != actual:
        i = next(i for i in range(length) if expected[i] != actual[i])
        raise AssertionError(f"read at {start}+{length}: first difference at byte {start + i}")


for op in range(ops):
    kind = rng.random()
    if kind < 0.55:
        start, length = pick_range(2 * 1024 * 1024)
        data = rng.randbytes(length)
        submit(start, length, lambda: h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), start,
                                                   flags=nbd.CMD_FLAG_FUA if rng.random() < 0.1 else 0),
               mirror_write(start, data), f"write {start}+{length}")
    elif kind < 0.72:
        start, length = pick_range(4 * 1024 * 1024)
        flags = rng.choice([0, nbd.CMD_FLAG_NO_HOLE, nbd.CMD_FLAG_FAST_ZERO])
        name = {0: "plain", nbd.CMD_FLAG_NO_HOLE: "no-hole", nbd.CMD_FLAG_FAST_ZERO: "fast"}[flags]
        submit(start, length, lambda: h.aio_zero(length, start, flags=flags), mirror_zero(start, length),
               f"zero {name} {start}+{length}")
    elif kind < 0.82:
        clusters = size // cluster
        first = rng.randint(0, max(0, min(clusters, hot // cluster) - 1)) if rng.random() < 0.7 else rng.randint(0, clusters - 1)
        count = min(rng.randint(1, 8), clusters - first)
        start, length = first * cluster, count * cluster
        submit(start, length, lambda: h.aio_trim(length, start), mirror_zero(start, length), f"trim {start}+{length}")
    elif kind < 0.87:
        reap(lambda p: False)  # a flush covers what completed before it
        cookie = h.aio_flush()
        pending.append((cookie, 0, 0, lambda: None, "flush"))
        counts["flush"] = counts.get("flush", 0) + 1
    else:
        start, length = pick_range(1024 * 1024)
        verify(start, length)
        counts["verify"] = counts.get("verify", 0) + 1

reap(lambda p: len(p) > 0)
h.flush()
chunk = 4 * 1024 * 1024
for start in range(0, size, chunk):
    verify(start, min(chunk, size - start))
h.shutdown()
os.fsync(reference)
os.close(reference)
print("ok:", " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
