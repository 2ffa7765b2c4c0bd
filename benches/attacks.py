"""Memory of the module's server under the floods of issue 11, as RSS before / peak / after.

    build/venv/bin/python benches/attacks.py [--seconds 3]

Starts spec/support/server.lua (Lua 5.4 build in build/lua5.4, send_buffer 1 MiB, a static
directory holding a 4 MiB file) once per attack, samples its VmRSS every 20 ms, and prints
one line per attack. RSS is the process's, allocator included; the specs assert on what the
library counts (stats().max_queued_bytes) instead. Attacks:

  ping-flood     one client sends 125-byte pings as fast as it can and never reads
  echo-flood     one client sends 1 KiB messages to /echo as fast as it can, never reads
  static-stall   40 clients request the 4 MiB file and never read
"""
import argparse
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def frame(op, payload):
    head = bytes([0x80 | op])
    n = len(payload)
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
    return head + b"\0\0\0\0" + payload  # mask 0: the payload is its own masked form


def upgraded(port, path):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return s


def flood(port, path, unit, seconds):
    s = upgraded(port, path)
    s.settimeout(0.05)
    batch = unit * 64
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        try:
            sent += s.send(batch)
        except socket.timeout:
            pass
        except OSError:
            break
    return [s], sent


def static_stall(port, seconds):
    socks = []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    time.sleep(seconds)
    return socks, 40 * (4 << 20)


def run(name, attack, lua_root, static_dir, seconds):
    env = dict(os.environ, LUA_CPATH=f"{lua_root}/?.so;;")
    server = subprocess.Popen(["lua5.4", "spec/support/server.lua", f"static={static_dir}", "send_buffer=1048576",
                               "send_timeout=30"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        port = int(re.search(r":(\d+)$", server.stdout.readline().strip()).group(1))
        before = rss_kib(server.pid)
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(server.pid))
                time.sleep(0.02)
        t = threading.Thread(target=sample)
        t.start()
        socks, sent = attack(port, seconds)
        during = rss_kib(server.pid)
        for s in socks:
            s.close()
        time.sleep(2)
        done.set()
        t.join()
        after = rss_kib(server.pid)
        print(f"{name:13} sent {sent / 2**20:8.1f} MiB   RSS KiB: before {before:7d}  at end {during:7d}  "
              f"peak {peak[0]:7d}  2 s after {after:7d}", flush=True)
    finally:
        server.terminate()
        server.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--lua-root", default="build/lua5.4")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as static_dir:
        with open(os.path.join(static_dir, "big.bin"), "wb") as f:
            f.write(os.urandom(4 << 20))
        run("ping-flood", lambda p, s: flood(p, "/echo", frame(0x9, b"p" * 125), s), args.lua_root, static_dir, args.seconds)
        run("echo-flood", lambda p, s: flood(p, "/echo", frame(0x2, b"m" * 1024), s), args.lua_root, static_dir, args.seconds)
        run("static-stall", static_stall, args.lua_root, static_dir, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
