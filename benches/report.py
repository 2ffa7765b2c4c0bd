"""Prints the benchmark tables from the JSON lines of benches/run.sh.

    python3 benches/report.py benches/results/latest.jsonl

Each cell is the mean of its runs. Ratios put this module (lua) against tokio-tungstenite
(tt, the ceiling of the stack) and the peers a user might pick instead (node, py): for
CPU per message lower is better, for messages/s and handshakes/s higher is better.
"""
import json
import sys
from collections import defaultdict
from statistics import mean

LABELS = ("lua", "tt", "tcp", "node", "py")
SIZES = {16: "16 B", 1024: "1 KiB", 65536: "64 KiB"}


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    cells = defaultdict(list)
    for r in rows:
        if r["mode"] == "echo":
            key = ("echo", r.get("regime", "one"), r["size"], r["conns"], r["window"], r["label"])
        else:
            key = (r["mode"], r["label"])
        cells[key].append(r)

    def avg(key, field):
        vals = [r[field] for r in cells.get(key, []) if r.get(field) is not None]
        return mean(vals) if vals else None

    def fmt(v, digits=1):
        return "-" if v is None else f"{v:,.{digits}f}"

    def ratio(a, b):
        return "-" if a is None or not b else f"{a / b:.2f}"

    def echo_key(regime, size, conns, window):
        return lambda label: ("echo", regime, size, conns, window, label)

    def errors(k, labels=LABELS):
        return sum(r["errors"] for lab in labels for r in cells.get(k(lab), []))

    print("Pipelined (the load generator batches: many frames per syscall both ways), server CPU µs per echoed message:")
    print()
    print("| size | conns × window | lua | tt | node | py | **lua/tt** | **node/lua** | **py/lua** | msgs/s lua | msgs/s tt | msgs/s tcp | load generator busy (tt run) | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, name in SIZES.items():
        for conns, window in ((64, 16), (1, 16)):
            k = echo_key("pipelined", size, conns, window)
            if k("lua") not in cells:
                continue
            c = {lab: avg(k(lab), "server_cpu_us_per_msg") for lab in LABELS}
            m = {lab: avg(k(lab), "msgs_per_s") for lab in LABELS}
            tcp = avg(("echo", "one", size, conns, window, "tcp"), "msgs_per_s") or avg(k("tcp"), "msgs_per_s")
            busy = avg(k("tt"), "loadgen_busy")
            print(f"| {name} | {conns} × {window} | {fmt(c['lua'], 2)} | {fmt(c['tt'], 2)} | {fmt(c['node'], 2)} | {fmt(c['py'], 2)} "
                  f"| **{ratio(c['lua'], c['tt'])}** | **{ratio(c['node'], c['lua'])}** | **{ratio(c['py'], c['lua'])}** "
                  f"| {fmt(m['lua'], 0)} | {fmt(m['tt'], 0)} | {fmt(tcp, 0)} | {fmt(busy, 2)} | {errors(k)} |")
    print()
    print("One frame per write (each echo answered by one send and one flush; the server sees one frame per read):")
    print()
    print("| size | conns × window | CPU µs/msg lua | tt | node | py | **lua/tt CPU** | msgs/s lua | msgs/s tt | p50/p99 µs lua | p50/p99 µs tt | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, name in SIZES.items():
        for conns, window in ((64, 16), (64, 1), (1, 1)):
            k = echo_key("one", size, conns, window)
            if k("lua") not in cells:
                continue
            c = {lab: avg(k(lab), "server_cpu_us_per_msg") for lab in LABELS}
            m = {lab: avg(k(lab), "msgs_per_s") for lab in LABELS}
            lat = {lab: f'{fmt(avg(k(lab), "p50_us"), 0)}/{fmt(avg(k(lab), "p99_us"), 0)}' for lab in ("lua", "tt")}
            print(f"| {name} | {conns} × {window} | {fmt(c['lua'], 2)} | {fmt(c['tt'], 2)} | {fmt(c['node'], 2)} | {fmt(c['py'], 2)} "
                  f"| **{ratio(c['lua'], c['tt'])}** | {fmt(m['lua'], 0)} | {fmt(m['tt'], 0)} | {lat['lua']} | {lat['tt']} | {errors(k)} |")
    print()
    servers = [lab for lab in LABELS if lab != "tcp"]
    print("| handshake storm (10,000, 32 at a time) | " + " | ".join(servers) + " | **lua/tt** |")
    print("|---|" + "---|" * (len(servers) + 1))
    hs = {lab: avg(("storm", lab), "handshakes_per_s") for lab in servers}
    hc = {lab: avg(("storm", lab), "server_cpu_us_per_handshake") for lab in servers}
    herr = {lab: sum(r["errors"] for r in cells.get(("storm", lab), [])) for lab in servers}
    print("| handshakes/s | " + " | ".join(fmt(hs[lab], 0) for lab in servers) + f" | **{ratio(hs['lua'], hs['tt'])}** |")
    print("| server CPU µs per handshake | " + " | ".join(fmt(hc[lab]) for lab in servers) + f" | {ratio(hc['lua'], hc['tt'])} |")
    print("| errors | " + " | ".join(str(herr[lab]) for lab in servers) + " | |")
    print()
    print("| 10,000 idle connections | " + " | ".join(LABELS) + " |")
    print("|---|" + "---|" * len(LABELS))
    kib = {lab: avg(("idle", lab), "server_kib_per_conn") for lab in LABELS}
    opened = {lab: min((r["open"] for r in cells.get(("idle", lab), [])), default=None) for lab in LABELS}
    ierr = {lab: sum(r["errors"] for r in cells.get(("idle", lab), [])) for lab in LABELS}
    print("| server RSS KiB per connection | " + " | ".join(fmt(kib[lab]) for lab in LABELS) + " |")
    print("| connections held (fewest of the runs) | " + " | ".join(fmt(opened[lab], 0) for lab in LABELS) + " |")
    print("| errors | " + " | ".join(str(ierr[lab]) for lab in LABELS) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benches/results/latest.jsonl")
