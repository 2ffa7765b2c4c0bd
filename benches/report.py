"""Prints the benchmark table from the JSON lines of benches/run.sh.

    python3 benches/report.py benches/results/latest.jsonl

Each cell is the mean of its runs. Ratios are module (lua) / tokio-tungstenite (tt):
for messages/s and handshakes/s higher is better, for CPU per message lower is better.
"""
import json
import sys
from collections import defaultdict
from statistics import mean


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    cells = defaultdict(list)
    for r in rows:
        if r["mode"] == "echo":
            key = ("echo", r["size"], r["conns"], r["window"], r["label"])
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

    print("| size | conns × window | msgs/s lua | msgs/s tt | msgs/s tcp | **lua/tt msgs/s** | CPU µs/msg lua | CPU µs/msg tt | **lua/tt CPU** | p50/p99 µs lua | p50/p99 µs tt | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    sizes = sorted({k[1] for k in cells if k[0] == "echo"})
    for size in sizes:
        for conns in (1, 64):
            for window in (1, 16):
                k = lambda label: ("echo", size, conns, window, label)
                if k("lua") not in cells:
                    continue
                m = {lab: avg(k(lab), "msgs_per_s") for lab in ("lua", "tt", "tcp")}
                c = {lab: avg(k(lab), "server_cpu_us_per_msg") for lab in ("lua", "tt")}
                lat = {lab: f'{fmt(avg(k(lab), "p50_us"), 0)}/{fmt(avg(k(lab), "p99_us"), 0)}' for lab in ("lua", "tt")}
                errors = sum(r["errors"] for lab in ("lua", "tt", "tcp") for r in cells.get(k(lab), []))
                label = {16: "16 B", 1024: "1 KiB", 65536: "64 KiB"}.get(size, f"{size} B")
                print(f"| {label} | {conns} × {window} | {fmt(m['lua'], 0)} | {fmt(m['tt'], 0)} | {fmt(m['tcp'], 0)} | **{ratio(m['lua'], m['tt'])}** | {fmt(c['lua'], 2)} | {fmt(c['tt'], 2)} | **{ratio(c['lua'], c['tt'])}** | {lat['lua']} | {lat['tt']} | {errors} |")
    print()
    print("| handshake storm (2,000, 32 at a time) | lua | tt | **lua/tt** |")
    print("|---|---|---|---|")
    hs = {lab: avg(("storm", lab), "handshakes_per_s") for lab in ("lua", "tt")}
    hc = {lab: avg(("storm", lab), "server_cpu_us_per_handshake") for lab in ("lua", "tt")}
    herr = sum(r["errors"] for lab in ("lua", "tt") for r in cells.get(("storm", lab), []))
    print(f"| handshakes/s | {fmt(hs['lua'], 0)} | {fmt(hs['tt'], 0)} | **{ratio(hs['lua'], hs['tt'])}** |")
    print(f"| server CPU µs per handshake | {fmt(hc['lua'])} | {fmt(hc['tt'])} | {ratio(hc['lua'], hc['tt'])} |")
    print(f"| errors | {herr} | | |")
    print()
    print("| 10,000 idle connections | lua | tt | tcp |")
    print("|---|---|---|---|")
    kib = {lab: avg(("idle", lab), "server_kib_per_conn") for lab in ("lua", "tt", "tcp")}
    opened = {lab: min((r["open"] for r in cells.get(("idle", lab), [])), default=None) for lab in ("lua", "tt", "tcp")}
    ierr = {lab: sum(r["errors"] for r in cells.get(("idle", lab), [])) for lab in ("lua", "tt", "tcp")}
    print(f"| server RSS KiB per connection | {fmt(kib['lua'])} | {fmt(kib['tt'])} | {fmt(kib['tcp'])} |")
    print(f"| connections held (fewest of the runs) | {fmt(opened['lua'], 0)} | {fmt(opened['tt'], 0)} | {fmt(opened['tcp'], 0)} |")
    print(f"| errors | {ierr['lua']} | {ierr['tt']} | {ierr['tcp']} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benches/results/latest.jsonl")
