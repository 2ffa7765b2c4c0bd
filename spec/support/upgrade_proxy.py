"""A TCP proxy on 127.0.0.1 that writes the value of the client's `Upgrade` header in lower
case and then relays bytes both ways unchanged (end of stream included, each direction on
its own).

    upgrade_proxy.py TARGET_PORT

Prints "listening on ws://127.0.0.1:PORT". Why: service_utils' REST controller, which
evluaserver runs before the module sees a request, compares `Upgrade` with "websocket"
case-sensitively (controller.lua:724) and refuses the "WebSocket" that Autobahn|TestSuite
sends, though RFC 6455 §4.2.1 says the value is case-insensitive. The proxy lets Autobahn
reach the module inside the real evluaserver.
"""
import asyncio
import re
import sys

HEAD_MAX = 64 << 10


async def relay(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def serve(client_reader, client_writer, target_port):
    try:
        head = await client_reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        client_writer.close()
        return
    head = re.sub(rb"(?im)^(upgrade:[ \t]*)([^\r\n]*)", lambda m: m.group(1) + m.group(2).lower(), head)
    server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    server_writer.write(head)
    await asyncio.gather(relay(client_reader, server_writer), relay(server_reader, client_writer))
    client_writer.close()
    server_writer.close()


async def main():
    target_port = int(sys.argv[1])
    server = await asyncio.start_server(lambda r, w: serve(r, w, target_port), "127.0.0.1", 0, limit=HEAD_MAX)
    print(f"listening on ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
