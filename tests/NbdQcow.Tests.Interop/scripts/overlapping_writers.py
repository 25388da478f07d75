#!/usr/bin/python3
"""`overlapping_writers.py URI CONNECTIONS CLUSTER_SIZE SEED OBSERVED`

Concurrency stress: CONNECTIONS connections (one thread each, 16 writes in flight per connection) write into the
same unallocated clusters at once.
Phase 1 (disjoint pieces, shared clusters): a region of 48 clusters (at least 1 MiB) is cut into pieces of CLUSTER_SIZE/8 bytes (at
least 512); piece j belongs to connection j % (CONNECTIONS + 1), the last owner being "nobody" (left unwritten, so it
must keep what it held before: zeroes or backing data). Every byte is then checked.
Phase 2 (truly overlapping): every connection writes every cluster of another region of 32 clusters (at least 512 KiB) with its own data,
in its own random order; afterwards each 512-byte sector must hold the data of one of the writers.
Finally the whole export is read and saved to OBSERVED (a raw file) for comparison with qemu's read of the image.
"""
import random
import sys
import threading
import time

import nbd

uri, connections, cluster, seed, observed_path = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
SECTOR = 512
DEPTH = 16
DEADLINE = time.monotonic() + 180


def content(writer, offset, length):
    """Data of `writer` for [offset, offset+length): every 512-byte sector is distinct per writer and position."""
    out = bytearray()
    for sector in range(offset // SECTOR, (offset + length + SECTOR - 1) // SECTOR):
        out += random.Random(seed * 7919 + writer * 1000003 + sector).randbytes(SECTOR)
    skip = offset % SECTOR
    return bytes(out[skip:skip + length])


def run_writer(writer, jobs, errors):
    try:
        h = nbd.NBD()
        h.connect_uri(uri)
        pending = []
        for offset, length in jobs:
            while len(pending) >= DEPTH:
                assert time.monotonic() < DEADLINE, "writer timed out"
                h.poll(1000)
                pending = [c for c in pending if not h.aio_command_completed(c)]
            pending.append(h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(content(writer, offset, length))), offset))
        while pending:
            assert time.monotonic() < DEADLINE, "writer timed out"
            h.poll(1000)
            pending = [c for c in pending if not h.aio_command_completed(c)]
        h.flush()
        h.shutdown()
    except BaseException as e:  # reported by the main thread
        errors.append(f"writer {writer}: {e!r}")


def run_phase(jobs_per_writer):
    errors = []
    threads = [threading.Thread(target=run_writer, args=(w, jobs, errors)) for w, jobs in jobs_per_writer.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1, DEADLINE - time.monotonic()))
        assert not t.is_alive(), "a writer thread hung"
    assert not errors, "; ".join(errors)


main = nbd.NBD()
main.connect_uri(uri)
size = main.get_size()
rng = random.Random(seed)

# Phase 1.
piece = max(SECTOR, cluster // 8)
region1 = (0, max(48, (1 << 20) // cluster) * cluster)
before1 = main.pread(region1[1], region1[0])
owners = connections + 1
jobs = {w: [] for w in range(connections)}
for j in range(region1[1] // piece):
    owner = j % owners
    if owner < connections:
        jobs[owner].append((region1[0] + j * piece, piece))
for w in jobs:
    rng.shuffle(jobs[w])
run_phase(jobs)
after1 = main.pread(region1[1], region1[0])
for j in range(region1[1] // piece):
    owner = j % owners
    offset = region1[0] + j * piece
    expected = content(owner, offset, piece) if owner < connections else before1[j * piece:(j + 1) * piece]
    actual = after1[j * piece:(j + 1) * piece]
    if actual != expected:
        raise AssertionError(f"phase 1: piece at {offset} (owner {owner if owner < connections else 'nobody'}) "
                             f"holds wrong data")
print(f"ok: phase 1, {connections} connections, {region1[1] // piece} pieces of {piece} bytes in "
      f"{region1[1] // cluster} shared clusters")

# Phase 2.
clusters2 = max(32, (512 << 10) // cluster)
region2 = (size // 2, clusters2 * cluster)
jobs = {}
for w in range(connections):
    order = [(region2[0] + i * cluster, cluster) for i in range(clusters2)]
    rng.shuffle(order)
    jobs[w] = order
run_phase(jobs)
after2 = main.pread(region2[1], region2[0])
for s in range(region2[1] // SECTOR):
    offset = region2[0] + s * SECTOR
    actual = after2[s * SECTOR:(s + 1) * SECTOR]
    if not any(actual == content(w, offset, SECTOR) for w in range(connections)):
        raise AssertionError(f"phase 2: sector at {offset} holds data no writer wrote")
print(f"ok: phase 2, {connections} connections each wrote all {clusters2} clusters")

with open(observed_path, "wb") as observed:
    chunk = 4 * 1024 * 1024
    for offset in range(0, size, chunk):
        observed.write(main.pread(min(chunk, size - offset), offset))
main.shutdown()
print("ok: observed image saved")
