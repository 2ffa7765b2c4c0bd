"""The conformance table: the wire cases both runtimes must pass alike, run against a server
serving spec/support/conformance_app — the standalone server, the evluaserver stand-in, or
the real evluaserver — with Python's websockets and raw sockets as the client.

    conformance_cases.py --port P --log HANDLER_LOG [--timeout S] [--cases a,b] [--hooks all|message]
    conformance_cases.py --list

--hooks message runs the cases against handler classes that define handle_message only
(spec/support/conformance_app/ws_plain), as every handler written for the original module
does: the wire checks are the same, the checks of what the other hooks logged are left out
(and the cases that are about a hook, handle_open's greeting and the rooms subscribed in
handle_open, keep their /ws_spec handlers).

Prints one line "PASS|FAIL <case>: <detail>" per case, then "N passed, N failed"; exits 1
on any failure. The CONNECT cases start their own websockets echo server on 127.0.0.1.
"""
import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import time
import zlib

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class Failed(Exception):
    pass


def check(cond, detail):
    if not cond:
        raise Failed(detail)


def log_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


async def logged(path, wanted, timeout):
    """Waits (bounded) until a line of the handler log contains `wanted`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(wanted in line for line in log_lines(path)):
            return True
        await asyncio.sleep(0.05)
    return False


# --- raw HTTP and frames, for what a well-behaved client library will not send ---------

def raw_request(port, path, headers, timeout):
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in header_lines:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    return s, int(status_line.split()[1]), hdrs


def upgraded(port, path, timeout, extensions=None):
    headers = {"Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13"}
    if extensions:
        headers["Sec-WebSocket-Extensions"] = extensions
    s, status, hdrs = raw_request(port, path, headers, timeout)
    check(status == 101 and hdrs.get("sec-websocket-accept") == ACCEPT, f"handshake {status} {hdrs}")
    if extensions:
        agreed = hdrs.get("sec-websocket-extensions", "")
        check(agreed.startswith("permessage-deflate"), f"permessage-deflate not agreed: {agreed!r}")
    return s


def frame(op, payload=b"", fin=True, mask=True, length=None, rsv=0):
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | op])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = b"\x11\x22\x33\x44"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise Failed(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def read_frame(s):
    b0, b1 = read_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", read_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", read_exact(s, 8))[0]
    masked = bool(b1 & 0x80)
    key = read_exact(s, 4) if masked else None
    payload = read_exact(s, n)
    return {"fin": bool(b0 & 0x80), "op": b0 & 0x0F, "rsv": b0 & 0x70, "masked": masked, "payload": payload}


def read_close_code(s):
    f = read_frame(s)
    check(f["op"] == 8 and len(f["payload"]) >= 2, f"expected a close frame, got {f}")
    return struct.unpack(">H", f["payload"][:2])[0], f["payload"][2:].decode()


# --- the cases ---------------------------------------------------------------------------

def rejection(path, headers, message):
    async def case(ctx):
        base = {"Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13"}
        for k, v in headers.items():
            if v is None:
                base.pop(k)
            else:
                base[k] = v
        s, status, hdrs = raw_request(ctx.port, path, base, ctx.timeout)
        s.close()
        want = json.dumps({"error_message": message}, separators=(",", ":"))
        check(status == 400 and hdrs.get("x-msg") == want, f"{status} X-msg {hdrs.get('x-msg')}")
        return f"400 {want}"
    return case


async def echo_of(ctx, payload):
    async with connect(ctx.url("/ws_spec/echo"), max_size=None) as ws:
        await ws.send(payload)
        got = await asyncio.wait_for(ws.recv(), ctx.timeout)
        check(got == payload and type(got) is type(payload), f"sent {payload[:40]!r} got {got[:40]!r}")
        return f"echoed {len(payload)} {'bytes' if isinstance(payload, bytes) else 'chars'}"


async def case_text(ctx):
    return await echo_of(ctx, "héllo wörld")


async def case_binary_with_nul(ctx):
    return await echo_of(ctx, b"a\x00b\x00\x00c")


async def case_empty(ctx):
    return await echo_of(ctx, "")


async def case_100kib(ctx):
    return await echo_of(ctx, "x" * (100 << 10))


async def case_fragmented(ctx):
    async with connect(ctx.url("/ws_spec/echo")) as ws:
        await ws.send(["frag-1 ", "frag-2 ", "frag-3"])
        got = await asyncio.wait_for(ws.recv(), ctx.timeout)
        check(got == "frag-1 frag-2 frag-3", f"got {got!r}")
        return f"got {got!r}"


async def case_ping(ctx):
    async with connect(ctx.url("/ws_spec/echo")) as ws:
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, ctx.timeout)
        await ws.send("after ping")
        got = await asyncio.wait_for(ws.recv(), ctx.timeout)
        check(got == "after ping", f"got {got!r}")
        await ctx.hook_logged("ping are you there", "handle_ping not called")
        return "pong, then the echo" + ctx.hooks_said("handle_ping called")


async def case_client_close(ctx):
    ws = await connect(ctx.url("/ws_spec/echo"))
    await ws.close(4321, "client done")
    check(ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 4321, f"close_rcvd {ws.protocol.close_rcvd}")
    await ctx.hook_logged("close 4321 client done", "handle_close not called with 4321")
    return "answered 4321" + ctx.hooks_said("handle_close saw 4321 'client done'")


async def closed_by_server(ws, code, timeout):
    """Waits for the server's close frame (no message before it) and checks its code."""
    try:
        got = await asyncio.wait_for(ws.recv(), timeout)
        raise Failed(f"a message instead of the close: {got!r}")
    except ConnectionClosed:
        pass
    rcvd = ws.protocol.close_rcvd
    check(rcvd is not None and rcvd.code == code, f"close_rcvd {rcvd}, wanted {code}")


async def case_server_close(ctx):
    async with connect(ctx.url("/ws_spec/echo")) as ws:
        await ws.send("CLOSE 4000")
        await closed_by_server(ws, 4000, ctx.timeout)
        await ctx.hook_logged("close 4000", "handle_close not called after our close")
        return "close 4000 'bye' from the handler; the handshake completed" + ctx.hooks_said("handle_close called")


async def case_two_concurrent(ctx):
    async with connect(ctx.url("/ws_spec/echo")) as a, connect(ctx.url("/ws_spec/echo")) as b:
        got = []
        for ws, text in ((a, "one"), (b, "two"), (a, "one-b"), (b, "two-b")):
            await ws.send(text)
            got.append(await asyncio.wait_for(ws.recv(), ctx.timeout))
        check(got == ["one", "two", "one-b", "two-b"], f"got {got}")
        return f"got {got}"


async def case_handle_open(ctx):
    # (Under evluaserver what handle_open sends goes out with the first dispatch of the
    # socket, so the client speaks first here; standalone it would come at once.)
    async with connect(ctx.url("/ws_spec/greeter")) as ws:
        await ws.send("hi")
        first = await asyncio.wait_for(ws.recv(), ctx.timeout)
        check(first == "welcome /ws_spec/greeter", f"first message {first!r}")
        got = await asyncio.wait_for(ws.recv(), ctx.timeout)
        check(got == "you said hi", f"got {got!r}")
        return "handle_open's greeting came before the first answer"


async def case_handler_error(ctx):
    async with connect(ctx.url("/ws_spec/boom")) as ws:
        await ws.send("anything")
        await closed_by_server(ws, 1011, ctx.timeout)
    await ctx.hook_logged("boom close 1011", "handle_close not called after the error")
    await echo_of(ctx, "still serving")
    return "1011 'handler error', the server still serves" + ctx.hooks_said("handle_close called")


async def case_raw_frames(ctx):
    s = upgraded(ctx.port, ctx.path("/ws_spec/echo"), ctx.timeout)
    s.settimeout(ctx.timeout)
    s.sendall(frame(0x9, b"raw ping"))
    pong = read_frame(s)
    check(pong == {"fin": True, "op": 0xA, "rsv": 0, "masked": False, "payload": b"raw ping"}, f"pong {pong}")
    s.sendall(frame(0x1, b"raw"))
    f = read_frame(s)
    check(f == {"fin": True, "op": 0x1, "rsv": 0, "masked": False, "payload": b"raw"}, f"echo {f}")
    s.sendall(frame(0x8, struct.pack(">H", 1000)))
    code, _ = read_close_code(s)
    check(code == 1000, f"close answer {code}")
    check(s.recv(1) == b"", "the server closes TCP after the closing handshake")
    s.close()
    return "unmasked frames with FIN; pong echoes the ping; close answered, then TCP closed"


def violation(payload_frames, code, extensions=None):
    """`payload_frames`: the bytes to send, or a function making them (when costly)."""
    async def case(ctx):
        s = upgraded(ctx.port, ctx.path("/ws_spec/echo"), ctx.timeout, extensions)
        s.settimeout(ctx.timeout)
        s.sendall(payload_frames() if callable(payload_frames) else payload_frames)
        got, reason = read_close_code(s)
        s.close()
        check(got == code, f"closed with {got} {reason!r}")
        await ctx.hook_logged(f"close 1006 {reason}", "handle_close not called with 1006")
        return f"closed with {got} ({reason})" + ctx.hooks_said("handle_close saw 1006")
    return case


def deflated(data):
    """`data` as one permessage-deflate message payload (tail removed)."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


async def case_deflate(ctx):
    async with connect(ctx.url("/ws_spec/echo"), max_size=None) as ws:
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        check(agreed.startswith("permessage-deflate"), f"agreed {agreed!r}")
        await ws.send("COMPRESSED " + "x" * 5000)
        got = await asyncio.wait_for(ws.recv(), ctx.timeout)
        check(got == "COMPRESSED true 5011", f"got {got!r}")
        text = '{"user":"ada","text":"hello"},' * 3000
        await ws.send(text)
        check(await asyncio.wait_for(ws.recv(), ctx.timeout) == text, "the 90 KB echo differs")
    s = upgraded(ctx.port, ctx.path("/ws_spec/echo"), ctx.timeout, "permessage-deflate")
    s.settimeout(ctx.timeout)
    s.sendall(frame(0x1, b"x" * 3000))
    f = read_frame(s)
    check(f["rsv"] == 0x40 and len(f["payload"]) < 100, f"3000 bytes echoed as rsv {f['rsv']:#x}, {len(f['payload'])} bytes")
    s.close()
    return f"agreed {agreed!r}; msg.compressed seen; the echo went out compressed ({len(f['payload'])} bytes)"


async def case_topics(ctx):
    url = lambda room: ctx.url(f"/ws_spec/room?room={room}")
    async with connect(url("r1")) as a, connect(url("r1")) as b, connect(url("r2")) as c:
        await a.send("hello r1")
        got_a = await asyncio.wait_for(a.recv(), ctx.timeout)
        got_b = await asyncio.wait_for(b.recv(), ctx.timeout)
        check(got_a == "hello r1" and got_b == "hello r1", f"A got {got_a!r}, B got {got_b!r}")
        await b.send("COUNT")
        counts = [await asyncio.wait_for(b.recv(), ctx.timeout) for _ in range(2)]
        check(sorted(counts) == ["COUNT", "RECIPIENTS 2"], f"B got {counts}")
        check(await asyncio.wait_for(a.recv(), ctx.timeout) == "COUNT", "A did not get B's message")
        try:
            stray = await asyncio.wait_for(c.recv(), 0.3)
            raise Failed(f"room r2 got {stray!r}")
        except asyncio.TimeoutError:
            pass
    return "both members of r1 got each message (sender included), r2 nothing"


async def case_client_recv_frame(ctx):
    async with connect(ctx.url("/ws_spec/echo")) as ws:
        await ws.send(f"CONNECT {ctx.echo_port}")
        got = await asyncio.wait_for(ws.recv(), ctx.timeout)
        check(got == "CLIENT-OK hello from the handler", f"got {got!r}")
        return got


async def case_client_msg_handler(ctx):
    async with connect(ctx.url("/ws_spec/echo")) as ws:
        await ws.send(f"CONNECTCB {ctx.echo_port}")
        got = await asyncio.wait_for(ws.recv(), ctx.timeout)
        check(got == "CLIENT-SENT", f"got {got!r}")
        check(await logged(ctx.log, "client_cb open /", ctx.timeout), "the msg_handler's handle_open did not run")
        check(await logged(ctx.log, "client_cb got hello from the handler", ctx.timeout),
              "the msg_handler did not get the answer")
        return "the answer reached ws_spec.client_cb through ws.handle_msg"


async def case_pool_across_connections(ctx):
    async with connect(ctx.url("/ws_spec/echo")) as a, connect(ctx.url("/ws_spec/echo")) as b:
        await a.send("POOLADD room")
        check(await asyncio.wait_for(a.recv(), ctx.timeout) == "POOLED", "POOLADD")
        await b.send("POOLSEND room hello from B")
        got_b = await asyncio.wait_for(b.recv(), ctx.timeout)
        got_a = await asyncio.wait_for(a.recv(), ctx.timeout)
        check(got_b == "SENT" and got_a == "hello from B", f"B got {got_b!r}, A got {got_a!r}")
    # A has gone: the pool hands out nothing closed.
    async with connect(ctx.url("/ws_spec/echo")) as c:
        deadline = time.monotonic() + ctx.timeout
        while True:
            await c.send("POOLSEND room anyone")
            got = await asyncio.wait_for(c.recv(), ctx.timeout)
            if got == "NOPOOL" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        check(got == "NOPOOL", f"after A closed: {got!r}")
    return "pooled on A, found and used from B; gone once A closed"


async def case_abrupt_drop(ctx):
    s = upgraded(ctx.port, ctx.path("/ws_spec/echo"), ctx.timeout)
    s.settimeout(ctx.timeout)
    s.sendall(frame(0x1, b"then gone"))
    check(read_frame(s)["payload"] == b"then gone", "echo before the drop")
    s.close()  # TCP closed without a close frame
    # (evluaserver closes the socket without a dispatch; the module notices it, within a
    # second, in the next dispatch of any connection: the server is kept busy meanwhile.)
    if not ctx.all_hooks:
        left = await connections_left(ctx)
        check(left == "1", f"connections held by the module after the drop: {left} (the asking one included)")
        return "the dropped connection was ended; the server still serves"
    wanted = "close 1006 connection dropped without a close frame"
    deadline = time.monotonic() + ctx.timeout
    while not await logged(ctx.log, wanted, 0.1) and time.monotonic() < deadline:
        await echo_of(ctx, "still serving")
    check(await logged(ctx.log, wanted, 0.1), "handle_close not called with 1006")
    return "handle_close saw 1006; the server still serves"


async def connections_left(ctx):
    """The module's count of connections (LINKS), asked on new connections until only the
    asking one is left or ctx.timeout has passed (each ask is a dispatch: under evluaserver
    that is when the registry notices sockets closed without one)."""
    deadline = time.monotonic() + ctx.timeout
    while True:
        async with connect(ctx.url("/ws_spec/echo")) as ws:
            await ws.send("LINKS")
            got = await asyncio.wait_for(ws.recv(), ctx.timeout)
        if got == "1" or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.2)


async def case_nothing_left(ctx):
    got = await connections_left(ctx)
    check(got == "1", f"connections held by the module: {got} (this one included)")
    return "after every case the module holds only the asking connection"


def silent_listeners(n):
    """n listeners join a room and never send; a publisher joins and speaks at once: each
    listener must have the message within 2 s of it (a chat user who only listens)."""
    async def case(ctx):
        room = f"/ws_spec/room?room=silent{n}_{os.getpid()}_{time.monotonic_ns()}"
        listeners = [await connect(ctx.url(room)) for _ in range(n)]
        try:
            async with connect(ctx.url(room)) as speaker:
                sent = time.monotonic()
                await speaker.send("anyone listening?")
                check(await asyncio.wait_for(speaker.recv(), ctx.timeout) == "anyone listening?", "the speaker's own copy")
                got = await asyncio.wait_for(asyncio.gather(*(ws.recv() for ws in listeners)), 2.0)
                took = time.monotonic() - sent
                check(all(g == "anyone listening?" for g in got), f"listeners got {set(got)}")
                return f"{n} silent listener(s) had the publish within {took * 1000:.0f} ms"
        except asyncio.TimeoutError:
            raise Failed(f"not every one of {n} silent listeners had the publish within 2 s")
        finally:
            await asyncio.gather(*(ws.close() for ws in listeners))
    return case


CASES = [
    ("handshake_no_version", "refuses a handshake without Sec-WebSocket-Version (400, X-msg)",
     rejection("/ws_spec/echo", {"Sec-WebSocket-Version": None},
                                       "Missing Sec-WebSocket-Version in handshake request")),
    ("handshake_version_8", "refuses version 8 (400, X-msg)",
     rejection("/ws_spec/echo", {"Sec-WebSocket-Version": "8"},
                                      "Unsupported WebSocket version requested")),
    ("handshake_no_key", "refuses a handshake without Sec-WebSocket-Key (400, X-msg)",
     rejection("/ws_spec/echo", {"Sec-WebSocket-Key": None},
                                   "Missing Sec-WebSocket-Key in handshake request")),
    ("handshake_path_root", "refuses the path / (400, X-msg)",
     rejection("/", {}, "Path empty: Unable to deduce message handler")),
    ("handshake_missing_handler", "refuses a path naming no handler module (400, X-msg)",
     rejection("/ws_spec/nope", {}, "WebSocket handler module 'ws_spec.nope' not found")),
    ("handshake_init_refuses", "answers 400 with init's message when init refuses",
     rejection("/ws_spec/refuse", {}, "refused by init")),
    ("text", "echoes a text message",
     case_text),
    ("binary_with_NUL", "echoes a binary message with NUL bytes",
     case_binary_with_nul),
    ("empty", "echoes an empty message",
     case_empty),
    ("100KiB", "echoes a 100 KiB message",
     case_100kib),
    ("fragmented", "reassembles a fragmented message across dispatches",
     case_fragmented),
    ("ping", "answers a ping with its payload and calls handle_ping",
     case_ping),
    ("client_close", "answers the client's close with its code and calls handle_close",
     case_client_close),
    ("server_close", "completes a close started by the handler",
     case_server_close),
    ("two_concurrent", "serves two connections at once",
     case_two_concurrent),
    ("handle_open", "calls handle_open, whose greeting comes before any answer",
     case_handle_open),
    ("handler_error_1011", "closes with 1011 when a handler raises, calls handle_close, keeps serving",
     case_handler_error),
    ("raw_frames", "sends unmasked frames with FIN and closes TCP after the closing handshake",
     case_raw_frames),
    ("unmasked_client_frame_1002", "closes with 1002 on an unmasked client frame",
     violation(frame(0x1, b"x", mask=False), 1002)),
    ("oversized_1009", "closes with 1009 on a 2^40-byte frame header without reading it",
     violation(frame(0x2, b"", length=1 << 40), 1009)),
    ("invalid_utf8_1007", "closes with 1007 on invalid UTF-8",
     violation(frame(0x1, b"\xce\xba\xff"), 1007)),
    ("continuation_without_start_1002", "closes with 1002 on a continuation without a start",
     violation(frame(0x0, b"x"), 1002)),
    ("deflate", "agrees permessage-deflate, inflates (msg.compressed) and compresses large messages",
     case_deflate),
    ("deflate_bomb_1009", "closes with 1009 on a compressed message inflating past max_message_size (64 MiB of zeros)",
     violation(lambda: frame(0x2, deflated(bytes(64 << 20)), rsv=0x40), 1009, "permessage-deflate")),
    ("rsv1_continuation_1002", "closes with 1002 on RSV1 on a continuation frame",
     violation(frame(0x1, b"Hel", fin=False) + frame(0x0, b"lo", rsv=0x40), 1002, "permessage-deflate")),
    ("topics", "delivers a room's messages through topics to its members only, from any frame's Lua state",
     case_topics),
    ("silent_listener_1", "delivers a publish to a member that never spoke, within 2 s",
     silent_listeners(1)),
    ("silent_listeners_10", "delivers a publish to 10 members that never spoke, within 2 s",
     silent_listeners(10)),
    ("silent_listeners_100", "delivers a publish to 100 members that never spoke, within 2 s",
     silent_listeners(100)),
    ("client_recv_frame", "connects from a handler with ws.connect and reads the answer with ws_util.recv_frame",
     case_client_recv_frame),
    ("client_msg_handler", "delivers a client connection's messages to its msg_handler through ws.handle_msg",
     case_client_msg_handler),
    ("pool_across_connections", "finds a connection pooled while serving another one, and drops it once closed",
     case_pool_across_connections),
    ("abrupt_drop", "ends a connection dropped without a close frame (1006) and closes its socket",
     case_abrupt_drop),
    ("nothing_left", "holds no connection once its clients are gone",
     case_nothing_left),
]


class Context:
    # The /ws_spec handlers that have a handle_message-only twin in /ws_plain.
    PLAIN = {"/ws_spec/echo": "/ws_plain/echo", "/ws_spec/boom": "/ws_plain/boom"}

    def __init__(self, port, log, timeout, echo_port, all_hooks):
        self.port, self.log, self.timeout, self.echo_port = port, log, timeout, echo_port
        self.all_hooks = all_hooks

    def path(self, path):
        """The path of the handler a case talks to: with --hooks message, the twin that
        defines handle_message only."""
        return path if self.all_hooks else self.PLAIN.get(path, path)

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{self.path(path)}"

    async def hook_logged(self, wanted, failure):
        """Checks that a hook logged `wanted` (with --hooks message there is no such hook)."""
        if self.all_hooks:
            check(await logged(self.log, wanted, self.timeout), failure)

    def hooks_said(self, what):
        return f"; {what}" if self.all_hooks else " (handle_message-only class)"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--log")
    ap.add_argument("--timeout", type=float, default=5)
    ap.add_argument("--cases")
    ap.add_argument("--hooks", choices=("all", "message"), default="all",
                    help="handler classes defining every hook, or handle_message only")
    ap.add_argument("--list", action="store_true", help="print name<TAB>description of each case")
    args = ap.parse_args()
    if args.list:
        for name, description, _ in CASES:
            print(f"{name}\t{description}")
        return 0
    wanted = set(args.cases.split(",")) if args.cases else None

    async def echo(ws):
        async for m in ws:
            await ws.send(m)

    async with serve(echo, "127.0.0.1", 0) as echo_server:
        echo_port = echo_server.sockets[0].getsockname()[1]
        ctx = Context(args.port, args.log, args.timeout, echo_port, args.hooks == "all")
        passed = failed = 0
        for name, _, case in CASES:
            if wanted and name not in wanted:
                continue
            try:
                detail = await asyncio.wait_for(case(ctx), args.timeout * 4)
                print(f"PASS {name}: {detail}", flush=True)
                passed += 1
            except Exception as e:  # every failure is reported, the run goes on
                print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
                failed += 1
        print(f"{passed} passed, {failed} failed", flush=True)
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
