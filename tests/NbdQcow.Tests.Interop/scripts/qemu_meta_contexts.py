#!/usr/bin/python3
"""`qemu_meta_contexts.py URI BITMAP`: negotiates base:allocation, qemu:allocation-depth and
qemu:dirty-bitmap:BITMAP at once, writes 64 KiB at 2 MiB, then asks BLOCK_STATUS for [0, 4 MiB) without and with
REQ_ONE. Prints one JSON object: {"full"|"one": {context: [length, flags, ...]}} (what each context answered)."""
import json
import sys

import nbd

uri, bitmap = sys.argv[1], sys.argv[2]
contexts = [nbd.CONTEXT_BASE_ALLOCATION, "qemu:allocation-depth", "qemu:dirty-bitmap:" + bitmap]
h = nbd.NBD()
for context in contexts:
    h.add_meta_context(context)
h.connect_uri(uri)
for context in contexts:
    assert h.can_meta_context(context), f"server did not agree to {context}"
h.pwrite(b"\x5a" * 65536, 2 * 1024 * 1024)

result = {}
for name, flags in (("full", 0), ("one", nbd.CMD_FLAG_REQ_ONE)):
    seen = {}

    def callback(context, offset, entries, err, seen=seen):
        assert context not in seen, f"{context} answered twice"
        seen[context] = list(entries)
        return 0

    h.block_status(4 * 1024 * 1024, 0, callback, flags)
    result[name] = seen
h.shutdown()
print(json.dumps(result))
