"""Load cases for a server under the evluaserver runtime (the real evluaserver or the
stand-in), each against the echo handler at PATH:

    evl_load.py --port P [--path /ws_spec/echo] [--in-flight K] many N
        opens N WebSocket connections, at most K handshakes under way at a time (default:
        all at once), holds them all open and echoes one message on each, at most K
        echoes under way at a time (evluaserver refuses what does not fit its dispatch
        queue: see docs/evluaserver.md)
    evl_load.py --port P [--path /ws_spec/echo] slowloris CLIENTS ECHOES SECONDS
        while one client sends its Upgrade request one byte every 0.5 s, CLIENTS echo
        clients each do ECHOES round trips; all must be done within SECONDS

Prints one line "PASS|FAIL <case>: <detail>" and exits 1 on failure.
"""
import argparse
import asyncio
import sys
import time

from websockets.asyncio.client import connect


async def many(url, n, in_flight, timeout):
    gate = asyncio.Semaphore(in_flight)

    async def opened():
        async with gate:
            return await connect(url, open_timeout=timeout)

    async def echo(i, ws):
        async with gate:
            await ws.send(f"echo {i}")
            return await asyncio.wait_for(ws.recv(), timeout) == f"echo {i}"

    started = time.monotonic()
    results = await asyncio.gather(*(opened() for _ in range(n)), return_exceptions=True)
    failed = [i + 1 for i, r in enumerate(results) if isinstance(r, Exception)]
    conns = [r for r in results if not isinstance(r, Exception)]
    took = time.monotonic() - started
    try:
        if failed:
            first = results[failed[0] - 1]
            return False, f"{len(failed)} of {n} upgrades failed, the first #{failed[0]}: {type(first).__name__}: {first}"
        echoed = await asyncio.gather(*(echo(i, ws) for i, ws in enumerate(conns)), return_exceptions=True)
        good = sum(1 for e in echoed if e is True)
        if good != n:
            return False, f"{n} open, {good} echoed"
        return True, (f"{n} open at once ({in_flight} handshakes under way at a time, {took:.2f} s), "
                      f"each echoed ({time.monotonic() - started:.2f} s in all)")
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)


async def slow_handshake(port, path, stop):
    """Sends an Upgrade request one byte every 0.5 s until `stop` is set; bytes sent."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        while sent < len(request) and not stop.is_set():
            writer.write(request[sent:sent + 1])
            await writer.drain()
            sent += 1
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
    finally:
        writer.close()
    return sent


async def slowloris(url, port, path, clients, echoes, seconds):
    stop = asyncio.Event()
    slow = asyncio.create_task(slow_handshake(port, path, stop))
    await asyncio.sleep(1.0)  # the slow request is under way

    async def client(c):
        async with connect(url) as ws:
            for i in range(echoes):
                await ws.send(f"{c}.{i}")
                if await ws.recv() != f"{c}.{i}":
                    return False
        return True
    started = time.monotonic()
    try:
        done = await asyncio.wait_for(asyncio.gather(*(client(c) for c in range(clients))), seconds)
        took = time.monotonic() - started
        ok = all(done)
        detail = f"{clients} x {echoes} echoes in {took:.2f} s during a 1-byte-per-0.5 s handshake"
    except asyncio.TimeoutError:
        ok, detail = False, f"{clients} x {echoes} echoes not done within {seconds} s during a 1-byte-per-0.5 s handshake"
    stop.set()
    await slow
    return ok, detail


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/ws_spec/echo")
    ap.add_argument("--in-flight", type=int, default=0, help="handshakes/echoes under way at a time (0: all)")
    ap.add_argument("case", choices=("many", "slowloris"))
    ap.add_argument("args", type=int, nargs="*")
    a = ap.parse_args()
    url = f"ws://127.0.0.1:{a.port}{a.path}"
    if a.case == "many":
        ok, detail = await many(url, a.args[0], a.in_flight or a.args[0], 10)
    else:
        ok, detail = await slowloris(url, a.port, a.path, *a.args)
    print(f"{'PASS' if ok else 'FAIL'} {a.case}: {detail}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
