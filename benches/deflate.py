"""The compression benchmark: permessage-deflate echo servers side by side in one run —
this module (examples/server.lua, compression on by default), Node's ws 8
(perMessageDeflate on) and Python's websockets (compression on) — each pinned to CPU 0,
this load generator to CPU 1.

Two measurements per server:

* echo cells: C connections each keep W compressed messages of JSON-like text in flight
  for a few seconds (1 KiB and 64 KiB). The load generator offers
  `client_no_context_takeover`, so each request is compressed once, ahead of time; the
  server inflates every request and compresses every reply (with its context kept).
  Reported: the server's CPU per echoed message (from /proc), messages/s, and bytes on
  the wire per message each way (frame payloads as sent).
* memory: N connections that agreed permessage-deflate, idle, then after one 2 KiB
  message each way on each (the compressor and inflater then exist): the server's RSS
  growth per connection.

    python benches/deflate.py [--seconds S] [--servers lua,node,py] [--out FILE]
    (run by benches/run.sh)

Writes one JSON line per measurement to FILE (benches/results/deflate.jsonl) and prints
a Markdown table.
"""
import argparse
import asyncio
import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAIL = b"\x00\x00\xff\xff"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def json_text(n):
    """About n bytes of JSON chat messages: repetitive, as real traffic is."""
    rows, i = [], 0
    while sum(len(r) + 1 for r in rows) < n:
        rows.append(json.dumps({"id": i, "user": f"user{i % 17}", "room": "lobby",
                                "text": f"message number {i} says hello to room lobby", "ts": 1700000000 + i * 7}))
        i += 1
    return ("[" + ",".join(rows) + "]")[:n].encode()


def server_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_rss_kib(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def frame(op, payload, rsv1):
    """A client frame with a zero mask key (valid, and free to apply)."""
    head = bytes([0x80 | (0x40 if rsv1 else 0) | op])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\x00\x00\x00\x00" + payload


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    return b0, await reader.readexactly(n)


async def open_deflate(port):
    """Opens a connection offering permessage-deflate; returns reader, writer, the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits\r\n\r\n").encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    if " 101 " not in head.split("\r\n")[0]:
        raise RuntimeError(f"no upgrade: {head!r}")
    agreed = re.search(r"(?im)^sec-websocket-extensions:\s*(.*?)\s*$", head)
    if not agreed or not agreed.group(1).startswith("permessage-deflate"):
        raise RuntimeError(f"permessage-deflate not agreed: {head!r}")
    return reader, writer, agreed.group(1)


def compressed_request(payload, agreed):
    bits = re.search(r"client_max_window_bits=(\d+)", agreed)
    window = max(9, int(bits.group(1))) if bits else 15
    z = zlib.compressobj(6, zlib.DEFLATED, -window)
    data = z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4] if data.endswith(TAIL) else data


async def echo_cell(port, pid, size, conns, window, seconds):
    payload = json_text(size)
    links = [await open_deflate(port) for _ in range(conns)]
    compressed = compressed_request(payload, links[0][2])
    request = frame(0x1, compressed, True)
    counts = {"messages": 0, "reply_bytes": 0}
    stop_at = [0.0]

    async def run(reader, writer, first):
        inflater = zlib.decompressobj(-15)
        writer.write(request * window)
        outstanding = window
        while outstanding:
            b0, body = await read_frame(reader)
            if first:  # the first reply is checked whole
                data = inflater.decompress(body + TAIL) if b0 & 0x40 else body
                if data != payload:
                    raise RuntimeError(f"the echo differs: {len(data)} bytes")
                first = False
            counts["messages"] += 1
            counts["reply_bytes"] += len(body)
            if time.monotonic() < stop_at[0]:
                writer.write(request)
            else:
                outstanding -= 1

    stop_at[0] = time.monotonic() + 0.5  # warm-up
    await asyncio.gather(*(run(r, w, True) for r, w, _ in links))
    counts.update(messages=0, reply_bytes=0)
    cpu0, t0 = server_cpu_seconds(pid), time.monotonic()
    stop_at[0] = t0 + seconds
    await asyncio.gather(*(run(r, w, False) for r, w, _ in links))
    elapsed, cpu = time.monotonic() - t0, server_cpu_seconds(pid) - cpu0
    for _, w, _ in links:
        w.close()
    n = counts["messages"]
    return {"size": size, "conns": conns, "window": window, "messages": n, "msgs_per_s": round(n / elapsed, 1),
            "server_cpu_us_per_msg": round(cpu * 1e6 / n, 2), "wire_bytes_in": len(compressed),
            "wire_bytes_out": round(counts["reply_bytes"] / n, 1), "agreed": links[0][2]}


async def memory(port, pid, count):
    before = server_rss_kib(pid)
    links = [await open_deflate(port) for _ in range(count)]
    await asyncio.sleep(0.5)
    idle = server_rss_kib(pid)
    payload = json_text(2048)
    request = frame(0x1, compressed_request(payload, links[0][2]), True)
    for _, w, _ in links:
        w.write(request)
    for r, _, _ in links:
        await read_frame(r)
    await asyncio.sleep(0.5)
    used = server_rss_kib(pid)
    for _, w, _ in links:
        w.close()
    return {"count": count, "kib_per_conn_idle": round((idle - before) / count, 1),
            "kib_per_conn_after_one_each_way": round((used - before) / count, 1)}


def start(name):
    pin = ["taskset", "-c", "0"]
    env = dict(os.environ)
    cmd = {
        "lua": ["lua5.4", "examples/server.lua", "0"],
        "node": ["node", "benches/peers/ws_echo.js", "deflate"],
        "py": ["build/venv/bin/python", "benches/peers/websockets_echo.py", "deflate"],
    }[name]
    env["LUA_CPATH"] = "build/lua5.4/?.so;;"
    env["NODE_PATH"] = "build/node/node_modules"
    p = subprocess.Popen(pin + cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.search(r":(\d+)$", line.strip())
    if not m:
        p.kill()
        raise RuntimeError(f"{name} did not start: {line!r}")
    return p, int(m.group(1))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--servers", default="lua,node,py")
    ap.add_argument("--connections", type=int, default=1000, help="for the memory measurement")
    ap.add_argument("--out", default=os.path.join(ROOT, "benches/results/deflate.jsonl"))
    args = ap.parse_args()
    out = open(args.out, "w")
    try:
        os.sched_setaffinity(0, {1})
    except OSError:
        pass
    results = []
    for name in args.servers.split(","):
        for cell in [(1024, 16, 8), (65536, 8, 2)]:
            p, port = start(name)
            try:
                r = {"mode": "deflate_echo", "label": name, **await echo_cell(port, p.pid, *cell, args.seconds)}
            finally:
                p.kill()
                p.wait()
            print(json.dumps(r), file=out, flush=True)
            print(f"{name} {r['size']} B: {r['server_cpu_us_per_msg']} µs/msg", file=sys.stderr)
            results.append(r)
        p, port = start(name)
        try:
            r = {"mode": "deflate_memory", "label": name, **await memory(port, p.pid, args.connections)}
        finally:
            p.kill()
            p.wait()
        print(json.dumps(r), file=out, flush=True)
        results.append(r)
    out.close()
    print_table(results, args.servers.split(","))


def print_table(results, names):
    echo = {(r["label"], r["size"]): r for r in results if r["mode"] == "deflate_echo"}
    mem = {r["label"]: r for r in results if r["mode"] == "deflate_memory"}
    print()
    print("| permessage-deflate | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for size, label in [(1024, "1 KiB"), (65536, "64 KiB")]:
        cells = [echo.get((n, size)) for n in names]
        print(f"| {label} JSON: server CPU µs/msg | " + " | ".join(f"{c['server_cpu_us_per_msg']}" if c else "" for c in cells) + " |")
        print(f"| {label} JSON: msgs/s | " + " | ".join(f"{c['msgs_per_s']:,.0f}" if c else "" for c in cells) + " |")
        print(f"| {label} JSON: bytes on the wire in / out | " + " | ".join(
            f"{c['wire_bytes_in']} / {c['wire_bytes_out']:.0f}" if c else "" for c in cells) + " |")
    print("| idle RSS KiB per compressed connection | " + " | ".join(
        f"{mem[n]['kib_per_conn_idle']}" if n in mem else "" for n in names) + " |")
    print("| RSS KiB per connection after one message each way | " + " | ".join(
        f"{mem[n]['kib_per_conn_after_one_each_way']}" if n in mem else "" for n in names) + " |")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
