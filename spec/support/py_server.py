"""Independent servers for the client specs: Python's `websockets`, plus raw misbehaving ones.

    py_server.py echo          websockets echo server with test commands (below)
    py_server.py tls CERT KEY  the same over TLS
    py_server.py bad MODE      a raw TCP server that answers the handshake wrongly:
        no-connection | no-upgrade | no-accept | wrong-accept | status-xmsg | status | silent
    py_server.py bad deaf      a raw server that accepts, then never reads again
    py_server.py bad masked    a raw server that accepts, sends a MASKED text frame (servers
        must not mask), then prints the client frames like mute
    py_server.py bad mute      a raw server that accepts, then never answers: it prints
        "frame <opcode> [<close code>]" for each client frame it reads
    py_server.py bad masks     a raw server that accepts, reads 20 client frames and answers
        with one text message: "<masked bits> <distinct mask keys>", e.g. "11111111111111111111 20"

Prints "listening on ws://127.0.0.1:PORT" and serves until killed. Commands understood by
the echo server (text messages): "!frag" sends a text message in three fragments, "!close
CODE REASON" closes with that code, "!abort" drops the TCP connection, "!ping" pings the
client and reports "pong:<payload>" when the pong comes back, "!big N" sends N bytes.
"""
import asyncio
import ssl
import sys

from websockets.asyncio.server import serve
from websockets.frames import Frame, Opcode


async def handler(ws):
    async for msg in ws:
        if isinstance(msg, str) and msg.startswith("!"):
            cmd, _, arg = msg.partition(" ")
            if cmd == "!frag":
                await ws.send(["frag", "men", "ted"])
            elif cmd == "!close":
                code, _, reason = arg.partition(" ")
                await ws.close(int(code), reason)
            elif cmd == "!abort":
                ws.transport.abort()
                return
            elif cmd == "!ping":
                waiter = await ws.ping(b"srv")
                await waiter
                await ws.send("pong:srv")
            elif cmd == "!big":
                await ws.send(b"z" * int(arg))
            continue
        await ws.send(msg)


BAD = {
    "no-connection": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
    "no-upgrade": "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
    "no-accept": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "wrong-accept": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
    "status-xmsg": 'HTTP/1.1 400 Bad Request\r\nX-msg: {{"error_message":"nope"}}\r\nContent-Length: 0\r\n\r\n',
    "status": "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
}


async def bad_server(mode):
    import base64
    import hashlib

    async def on_client(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        if mode == "silent":
            await asyncio.sleep(3600)
            return
        key = ""
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("sec-websocket-key:"):
                key = line.split(":", 1)[1].strip()
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        if mode == "deaf":
            writer.write(BAD["no-accept"].replace("\r\n\r\n", f"\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            await writer.drain()
            await asyncio.sleep(3600)
            return
        if mode in ("mute", "masked"):
            writer.write(BAD["no-accept"].replace("\r\n\r\n", f"\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            if mode == "masked":
                mask = b"\x01\x02\x03\x04"
                writer.write(bytes([0x81, 0x80 | 2]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"hi")))
            while True:
                try:
                    b0, b1 = await reader.readexactly(2)
                except asyncio.IncompleteReadError:
                    return
                length = b1 & 0x7F
                if length == 126:
                    length = int.from_bytes(await reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await reader.readexactly(8), "big")
                mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(length)))
                code = f" {int.from_bytes(payload[:2], 'big')}" if (b0 & 0x0F) == 8 and len(payload) >= 2 else ""
                print(f"frame {b0 & 0x0F}{code}", flush=True)
        if mode == "masks":
            writer.write(BAD["no-accept"].replace("\r\n\r\n", f"\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            bits, keys = "", set()
            for _ in range(20):
                b0, b1 = await reader.readexactly(2)
                masked = b1 & 0x80
                length = b1 & 0x7F
                if length == 126:
                    length = int.from_bytes(await reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await reader.readexactly(8), "big")
                bits += "1" if masked else "0"
                if masked:
                    keys.add(await reader.readexactly(4))
                await reader.readexactly(length)
            report = f"{bits} {len(keys)}".encode()
            writer.write(bytes([0x81, len(report)]) + report)
            await writer.drain()
            await asyncio.sleep(1)
            writer.close()
            return
        writer.write(BAD[mode].format(accept=accept).encode())
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    print(f"listening on ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


async def main():
    mode = sys.argv[1]
    if mode == "bad":
        return await bad_server(sys.argv[2])
    ctx = None
    if mode == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    async with serve(handler, "127.0.0.1", 0, ssl=ctx, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
