"""Groups heaptrack's allocations at the peak by what made them (run by
benches/idle_breakdown.sh): idle_breakdown.py BASELINE_STACKS PEAK_STACKS N [STACKS].

PEAK_STACKS is `heaptrack_print --flamegraph-cost-type peak -F` output: one line per
call stack, frames separated by ';' (outermost first), then the bytes it held at the
peak. Each stack goes to the part named by its innermost frame that has one of the
markers below (the code that asked for the memory); per part, the bytes of the baseline (the same server with no connection) are
taken off and the rest divided by N, the idle connections open at the peak.
"""
import sys

PARTS = [
    ("TLS (rustls)", ["rustls", "standalone::tls::", "ring::"]),
    ("read buffer", ["ReadSizer", "frame_loop::read", "Frames::shed"]),
    ("write buffers", ["take_output", "write_burst", "encode_frame"]),
    ("deflate state", ["deflate", "inflate", "zlib"]),
    ("task futures (the async state kept per task)", ["runtime::counted", "spawn_local", "JoinSet", "RawTask", "OwnedTasks"]),
    ("tokio I/O registration, socket halves", ["registration_set", "Registration", "split_owned", "into_split"]),
    ("Lua objects (userdata, tables, coroutine)", ["lua_", "luaH_", "luaS_", "luaE_", "luaD_", "luaM_", "luaC_", "mlua::"]),
    ("handshake leftovers", ["front::", "judge_request", "call_accept", "http::Response"]),
    ("connection structs (Rust)", ["Connection::new", "Frames::new", "session::run", "connection_userdata",
                                   "Alarm::", "serve_stream", "serve_connection", "engine::"]),
]


def classify(stack):
    """The part of the innermost frame that names one (frames are outermost first)."""
    for frame in reversed(stack.split(";")):
        for name, markers in PARTS:
            if any(m in frame for m in markers):
                return name
    return "other"


def parts(path):
    totals = {name: 0 for name, _ in PARTS + [("other", None)]}
    for line in open(path, errors="replace"):
        stack, _, cost = line.rstrip("\n").rpartition(" ")
        if cost.isdigit():
            totals[classify(stack)] += int(cost)
    return totals


def main():
    base, loaded, n = parts(sys.argv[1]), parts(sys.argv[2]), int(sys.argv[3])
    print(f"heaptrack: heap bytes held at the peak with {n} idle connections open, less the same")
    print("server with none, per connection:")
    total = 0
    for name in loaded:
        per = (loaded[name] - base[name]) / n
        total += per
        print(f"  {name:<46} {per:9.0f} B")
    print(f"  {'total heap':<46} {total:9.0f} B  ({total / 1024:.2f} KiB)")
    if len(sys.argv) > 4:  # the biggest stacks, innermost frames first, to place new markers
        stacks = sorted(((int(c), st) for st, _, c in (l.rstrip("\n").rpartition(" ") for l in open(sys.argv[2], errors="replace")) if c.isdigit()), reverse=True)
        for cost, st in stacks[:int(sys.argv[4])]:
            frames = [f.split("::h")[0] for f in st.split(";")[::-1]
                      if f and not f.startswith(("alloc::", "_RNv", "core::", "0x"))][:6]
            print(f"{cost / n:8.0f} B  " + " <- ".join(frames))


main()
