#!/usr/bin/env python3
"""Records one NBD connection: listens on a Unix socket, forwards to the server's socket, and writes what the
client sent to CLIENT_OUT and what the server sent to SERVER_OUT. Serves connections until killed (bounded by
the caller); every connection's bytes are appended."""
import os, socket, sys, threading

listen_path, server_path, client_out, server_out = sys.argv[1:5]
if os.path.exists(listen_path):
    os.unlink(listen_path)
lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lsock.bind(listen_path)
lsock.listen(4)

def pump(src, dst, out):
    with open(out, "ab") as f:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            f.write(data)
            f.flush()
            try:
                dst.sendall(data)
            except OSError:
                return

while True:
    client, _ = lsock.accept()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.connect(server_path)
    a = threading.Thread(target=pump, args=(client, server, client_out), daemon=True)
    b = threading.Thread(target=pump, args=(server, client, server_out), daemon=True)
    a.start(); b.start()
