"""100,000 idle ws:// (or wss://) connections on this machine (issue 25), run by
benches/idle_100k.sh.

A process may hold at most 20,000 descriptors here (`ulimit -Hn`), so the server runs with
`workers = W` (benches/lua/idle_server.lua: members of /all subscribe to the topic "all")
and the load over L loadgen `hold` processes, each from its own 127.0.0.x source address.
Then:
  1. the server's RSS (every worker and the supervisor) before and with all connections
     open, per connection and per process;
  2. keepalive: the server pings every connection every PING seconds; each loadgen counts
     the connections that saw a ping and are still open at the end (a ping not answered
     within 10 s closes the connection with 1011);
  3. one publish of 64 bytes to "all" from another connection: the time until the last of
     the connections has it (wall clock, the loadgens' newest first delivery less the send
     time) and the server's CPU per delivery (its CPU over 3 s from the send, less its
     background rate, measured over the 3 s before, divided by the deliveries).
Prints a report; the caller keeps it in benches/results/idle_100k-ENDPOINT[-wss].txt.
"""
import asyncio
import json
import os
import resource
import ssl
import subprocess
import sys
import time

import websockets

USER_HZ = os.sysconf("SC_CLK_TCK")


def children(pid):
    """Every process descended from pid (from /proc's ppid fields)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
                parent[int(d)] = int(stat[stat.rfind(")") + 2:].split()[1])
            except OSError:
                pass
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        frontier += kids
    return found


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pids):
    total = 0
    for pid in pids:
        try:
            stat = open(f"/proc/{pid}/stat").read()
            f = stat[stat.rfind(")") + 2:].split()
            total += (int(f[11]) + int(f[12])) / USER_HZ
        except OSError:
            pass
    return total


def descriptors(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def raise_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def publish(port, cert):
    scheme, tls = "ws", None
    if cert:
        scheme, tls = "wss", ssl.create_default_context(cafile=cert)
        tls.check_hostname = False
    async with websockets.connect(f"{scheme}://127.0.0.1:{port}/publish", ssl=tls) as ws:
        await asyncio.sleep(0.5)  # let the publisher's connection settle first
        sent = time.time()
        await ws.send(b"x" * 64)
        await asyncio.sleep(0.2)
    return sent


def main():
    total, loads, workers, ping = (int(a) for a in sys.argv[1:5])
    lua_cpath, server_cpu, load_cpu, endpoint = sys.argv[5:9]
    tls = sys.argv[9:11]  # CERT KEY: wss://
    scheme = "wss" if tls else "ws"
    loadgen = "target/release/loadgen"
    taskset = lambda cpu: ["taskset", "-c", cpu] if cpu else []
    env = dict(os.environ, LUA_CPATH=lua_cpath)
    server = subprocess.Popen(
        taskset(server_cpu) + ["lua5.4", "benches/lua/idle_server.lua", str(workers), str(ping)] + tls,
        stdout=subprocess.PIPE, text=True, env=env, preexec_fn=raise_nofile)
    loads_running = []
    try:
        line = server.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        time.sleep(1.5)  # the workers fork and start
        procs = [server.pid] + children(server.pid)
        before = {p: rss_kib(p) for p in procs}
        hold_s = 3 * ping + 40
        t_open = time.time()
        for i in range(loads):
            n = total // loads + (1 if i < total % loads else 0)
            loads_running.append(subprocess.Popen(
                taskset(load_cpu) + [loadgen, "hold", "--ws", f"{scheme}://127.0.0.1:{port}/{endpoint}",
                                     "--count", str(n), "--seconds", str(hold_s),
                                     "--sources", f"127.0.0.{i + 2}", "--label", f"load{i + 1}"],
                stdout=subprocess.PIPE, text=True, preexec_fn=raise_nofile))
        opened = [json.loads(p.stdout.readline()) for p in loads_running]
        open_s = time.time() - t_open
        time.sleep(2)
        held = sum(o["open"] for o in opened)
        after = {p: rss_kib(p) for p in procs}
        grown = sum(after.values()) - sum(before.values())
        print(f"{total:,}-connection run: {held:,} of {total:,} connections open in {open_s:.1f} s "
              f"(connect errors {sum(o['errors'] for o in opened)}), {loads} loadgen processes "
              f"from 127.0.0.2..{loads + 1}, server workers = {workers}, {scheme}:// endpoint /{endpoint}")
        print(f"server RSS: {sum(before.values()):,} KiB before, {sum(after.values()):,} KiB with "
              f"all open: {grown / max(held, 1):.2f} KiB per connection (every process)")
        for p in procs:
            print(f"  pid {p}: {descriptors(p):,} descriptors, RSS {before[p]:,} -> {after[p]:,} KiB")
        # Keepalive rounds, then one publish to every connection.
        time.sleep(2 * ping + 12)
        load_pids = [p.pid for p in loads_running]
        cpu0, lcpu0 = cpu_s(procs), cpu_s(load_pids)
        time.sleep(3)
        cpu1, lcpu1 = cpu_s(procs), cpu_s(load_pids)
        sent = asyncio.run(publish(port, tls[0] if tls else None))
        time.sleep(max(0.0, sent + 3 - time.time()))
        cpu2, lcpu2 = cpu_s(procs), cpu_s(load_pids)
        window = time.time() - sent
        background, lbackground = (cpu1 - cpu0) / 3, (lcpu1 - lcpu0) / 3
        done = [json.loads(p.stdout.readline()) for p in loads_running]
        for p in loads_running:
            p.wait(timeout=60)
        delivered = sum(d["delivered_to"] for d in done)
        last = max((d["last_first_delivery"] for d in done if d["last_first_delivery"]), default=None)
        fanout_cpu = (cpu2 - cpu1) - background * window
        print(f"keepalive (ping every {ping} s, held {hold_s} s): {sum(d['pinged'] for d in done):,} "
              f"connections saw a ping ({sum(d['pings'] for d in done):,} pings), "
              f"{sum(d['still_open'] for d in done):,} still open at the end")
        if last is not None:
            spread = last - sent
            load_cpu_used = (lcpu2 - lcpu1) - lbackground * window
            print(f"publish of 64 B to all: delivered to {delivered:,} connections; the last had it "
                  f"{spread * 1000:.0f} ms after the send; the load generators used "
                  f"{load_cpu_used * 1000:.0f} ms of CPU for it (busy share of their core over the "
                  f"fan-out: {load_cpu_used / spread:.2f})")
        else:
            print("publish of 64 B to all: delivered to nobody")
        if delivered:
            print(f"server CPU for the publish: {fanout_cpu * 1000:.0f} ms over {window:.1f} s less a "
                  f"background of {background * 1000:.0f} ms/s (keepalive): "
                  f"{fanout_cpu * 1e6 / delivered:.2f} µs per delivery")
    finally:
        for p in loads_running:
            if p.poll() is None:
                p.terminate()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
