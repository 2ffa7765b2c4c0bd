"""Independent client for the specs: Python's `websockets` library.

    py_client.py echo PORT       payload round trips against /echo, one line per check
    py_client.py chat PORT       two clients on /chat, one sends, both must receive
    py_client.py close PORT      normal close handshake, prints the close codes seen
    py_client.py tls PORT CERT   wss echo against a server whose certificate is CERT
    py_client.py idle PORT SECS  stays connected SECS seconds without sending (answering pings)
    py_client.py deflate PORT    permessage-deflate round trips against /echo: the default
                                 offer, no context takeover, 9-bit windows
    py_client.py flow PORT N     N messages of 1 KiB to /echo, each echo awaited, then a
                                 normal close
Prints "ok <what>" or "FAIL <what>: <detail>"; the spec asserts on those lines.
"""
import asyncio
import sys

from websockets.asyncio.client import connect


def check(what, cond, detail=""):
    print(("ok " if cond else "FAIL ") + what + ("" if cond else ": " + detail), flush=True)


async def echo(port):
    url = f"ws://127.0.0.1:{port}/echo"
    async with connect(url, max_size=None) as ws:
        cases = [("text", "hello"), ("text-utf8", "κόσμε ünïcode ✓"), ("binary-nul", b"\x00\x01\x00\xff")]
        for n in [0, 125, 126, 65535, 65536, 8 << 20]:
            cases.append((f"binary-{n}", bytes(i % 251 for i in range(n))))
            cases.append((f"text-{n}", "a" * n))
        for name, payload in cases:
            await ws.send(payload)
            got = await ws.recv()
            check(name, got == payload and type(got) is type(payload), f"got {type(got).__name__} of {len(got)}")
        await ws.send(["frag", "men", "ted"])
        check("fragmented-text", await ws.recv() == "fragmented")
        await ws.send([b"\x01", b"\x02", b""])
        check("fragmented-binary", await ws.recv() == b"\x01\x02")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        check("ping-pong", True)


async def chat(port):
    url = f"ws://127.0.0.1:{port}/chat"
    async def until(ws, wanted):
        """Reads (bounded) until `wanted` comes; what came last."""
        got = None
        while got != wanted:
            got = await asyncio.wait_for(ws.recv(), 5)
        return got

    async with connect(url) as a, connect(url) as b:
        # each member hears itself once it is in the room: no sleep for the joins
        await a.send("a here")
        await until(a, "a here")
        await b.send("b here")
        await until(b, "b here")
        await a.send("hello room")
        got_a = await until(a, "hello room")
        got_b = await until(b, "hello room")
        check("broadcast-to-sender", got_a == "hello room", got_a)
        check("broadcast-to-other", got_b == "hello room", got_b)


async def close(port):
    ws = await connect(f"ws://127.0.0.1:{port}/echo")
    await ws.close(code=4000, reason="done")
    check("close-code-echoed", ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 4000, repr(ws.protocol.close_rcvd))


async def tls(port, cert):
    import ssl
    ctx = ssl.create_default_context(cafile=cert)
    async with connect(f"wss://127.0.0.1:{port}/echo", ssl=ctx) as ws:
        await ws.send("over tls")
        check("tls-echo", await ws.recv() == "over tls")


async def deflate(port):
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    variants = {
        "default": {},
        "no-context-takeover": {"compression": None, "extensions": [ClientPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True)]},
        "9-bit-windows": {"compression": None, "extensions": [ClientPerMessageDeflateFactory(
            server_max_window_bits=9, client_max_window_bits=9)]},
    }
    row = '{"user":"ada","room":"lobby","text":"hello, hello"},'
    payloads = [row * n for n in (1, 40, 4000)] + ["κόσμε ✓ " * 3000, bytes(i * 7 % 256 for i in range(100000))]
    for name, kwargs in variants.items():
        async with connect(f"ws://127.0.0.1:{port}/echo", max_size=None, **kwargs) as ws:
            agreed = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            check(f"{name}-agreed", agreed.startswith("permessage-deflate"), agreed)
            for payload in payloads * 2:
                await ws.send(payload)
                got = await ws.recv()
                check(f"{name}-{type(payload).__name__}-{len(payload)}", got == payload, f"got {len(got)}")


async def flow(port, n):
    payload, echoed = "f" * 1024, 0
    async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
        for _ in range(int(n)):
            await ws.send(payload)
            echoed += await ws.recv() == payload
        await ws.close()
        check(f"flow-{n}-echoed", echoed == int(n), f"{echoed} echoed")
        check("flow-closed-1000", ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000,
              repr(ws.protocol.close_rcvd))


async def main():
    cmd, port, rest = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    await {"echo": echo, "chat": chat, "close": close, "tls": tls, "deflate": deflate, "flow": flow}[cmd](port, *rest)


asyncio.run(main())
