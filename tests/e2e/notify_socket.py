#!/usr/bin/env python3
"""A stand-in for systemd's notification socket (sd_notify(3)), for tests/e2e/systemd.sh.

notify_socket.py SOCKET OUT: bind a Unix datagram socket at SOCKET and append one line per
datagram to OUT: "pid=<sender's pid> <the datagram's lines joined by '|'>". The sender's pid
comes from the kernel (SO_PASSCRED), not from the datagram. Writes "bound" first, so that a
test can wait for the socket before it starts a server. Runs until killed."""
import os
import socket
import struct
import sys

path, out = sys.argv[1:3]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
sock.bind(path)
ucred = struct.calcsize("3i")
with open(out, "a", buffering=1) as f:
    f.write("bound pid=%d\n" % os.getpid())
    while True:
        data, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(ucred))
        pid = "?"
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", value[:ucred])[0]
        text = data.decode("utf-8", "backslashreplace").strip("\n").replace("\n", "|")
        f.write("pid=%s %s\n" % (pid, text))
