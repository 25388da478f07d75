#!/usr/bin/python3
"""`trim_churn.py URI IMAGE_FILE ROUNDS`: ROUNDS times, writes 1 MiB at offset 0 and trims it again, never flushing.
Prints one JSON object: the largest size IMAGE_FILE (the served qcow2 file) reached, sampled after every round.
"""
import json
import os
import sys

import nbd

uri, image_file, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
h = nbd.NBD()
h.connect_uri(uri)
block = b"\x5c" * (1 << 20)
largest = os.stat(image_file).st_size
for _ in range(rounds):
    h.pwrite(block, 0)
    h.trim(len(block), 0)
    largest = max(largest, os.stat(image_file).st_size)
h.shutdown()
print(json.dumps({"largest": largest}))
