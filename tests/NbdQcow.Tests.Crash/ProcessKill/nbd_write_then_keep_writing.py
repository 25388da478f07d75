# Client for the process-kill test (run with /usr/bin/python3, python3-libnbd).
# Writes FLUSHED_BLOCKS 64 KiB blocks, flushes (when the export offers it), prints "flushed",
# then keeps writing other blocks, unflushed, printing "wrote N", until the server goes away.
import sys
import nbd

socket_path, flushed_blocks, total_blocks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
B = 65536


def block(i, round_):
    return bytes([(i * 7 + round_ * 13 + 1) % 256]) * B


h = nbd.NBD()
h.connect_unix(socket_path)
for i in range(flushed_blocks):
    h.pwrite(block(i, 0), i * B)
if h.can_flush():
    h.flush()
print("flushed", flush=True)
n = 0
try:
    while True:
        i = flushed_blocks + n % (total_blocks - flushed_blocks)
        h.pwrite(block(i, 1 + n // (total_blocks - flushed_blocks)), i * B)
        n += 1
        print("wrote", n, flush=True)
except nbd.Error as e:
    print("server gone:", e, flush=True)
