#!/usr/bin/python3
"""`write_until_disconnected.py URI BLOCK_SIZE IN_FLIGHT`: writes the whole export over and over, block after block,
keeping IN_FLIGHT writes queued, until the server closes the connection (or 60 s pass). A block is rewritten only
after its previous write completed. Then prints one JSON object: for every block, the seed of the last write the server
acknowledged (or -1) and the seed of a write that was sent but not acknowledged (or -1). Block i of pass p holds
seed = p * 1000003 + i written as 16-byte units (seed, byte offset in block), both unsigned 64-bit little-endian.
"""
import json
import struct
import sys
import time

import nbd

uri, block_size, in_flight = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = nbd.NBD()
h.connect_uri(uri)
blocks = h.get_size() // block_size
acked = [-1] * blocks
pending = {}  # cookie -> (block, seed)
pending_block = [-1] * blocks
deadline = time.monotonic() + 60
ended_by = "timeout"
next_index = 0


def reap():
    for cookie in list(pending):
        if h.aio_command_completed(cookie):  # raises nbd.Error if the write failed
            block, seed = pending.pop(cookie)
            acked[block] = seed
            pending_block[block] = -1


try:
    while time.monotonic() < deadline:
        while len(pending) < in_flight:
            block, seed = next_index % blocks, (next_index // blocks) * 1000003 + next_index % blocks
            if pending_block[block] != -1:
                break
            data = b"".join(struct.pack("<QQ", seed, i) for i in range(0, block_size, 16))
            cookie = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), block * block_size)
            pending[cookie] = (block, seed)
            pending_block[block] = seed
            next_index += 1
        h.poll(1000)
        reap()
except nbd.Error as e:
    ended_by = f"server closed: {e}"
    try:
        reap()
    except nbd.Error:
        pass

print(json.dumps({"ended_by": ended_by, "writes_sent": next_index, "acked": acked,
                  "unacknowledged": pending_block}))
