"""The benchmark's Python peer: a `websockets` echo server, as a user would write it.

    python benches/peers/websockets_echo.py [deflate]   prints "listening on ws://127.0.0.1:PORT"

Compression (permessage-deflate, websockets' defaults) only with `deflate`.
"""
import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=16 * 1024 * 1024, compression="deflate" if sys.argv[1:] == ["deflate"] else None) as server:
        print(f"listening on ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
