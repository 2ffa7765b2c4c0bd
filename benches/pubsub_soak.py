"""Soak of the scale-out under faults (run by benches/pubsub_soak.sh).

    pubsub_soak.py LUA_CPATH_ROOT SECONDS

Starts a redis-server and two servers (spec/support/server.lua, Lua 5.4, workers = 2,
pubsub on that Redis, the pubsub handler), then for SECONDS: one publisher per server
publishes "P:seq" to topic "soak" 50 times a second, 20 subscribers per server receive;
every 60 s a worker (worker 2, the supervised one) of one server is killed with SIGKILL,
and Redis is stopped and started again twice (at 35% and 75% of the run). Clients
reconnect and resubscribe by themselves.

A publish counts as published when the server acknowledged it ("published n"). For every
subscriber session (from its "subscribed" answer to its disconnect) the messages
acknowledged from 2 s after its start to 0.5 s before its end are expected; a missed one
is explained when it crossed servers while Redis was down (from its stop to 6 s after its
restart: the bridge's 5 s backoff and resubscription) — what the library counts in
stats().pubsub.dropped — and is otherwise lost without a count. Prints the figures and
each process's RSS at start and end.
"""
import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

from websockets.asyncio.client import connect

ROOT, SECONDS = sys.argv[1], float(sys.argv[2])
RATE, SUBSCRIBERS = 50, 20
KILL_EVERY = float(os.environ.get("SOAK_KILL_EVERY", "60"))
LOGS = "benches/results"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(d))
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        return None


class Redis:
    def __init__(self):
        self.port = free_port()
        self.proc = None
        self.down = []  # [stop time, restart time]

    def start(self):
        log = open(f"{LOGS}/soak-redis.log", "a")
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], stdout=log, stderr=log)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Server:
    def __init__(self, name, redis_port):
        self.name = name
        log = open(f"{LOGS}/soak-{name}.log", "w")
        env = dict(os.environ, LUA_CPATH=f"{ROOT}/?.so;;")
        self.proc = subprocess.Popen(["lua5.4", "spec/support/server.lua", "workers=2",
                                      f"pubsub_redis=redis://127.0.0.1:{redis_port}/0"],
                                     stdout=subprocess.PIPE, stderr=log, env=env, text=True)
        line = self.proc.stdout.readline()
        self.port = int(re.search(r":(\d+)$", line.strip()).group(1))
        self.log = f"{LOGS}/soak-{name}.log"

    def pids(self):
        """{first process, supervisor, workers under the supervisor}."""
        first = self.proc.pid
        out = {"worker 1": first}
        for sup in children(first):
            out["supervisor"] = sup
            for w in children(sup):
                out["worker 2"] = w
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


class Run:
    def __init__(self):
        self.t0 = time.monotonic()
        self.acked = {}  # "P:seq" -> (server name, ack time)
        self.unacked = 0
        self.sessions = []  # (server name, start, end, set of received)
        self.duplicates = 0
        self.stopping = False

    def now(self):
        return time.monotonic() - self.t0


async def publisher(run, server):
    seq = 0
    while not run.stopping:
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/pubsub", max_size=None) as ws:
                while not run.stopping:
                    seq += 1
                    key = f"{server.name}:{seq}"
                    await ws.send(f"pub soak {key}")
                    try:
                        answer = await ws.recv()
                    except Exception:
                        run.unacked += 1
                        raise
                    if answer.startswith("published"):
                        run.acked[key] = (server.name, run.now())
                    await asyncio.sleep(1 / RATE)
        except Exception:
            await asyncio.sleep(0.1)


async def subscriber(run, server):
    while not run.stopping:
        got = set()
        start = None
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/pubsub", max_size=None) as ws:
                await ws.send("sub soak")
                while not run.stopping:
                    m = await ws.recv()
                    if m == "subscribed soak":
                        start = run.now()
                    elif start is not None:
                        if m in got:
                            run.duplicates += 1
                        got.add(m)
        except Exception:
            pass
        finally:  # also when cancelled at the end of the run
            if start is not None:
                run.sessions.append((server.name, start, run.now(), got))
        await asyncio.sleep(0.1)


async def faults(run, servers, redis):
    restarts = [SECONDS * 0.35, SECONDS * 0.75]
    next_kill, kills = KILL_EVERY, []
    while run.now() < SECONDS:
        await asyncio.sleep(0.2)
        if restarts and run.now() >= restarts[0]:
            restarts.pop(0)
            stopped = run.now()
            redis.stop()
            await asyncio.sleep(2)
            redis.start()
            redis.down.append((stopped, run.now()))
            print(f"{stopped:6.1f} s  Redis stopped, started again at {run.now():.1f} s", flush=True)
        if run.now() >= next_kill:
            next_kill += KILL_EVERY
            server = servers[len(kills) % 2]
            pid = server.pids().get("worker 2")
            if pid:
                os.kill(pid, signal.SIGKILL)
                kills.append((server.name, pid))
                print(f"{run.now():6.1f} s  killed worker 2 of {server.name} (pid {pid})", flush=True)
    run.stopping = True
    return kills


def explained(redis, publisher_server, subscriber_server, at):
    return publisher_server != subscriber_server and any(a <= at <= b + 6 for a, b in redis.down)


def account(run, redis):
    expected = delivered = missed_explained = lost = 0
    missed_messages = set()
    for server, start, end, got in run.sessions:
        for key, (pserver, at) in run.acked.items():
            if start + 2 <= at <= end - 0.5:
                expected += 1
                if key in got:
                    delivered += 1
                elif explained(redis, pserver, server, at):
                    missed_explained += 1
                    missed_messages.add(key)
                else:
                    lost += 1
    return expected, delivered, (missed_explained, len(missed_messages)), lost


async def counters(server):
    """Summed stats of the live workers: each reached through a new connection."""
    seen = {}
    for _ in range(40):
        if len(seen) == 2:
            break
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/pubsub") as ws:
                await ws.send("worker")
                worker = await ws.recv()
                await ws.send("redis")
                redis = await ws.recv()
                await ws.send("stats")
                seen[worker] = (redis, await ws.recv())
        except Exception:
            pass
    total = {}
    for redis, local in seen.values():
        for prefix, line in (("pubsub_", redis), ("", local)):
            for k, v in re.findall(r"(\w+)=(\d+)", line):
                total[prefix + k] = total.get(prefix + k, 0) + int(v)
    return len(seen), total


async def main():
    redis = Redis()
    redis.start()
    servers = [Server("A", redis.port), Server("B", redis.port)]
    run = Run()
    try:
        await asyncio.sleep(1)
        start_rss = {(s.name, k): (p, rss_kib(p)) for s in servers for k, p in s.pids().items()}
        tasks = [asyncio.create_task(publisher(run, s)) for s in servers]
        tasks += [asyncio.create_task(subscriber(run, s)) for s in servers for _ in range(SUBSCRIBERS)]
        kills = await faults(run, servers, redis)
        await asyncio.sleep(1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        end_rss = {(s.name, k): (p, rss_kib(p)) for s in servers for k, p in s.pids().items()}
        counted = {s.name: await counters(s) for s in servers}
        expected, delivered, explained_, lost = account(run, redis)
        print(f"{len(run.sessions)} subscriber sessions")
        print(f"\n{SECONDS:.0f} s, 2 servers x 2 workers, {2 * SUBSCRIBERS} subscribers, "
              f"{len(kills)} workers killed, Redis restarted {len(redis.down)} times")
        print(f"published (acknowledged)        {len(run.acked)}")
        print(f"sent, not acknowledged          {run.unacked} (its connection's worker was killed)")
        print(f"deliveries expected             {expected}")
        print(f"delivered                       {delivered}")
        print(f"missed while Redis was down     {explained_[0]} deliveries of {explained_[1]} messages "
              "(what the publishing server counts as pubsub.dropped)")
        print(f"lost without a count            {lost}")
        print(f"delivered twice                 {run.duplicates}")
        for name, (workers, total) in counted.items():
            print(f"server {name}: {workers} live workers' counters: pubsub sent={total.get('pubsub_sent', 0)} "
                  f"received={total.get('pubsub_received', 0)} dropped={total.get('pubsub_dropped', 0)}, "
                  f"publish_dropped={total.get('dropped', 0)} (a killed worker's counters die with it)")
        for s in servers:
            with open(s.log) as f:
                log = f.read()
            print(f"server {s.name}: log has {len(re.findall('was killed by signal 9', log))} "
                  f"'was killed by signal 9' lines")
        print("\nprocess                 RSS at start   RSS at end")
        for key in sorted(set(start_rss) | set(end_rss)):
            (p0, r0), (p1, r1) = start_rss.get(key, (None, None)), end_rss.get(key, (None, None))
            note = "" if p0 == p1 else f"  (pid {p0} -> {p1}: replaced)"
            print(f"{key[0]} {key[1]:<18} {r0 or 0:>9} KiB {r1 or 0:>9} KiB{note}")
    finally:
        for s in servers:
            s.stop()
        redis.stop()


asyncio.run(main())
