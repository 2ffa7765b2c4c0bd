"""Opens many WebSocket connections to one server and keeps them all open:

    many_conns.py --url ws://127.0.0.1:P/echo --count N

Each connection echoes one message as it opens (at most 200 handshakes under way at a
time); once all N are open, each echoes a second message, so that every one of them was
alive with all the others. Prints "opened N, echoed N twice" (or what fell short) and exits
1 when any connection failed.
"""
import argparse
import asyncio
import resource
import sys

from websockets.asyncio.client import connect


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--count", type=int, required=True)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gate = asyncio.Semaphore(200)

    async def opened(i):
        async with gate:
            ws = await connect(a.url, open_timeout=30, ping_interval=None)
            await ws.send(f"first {i}")
            if await asyncio.wait_for(ws.recv(), 30) != f"first {i}":
                raise RuntimeError(f"connection {i}: wrong first echo")
            return ws

    async def again(i, ws):
        async with gate:
            await ws.send(f"again {i}")
            return await asyncio.wait_for(ws.recv(), 30) == f"again {i}"

    results = await asyncio.gather(*(opened(i) for i in range(a.count)), return_exceptions=True)
    conns = [r for r in results if not isinstance(r, Exception)]
    errors = [r for r in results if isinstance(r, Exception)]
    echoed = await asyncio.gather(*(again(i, ws) for i, ws in enumerate(conns)), return_exceptions=True)
    twice = sum(1 for e in echoed if e is True)
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    line = f"opened {len(conns)}, echoed {twice} twice"
    if errors:
        line += f"; {len(errors)} failed, the first: {type(errors[0]).__name__}: {errors[0]}"
    print(line, flush=True)
    return 0 if twice == a.count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
