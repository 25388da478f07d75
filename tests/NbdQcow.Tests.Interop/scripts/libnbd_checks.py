#!/usr/bin/python3
"""Protocol checks through libnbd (python3-libnbd), one per test: `libnbd_checks.py CHECK URI [ARGS...]`.

Each check prints what it verified and exits 0, or fails with an AssertionError / nbd.Error (exit 1).
Data patterns are deterministic (seeded), so a wrong byte names its offset. Every wait is bounded.
"""
import errno
import os
import random
import sys
import time

import nbd

MIB = 1024 * 1024
DEADLINE_SECONDS = 60


def pattern(seed, length):
    return random.Random(seed).randbytes(length)


def connect(uri, structured_replies=True, handshake_flags=None, strict=True, meta_allocation=True):
    h = nbd.NBD()
    h.set_request_structured_replies(structured_replies)
    if handshake_flags is not None:
        h.set_handshake_flags(handshake_flags)
    if not strict:
        # Send requests libnbd would refuse locally, so the server's own answer is what we check.
        h.set_strict_mode(0)
    if meta_allocation and structured_replies:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    return h


def expect_error(expected_errno, what, action):
    try:
        action()
    except nbd.Error as e:
        assert e.errnum == expected_errno, \
            f"{what}: expected {errno.errorcode[expected_errno]}, got {e.errno} ({e.string})"
        print(f"ok: {what} -> {errno.errorcode[expected_errno]}")
        return
    raise AssertionError(f"{what}: expected {errno.errorcode[expected_errno]}, but it succeeded")


def first_difference(expected, actual):
    for i, (a, b) in enumerate(zip(expected, actual)):
        if a != b:
            return i
    return min(len(expected), len(actual))


def assert_data(expected, actual, offset, what):
    if expected != actual:
        i = first_difference(expected, actual)
        raise AssertionError(f"{what}: data differs at byte {offset + i} (length {len(expected)} vs {len(actual)})")


def allocation_extents(h, offset, length):
    """[(length, flags)] of base:allocation for the range (flags: 1 = hole, 2 = zero)."""
    extents = []

    def callback(metacontext, off, entries, err):
        if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
            extents.extend(zip(entries[0::2], entries[1::2]))
        return 0

    done = 0
    while done < length:
        before = len(extents)
        h.block_status(length - done, offset + done, callback)
        assert len(extents) > before, "block status returned no extent"
        done += sum(e[0] for e in extents[before:])
    return extents


def wait_all(h, cookies):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while h.aio_in_flight() > 0:
        assert time.monotonic() < deadline, f"{h.aio_in_flight()} commands still in flight after {DEADLINE_SECONDS} s"
        h.poll(1000)
    for cookie in cookies:
        h.aio_command_completed(cookie)  # raises nbd.Error if the command failed


def check_in_flight_64(uri):
    """64 writes in flight at once, then 64 reads in flight at once, every byte verified."""
    h = connect(uri)
    count, block = 64, 64 * 1024
    assert h.get_size() >= count * block * 2, "image too small"
    # Interleaved offsets (stride 2 blocks) with varied lengths, so replies for different sizes can overtake.
    plan = [(i * 2 * block + (i % 7) * 512, block - (i % 5) * 4096) for i in range(count)]
    writes = []
    for i, (offset, length) in enumerate(plan):
        writes.append(h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(pattern(1000 + i, length))), offset))
    peak = h.aio_in_flight()
    assert peak == count, f"expected {count} writes queued at once, saw {peak}"
    wait_all(h, writes)
    buffers, reads = [], []
    for offset, length in plan:
        buf = nbd.Buffer(length)
        buffers.append(buf)
        reads.append(h.aio_pread(buf, offset))
    assert h.aio_in_flight() == count
    wait_all(h, reads)
    for i, (offset, length) in enumerate(plan):
        assert_data(pattern(1000 + i, length), bytes(buffers[i].to_bytearray()), offset, f"read {i}")
    h.flush()
    h.shutdown()
    print(f"ok: {count} writes and {count} reads in flight, all data verified")


def check_zero(uri):
    """WRITE_ZEROES plain, with NO_HOLE, with FAST_ZERO, and with both; each range then reads as zeroes."""
    h = connect(uri)
    assert h.can_zero(), "server does not advertise WRITE_ZEROES"
    assert h.can_fast_zero(), "server does not advertise FAST_ZERO"
    cases = [("plain", 0), ("no-hole", nbd.CMD_FLAG_NO_HOLE), ("fast-zero", nbd.CMD_FLAG_FAST_ZERO),
             ("no-hole+fast-zero", nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FAST_ZERO)]
    for index, (name, flags) in enumerate(cases):
        offset, length = index * 2 * MIB, MIB
        h.pwrite(pattern(index, 2 * MIB), offset)
        try:
            h.zero(length, offset, flags=flags)
        except nbd.Error as e:
            # FAST_ZERO may refuse with ENOTSUP when only a slow path exists; the data must then be untouched.
            assert flags & nbd.CMD_FLAG_FAST_ZERO and e.errnum == errno.ENOTSUP, f"zero {name}: {e}"
            assert_data(pattern(index, 2 * MIB), h.pread(2 * MIB, offset), offset, f"after refused {name}")
            print(f"ok: zero {name} refused with ENOTSUP, data untouched")
            continue
        assert_data(bytes(length), h.pread(length, offset), offset, f"zeroed range ({name})")
        assert_data(pattern(index, 2 * MIB)[length:], h.pread(MIB, offset + length), offset + length,
                    f"data after the zeroed range ({name})")
        # Whether NO_HOLE's range then reports HOLE depends on the host file system (ext4 reports
        # unwritten extents as holes), so only the data is checked here.
        print(f"ok: zero {name}")
    # Unaligned zero inside written data.
    h.pwrite(pattern(50, 8192), 9 * MIB)
    h.zero(1000, 9 * MIB + 123)
    expected = bytearray(pattern(50, 8192))
    expected[123:1123] = bytes(1000)
    assert_data(bytes(expected), h.pread(8192, 9 * MIB), 9 * MIB, "unaligned zero")
    h.flush()
    h.shutdown()
    print("ok: unaligned zero")


def check_trim(uri):
    """TRIM of written data: the range reads as zeroes and block status reports a hole (raw punches holes)."""
    h = connect(uri)
    assert h.can_trim(), "server does not advertise TRIM"
    offset = 4 * MIB
    h.pwrite(pattern(7, 3 * MIB), offset)
    h.flush()
    h.trim(MIB, offset + MIB)
    h.flush()
    assert_data(pattern(7, 3 * MIB)[:MIB], h.pread(MIB, offset), offset, "before the trimmed range")
    assert_data(bytes(MIB), h.pread(MIB, offset + MIB), offset + MIB, "trimmed range")
    assert_data(pattern(7, 3 * MIB)[2 * MIB:], h.pread(MIB, offset + 2 * MIB), offset + 2 * MIB,
                "after the trimmed range")
    extents = allocation_extents(h, offset + MIB, MIB)
    assert all(flags & nbd.STATE_ZERO for _, flags in extents), f"trimmed range not reported zero: {extents}"
    h.shutdown()
    print("ok: trim")


def check_cache(uri):
    """CACHE is advertised and accepted, and data reads back unchanged after it."""
    h = connect(uri)
    assert h.can_cache(), "server does not advertise CACHE"
    h.pwrite(pattern(8, MIB), 3 * MIB)
    h.cache(2 * MIB, 2 * MIB)
    h.cache(100, 3 * MIB + 7)
    assert_data(pattern(8, MIB), h.pread(MIB, 3 * MIB), 3 * MIB, "read after cache")
    h.shutdown()
    print("ok: cache")


def check_fua(uri):
    """WRITE with FUA is advertised and succeeds; the data reads back on a second connection."""
    h = connect(uri)
    assert h.can_fua(), "server does not advertise FUA"
    h.pwrite(pattern(9, 65536 + 512), 5 * MIB + 512, flags=nbd.CMD_FLAG_FUA)
    h.zero(4096, 6 * MIB, flags=nbd.CMD_FLAG_FUA)
    other = connect(uri)
    assert_data(pattern(9, 65536 + 512), other.pread(65536 + 512, 5 * MIB + 512), 5 * MIB + 512, "FUA write")
    other.shutdown()
    h.shutdown()
    print("ok: fua")


def check_export_name_path(uri):
    """The old NBD_OPT_EXPORT_NAME path (no fixed newstyle), with and without NO_ZEROES."""
    reference = connect(uri)
    size = reference.get_size()
    reference.pwrite(pattern(10, 4096), 0)
    reference.flush()
    reference.shutdown()
    for flags, name in [(0, "without NO_ZEROES"), (nbd.HANDSHAKE_FLAG_NO_ZEROES, "with NO_ZEROES")]:
        h = connect(uri, structured_replies=False, handshake_flags=flags)
        protocol = h.get_protocol()
        assert protocol == "newstyle", f"expected plain newstyle (EXPORT_NAME), negotiated {protocol}"
        assert h.get_handshake_flags() == flags, f"handshake flags {h.get_handshake_flags()} != {flags}"
        assert h.get_size() == size, f"size {h.get_size()} != {size}"
        assert_data(pattern(10, 4096), h.pread(4096, 0), 0, f"read over EXPORT_NAME {name}")
        h.pwrite(pattern(11, 512), 8192)
        assert_data(pattern(11, 512), h.pread(512, 8192), 8192, f"write over EXPORT_NAME {name}")
        h.shutdown()
        print(f"ok: EXPORT_NAME {name}")


def check_beyond_end(uri):
    """A read beyond the end gets EINVAL, a write ENOSPC; the same connection then reads correctly."""
    h = connect(uri, strict=False)
    size = h.get_size()
    h.pwrite(pattern(12, 4096), size - 4096)
    expect_error(errno.EINVAL, "read crossing the end", lambda: h.pread(1024, size - 512))
    expect_error(errno.EINVAL, "read past the end", lambda: h.pread(512, size + 4096))
    assert_data(pattern(12, 4096), h.pread(4096, size - 4096), size - 4096, "good read after errors")
    expect_error(errno.ENOSPC, "write crossing the end", lambda: h.pwrite(bytes(1024), size - 512))
    assert_data(pattern(12, 4096), h.pread(4096, size - 4096), size - 4096, "data after refused write")
    h.shutdown()
    print("ok: connection alive after out-of-range requests")


def check_multi_conn(uri):
    """CAN_MULTI_CONN: a write on one connection, flushed there or on another, is read by a third."""
    a, b, c = connect(uri), connect(uri), connect(uri)
    for h in (a, b, c):
        assert h.can_multi_conn(), "server does not advertise CAN_MULTI_CONN"
    a.pwrite(pattern(13, MIB), 2 * MIB)
    a.flush()
    assert_data(pattern(13, MIB), b.pread(MIB, 2 * MIB), 2 * MIB, "read on B after write+flush on A")
    a.pwrite(pattern(14, MIB), 3 * MIB)
    b.flush()
    assert_data(pattern(14, MIB), c.pread(MIB, 3 * MIB), 3 * MIB, "read on C after write on A, flush on B")
    for h in (a, b, c):
        h.shutdown()
    print("ok: multi-conn")


def check_read_only(uri):
    """A read-only export says so and refuses WRITE, WRITE_ZEROES and TRIM with EPERM; reads still work."""
    h = connect(uri, strict=False)
    assert h.is_read_only(), "export not flagged read-only"
    before = h.pread(4096, 0)
    expect_error(errno.EPERM, "write to read-only export", lambda: h.pwrite(b"x" * 512, 0))
    expect_error(errno.EPERM, "zero on read-only export", lambda: h.zero(512, 0))
    expect_error(errno.EPERM, "trim on read-only export", lambda: h.trim(4096, 0))
    assert_data(before, h.pread(4096, 0), 0, "data after refused writes")
    h.shutdown()
    print("ok: read-only")


def check_structured_replies(uri, mode):
    """Reads of data and holes with structured replies on or off; the negotiated state matches the request."""
    on = mode == "on"
    writer = connect(uri)
    writer.pwrite(pattern(15, MIB), MIB)
    writer.flush()
    writer.shutdown()
    h = connect(uri, structured_replies=on)
    assert h.get_structured_replies_negotiated() == on, \
        f"structured replies negotiated={h.get_structured_replies_negotiated()}, requested {on}"
    assert_data(pattern(15, MIB), h.pread(MIB, MIB), MIB, "data read")
    assert_data(bytes(MIB), h.pread(MIB, 8 * MIB), 8 * MIB, "hole read")
    mixed = h.pread(2 * MIB, MIB // 2)
    assert_data(bytes(MIB // 2) + pattern(15, MIB) + bytes(MIB // 2), mixed, MIB // 2, "read across data and holes")
    if on:
        assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION), "base:allocation not negotiated"
        extents = allocation_extents(h, MIB, MIB)
        assert not any(flags & nbd.STATE_HOLE for _, flags in extents), f"written data reported as hole: {extents}"
        # REQ_ONE: exactly one extent, not past the request; the hole [0, 1 MiB) comes first.
        seen = []
        h.block_status(4 * MIB, 0, lambda ctx, off, entries, err: seen.append(list(entries)) or 0,
                       flags=nbd.CMD_FLAG_REQ_ONE)
        assert len(seen) == 1 and len(seen[0]) == 2, f"REQ_ONE returned {seen}"
        length, flags = seen[0]
        assert 0 < length <= MIB and flags & nbd.STATE_HOLE, f"REQ_ONE extent ({length}, {flags}) at 0"
        # DF (don't fragment): one data chunk even across a hole and data (the spec's minimum is 64 KiB).
        assert h.can_df(), "server does not advertise DF"
        chunks = []
        data = h.pread_structured(65536, MIB - 32768,
                                  lambda buf, off, status, *rest: chunks.append((off, len(buf), status)) or 0,
                                  flags=nbd.CMD_FLAG_DF)
        assert_data(bytes(32768) + pattern(15, MIB)[:32768], data, MIB - 32768, "DF read across a hole and data")
        content = [c for c in chunks if c[2] in (nbd.READ_DATA, nbd.READ_HOLE)]
        assert len(content) == 1 and content[0][2] == nbd.READ_DATA, f"DF read came in chunks {chunks}"
    h.shutdown()
    print(f"ok: structured replies {mode}")


CHECKS = {
    "in-flight-64": check_in_flight_64,
    "zero": check_zero,
    "trim": check_trim,
    "cache": check_cache,
    "fua": check_fua,
    "export-name-path": check_export_name_path,
    "beyond-end": check_beyond_end,
    "multi-conn": check_multi_conn,
    "read-only": check_read_only,
    "structured-replies": check_structured_replies,
}

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in CHECKS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(CHECKS)}}} URI [ARGS...]")
    CHECKS[sys.argv[1]](*sys.argv[2:])
