"""Prints the table of benches/lua_peers.sh from its JSON lines.

    python3 benches/report_lua_peers.py benches/results/lua_peers.jsonl

Each figure is the median of the rounds, with the min-max beside it. Ratios are another
server's CPU per message over this module's (lua, Lua 5.4): above 1, the module is
cheaper; lua/tt is the module's over tokio-tungstenite's.
"""
import json
import sys
from collections import defaultdict
from statistics import median

ORDER = ("lua", "lua-gen", "luajit", "tt", "resty", "luahttp")
NAMES = {"lua": "this module, Lua 5.4", "lua-gen": "this module, Lua 5.4 generational GC",
         "luajit": "this module, LuaJIT", "tt": "tokio-tungstenite (Rust)",
         "resty": "lua-resty-websocket, nginx", "luahttp": "lua-http 0.4, cqueues"}


def spread(values, digits):
    if not values:
        return "-"
    return f"{median(values):,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def main(path):
    cells = defaultdict(list)
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            key = (r["mode"], r["label"], r.get("size"))
            cells[key].append(r)
    labels = [lab for lab in ORDER if any(k[1] == lab for k in cells)]

    def values(key, field):
        return [r[field] for r in cells.get(key, []) if r.get(field) is not None]

    print("Pipelined echo, 64 connections × 16 in flight: server CPU µs per message, median of the rounds (min–max)")
    print()
    print("| server | 16 B | 1 KiB | **×lua 16 B** | **×lua 1 KiB** | msgs/s 1 KiB | load generator busy 16 B / 1 KiB | errors | KiB RSS per idle connection (10,000) |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {size: median(values(("echo", "lua", size), "server_cpu_us_per_msg") or [0]) for size in (16, 1024)}
    for lab in labels:
        cpu = {size: values(("echo", lab, size), "server_cpu_us_per_msg") for size in (16, 1024)}
        ratio = {size: (f"{median(cpu[size]) / base[size]:.2f}" if cpu[size] and base[size] else "-") for size in (16, 1024)}
        busy = " / ".join(spread(values(("echo", lab, size), "loadgen_busy"), 2) for size in (16, 1024))
        errors = sum(r["errors"] for size in (16, 1024) for r in cells.get(("echo", lab, size), []))
        errors += sum(r["errors"] for r in cells.get(("idle", lab, None), []))
        held = min((r["open"] for r in cells.get(("idle", lab, None), [])), default=0)
        kib = spread(values(("idle", lab, None), "server_kib_per_conn"), 1) + ("" if held >= 10000 else f" ({held} held)")
        print(f"| {NAMES[lab]} | {spread(cpu[16], 2)} | {spread(cpu[1024], 2)} | **{ratio[16]}** | **{ratio[1024]}** "
              f"| {spread(values(('echo', lab, 1024), 'msgs_per_s'), 0)} | {busy} | {errors} | {kib} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benches/results/lua_peers.jsonl")
