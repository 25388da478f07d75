"""Connector of the VM test's guestfwd rule: qemu runs one per guest connection with that
connection as stdin/stdout; this relays it to the NBD server at 127.0.0.1:PORT.

TCP_NODELAY on the server side matters: without it (busybox nc) small request headers wait for
delayed ACKs, about 40 ms per request. Exits when either side closes.
"""
import os
import select
import socket
import sys


def main() -> None:
    port = int(sys.argv[1])
    server = socket.create_connection(("127.0.0.1", port), timeout=30)
    server.settimeout(None)
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    guest_in, guest_out = 0, 1
    sfd = server.fileno()
    while True:
        ready, _, _ = select.select([guest_in, sfd], [], [])
        if guest_in in ready:
            data = os.read(guest_in, 1 << 20)
            if not data:
                break
            server.sendall(data)
        if sfd in ready:
            data = server.recv(1 << 20)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(guest_out, view):]
    server.close()


if __name__ == "__main__":
    main()
