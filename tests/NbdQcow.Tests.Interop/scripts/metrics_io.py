#!/usr/bin/python3
"""`metrics_io.py URI METRICS_URL EXPORT`: does I/O on one libnbd connection and checks, after each step, that the
server's Prometheus text (a plain HTTP GET of METRICS_URL) moved as it must: requests and bytes by command, the
unflushed bytes and the age of the oldest unflushed change (the server runs with --max-dirty-age off, so only the
client's FLUSH clears them), a flush counted, an error counted by errno. Prints "ok" or fails with the numbers.
"""
import sys
import time
import urllib.request

import nbd

uri, metrics_url, export = sys.argv[1], sys.argv[2], sys.argv[3]


def scrape():
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        return response.read().decode()


def value(text, name, server_wide=False, **labels):
    """The sample of NAME whose labels include LABELS (and this export, unless SERVER_WIDE); 0 when there is none yet."""
    if not server_wide:
        labels = dict(labels, export=export)
    for line in text.splitlines():
        if line.startswith("#") or not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        series, _, number = line.rpartition(" ")
        found = {}
        if "{" in series:
            for part in series[series.index("{") + 1:series.rindex("}")].split(","):
                key, _, quoted = part.partition("=")
                found[key] = quoted.strip('"')
        if all(found.get(k) == v for k, v in labels.items()):
            return float(number)
    return 0.0


def settle(name, at_least, **labels):
    """Scrapes until NAME reaches AT_LEAST (bounded: 2 s). A request is counted just after its reply is sent, so the
    client can scrape a moment before its last request shows up."""
    deadline = time.monotonic() + 2
    while True:
        text = scrape()
        if value(text, name, **labels) >= at_least or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


def expect(condition, what, text):
    if not condition:
        sys.exit(f"metrics check failed: {what}\n--- scraped ---\n{text}")


h = nbd.NBD()
h.connect_uri(uri)
before = scrape()
writes0 = value(before, "nbdqcow_requests_total", command="write")
wbytes0 = value(before, "nbdqcow_request_bytes_total", command="write")
reads0 = value(before, "nbdqcow_requests_total", command="read")
rbytes0 = value(before, "nbdqcow_request_bytes_total", command="read")
flushreq0 = value(before, "nbdqcow_requests_total", command="flush")
flushes0 = value(before, "nbdqcow_flushes_total")
einval0 = value(before, "nbdqcow_request_errors_total", errno="EINVAL")

# Three unflushed writes of different sizes and one read.
sizes = [4096, 65536, 1 << 20]
offset = 0
for i, size in enumerate(sizes):
    h.pwrite(bytes([0x40 + i]) * size, offset)
    offset += size
h.pread(131072, 0)
time.sleep(0.3)  # the oldest unflushed change is now at least this old

settle("nbdqcow_requests_total", writes0 + len(sizes), command="write")
after_io = settle("nbdqcow_requests_total", reads0 + 1, command="read")
written = sum(sizes)
expect(value(after_io, "nbdqcow_requests_total", command="write") - writes0 == len(sizes), "3 writes counted", after_io)
expect(value(after_io, "nbdqcow_request_bytes_total", command="write") - wbytes0 == written, f"{written} bytes written", after_io)
expect(value(after_io, "nbdqcow_requests_total", command="read") - reads0 == 1, "1 read counted", after_io)
expect(value(after_io, "nbdqcow_request_bytes_total", command="read") - rbytes0 == 131072, "131072 bytes read", after_io)
expect(value(after_io, "nbdqcow_request_duration_seconds_count", command="write") >= len(sizes), "write latencies recorded", after_io)
expect(value(after_io, "nbdqcow_dirty_bytes") == written, f"{written} bytes unflushed", after_io)
expect(value(after_io, "nbdqcow_dirty_age_seconds") >= 0.3, "oldest unflushed change at least 0.3 s old", after_io)
expect(value(after_io, "nbdqcow_flushes_total") == flushes0, "no flush yet (max dirty age is off)", after_io)

h.flush()
after_flush = settle("nbdqcow_requests_total", flushreq0 + 1, command="flush")
expect(value(after_flush, "nbdqcow_requests_total", command="flush") - flushreq0 == 1, "1 FLUSH request counted", after_flush)
expect(value(after_flush, "nbdqcow_flushes_total") - flushes0 >= 1, "a durable flush counted", after_flush)
expect(value(after_flush, "nbdqcow_flush_duration_seconds_count") - flushes0 >= 1, "its duration recorded", after_flush)
expect(value(after_flush, "nbdqcow_dirty_bytes") == 0, "nothing unflushed after FLUSH", after_flush)
expect(value(after_flush, "nbdqcow_dirty_age_seconds") == 0, "no loss window after FLUSH", after_flush)

# A read past the end: EINVAL, counted by errno; the connection lives on (libnbd checks bounds itself unless told not to).
h.set_strict_mode(0)
try:
    h.pread(4096, h.get_size())
    sys.exit("a read past the end succeeded")
except nbd.Error:
    pass
after_error = settle("nbdqcow_request_errors_total", einval0 + 1, errno="EINVAL")
expect(value(after_error, "nbdqcow_request_errors_total", errno="EINVAL") - einval0 == 1, "1 EINVAL counted", after_error)
expect(value(after_error, "nbdqcow_connections_open", server_wide=True) >= 1, "this connection counted as open", after_error)
h.shutdown()
print("ok")
