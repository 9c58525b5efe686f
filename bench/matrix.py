#!/usr/bin/env python3
"""sekisho's benchmark matrix: direct upstream vs sekisho (HTTP upstream, stdio upstream),
side by side in one run, targets interleaved in a fresh random order every repetition to cancel
drift. Reports req/s, ratio to direct, latency percentiles, the gateway's CPU time per request
(user+sys of the gateway process over the run / requests) and its RSS idle and under load.

Usage (from the repo root):
  python3 bench/matrix.py                      # full matrix, ~4 minutes
  python3 bench/matrix.py --quick              # smoke run: 1 s per cell, must end with zero errors
  python3 bench/matrix.py --soak 300           # 5-minute run at concurrency 32, RSS sampled
  python3 bench/matrix.py --layers-off         # A = default layers, B = resilience layers off
  python3 bench/matrix.py --cache              # cache hits and misses against direct and uncached
  python3 bench/matrix.py --ab OTHER --conc 32 --reps 8   # only the concurrency-32 cells, more reps
  python3 bench/matrix.py --per-client         # legacy era: shared vs session = "per-client" HTTP
                                               # upstream side by side, then the RSS of idle
                                               # per-client upstream sessions (--idle-sessions N)
Optional comparators in front of the same stdio upstream, when installed:
  SUPERGATEWAY=/path/to/supergateway  MCP_PROXY=/path/to/mcp-proxy
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """user+sys CPU of a process and all its threads (and reaped children), in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / TICK


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_http(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer in {seconds}s")


class Sampler(threading.Thread):
    """Samples a process's RSS every 100 ms; keeps the maximum and the series."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every, self.max, self.series, self.stop = pid, every, 0.0, [], threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            r = rss_mb(self.pid)
            self.max = max(self.max, r)
            self.series.append((round(time.monotonic() - start, 1), round(r, 2)))
            self.stop.wait(self.every)


# The resilience layers that can be switched off; what remains is routing, the timeout and the
# replica choice (one replica here).
LAYERS_OFF = """
[admission]
enabled = false
[resilience]
bulkhead = false
[resilience.retry]
enabled = false
[resilience.breaker]
enabled = false
"""


def legacy_session(url: str) -> str:
    """Open a legacy session (initialize, initialized); returns its id."""
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}
    req = urllib.request.Request(url, json.dumps(init).encode(), {
        "content-type": "application/json", "accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=30) as r:
        session = r.headers["mcp-session-id"]
        r.read()
    legacy_post(url, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    return session


def legacy_post(url: str, session: str, body: dict) -> bytes:
    req = urllib.request.Request(url, json.dumps(body).encode(), {
        "content-type": "application/json", "accept": "application/json, text/event-stream",
        "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def idle_sessions(url: str, pid: int, n: int) -> dict:
    """What one idle per-client upstream session holds: the gateway's RSS growth over n idle
    client sessions that each made one call through a per-client upstream (each starting its
    own upstream session), minus the growth over n that each made one call through the same
    upstream shared. Measured for the dual-era upstream (spoken in 2026-07-28: no upstream
    session id, no GET stream) and for the legacy-only one (its own Mcp-Session-Id; the GET
    stream held only while its client can use it, so it is closed once the sessions idle).

    A legacy per-client session opens its GET stream for its first call, and the n streams
    linger together for 5 s: memory the allocator keeps after they close. So the legacy pair
    is measured twice, and the second round (whose transient streams reuse what the first
    round's freed) is the steady cost of one more idle session."""
    def grow(tool: str) -> float:
        before = rss_mb(pid)
        for i in range(n):
            s = legacy_session(url)
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {"message": "x"}}}
            legacy_post(url, s, call)
        # Past two of a per-client session's GET-stream lingers (5 s): idle means idle.
        time.sleep(12.0)
        return rss_mb(pid) - before

    out = {"sessions": n}
    for label, shared, per_client, rounds in (("modern", "h__echo", "p__echo", 1), ("legacy", "hl__echo", "pl__echo", 2)):
        for r in range(1, rounds + 1):
            shared_mb, per_client_mb = grow(shared), grow(per_client)
            key = label if rounds == 1 else f"{label}_round{r}"
            out[key] = {"rss_growth_mb_shared": round(shared_mb, 2), "rss_growth_mb_per_client": round(per_client_mb, 2),
                        "kib_per_idle_per_client_upstream_session": round((per_client_mb - shared_mb) * 1024 / n, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every cell")
    ap.add_argument("--era", choices=["modern", "legacy"], default="modern", help="client protocol era")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 s, 1 repetition; fails on any error")
    ap.add_argument("--soak", type=float, default=0, help="only run a soak of this many seconds")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--debug", action="store_true", help="use the debug binaries (smoke runs only; numbers are meaningless)")
    ap.add_argument("--json", help="also write results here")
    ap.add_argument("--ab", metavar="SEKISHO_BIN", help="a second gateway binary, measured side by side as B-http/B-stdio")
    ap.add_argument(
        "--cache",
        action="store_true",
        help="small calls only: direct, sekisho uncached, sekisho cache misses (unique arguments) and hits (64 distinct)",
    )
    ap.add_argument("--redis", metavar="URL", help="give the gateway this Redis as its L2 (with --cache)")
    ap.add_argument("--conc", type=int, help="only the cells of this concurrency (e.g. 32)")
    ap.add_argument(
        "--per-client",
        action="store_true",
        help="legacy era; adds the same HTTP upstream with session = \"per-client\" (sekisho-http-pc) "
        "and measures the RSS of idle per-client upstream sessions",
    )
    ap.add_argument("--idle-sessions", type=int, default=1000, help="client sessions for the idle RSS (--per-client)")
    ap.add_argument(
        "--layers-off",
        action="store_true",
        help="B is this gateway (or --ab) with admission, bulkheads, retries and breakers switched off",
    )
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.reps = 1.0, 1
    if args.per_client:
        # Per-client upstream sessions belong to client sessions, which only the legacy era has.
        args.era = "legacy"

    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    profile = "debug" if args.debug else "release"
    if not args.no_build:
        flags = [] if args.debug else ["--release"]
        subprocess.run(["cargo", "build", *flags, "--quiet", "--workspace", "--bins"], cwd=ROOT, check=True)
    bins = os.path.join(target_dir, profile)
    echo, gateway, loadgen = (os.path.join(bins, b) for b in ("echo-upstream", "sekisho", "loadgen"))

    work = tempfile.mkdtemp(prefix="sekisho-bench-")
    procs: list[subprocess.Popen] = []

    def start(cmd, **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"{len(procs)}.log"), "wb"), **kw)
        procs.append(p)
        return p

    try:
        up_port = free_port()
        upstream = start([echo, "http", "--listen", f"127.0.0.1:{up_port}"])
        # A legacy-only twin (2025-11-25, sessions and GET streams): what per-client mode is for.
        legacy_port = free_port()
        if args.per_client:
            start([echo, "http", "--listen", f"127.0.0.1:{legacy_port}", "--era", "legacy"])
        slow_port = free_port()
        slow = start([echo, "http", "--listen", f"127.0.0.1:{slow_port}", "--echo-delay-ms", "2"])
        gw_port = free_port()
        config = os.path.join(work, "sekisho.toml")
        with open(config, "w") as f:
            f.write(f"""
[server]
listen = "127.0.0.1:{gw_port}"
# The load cells and the idle-session measurement open many anonymous sessions.
max_sessions_per_caller = 100000
[log]
level = "warn"
[upstreams.h]
url = "http://127.0.0.1:{up_port}/mcp"
[upstreams.s]
command = {json.dumps(echo)}
args = ["stdio"]
[upstreams.c]
url = "http://127.0.0.1:{up_port}/mcp"
trusted = true
[upstreams.d]
url = "http://127.0.0.1:{slow_port}/mcp"
trusted = true
""")
            if args.per_client:
                cap = max(1024, args.idle_sessions + 16)
                f.write(f'[upstreams.p]\nurl = "http://127.0.0.1:{up_port}/mcp"\nsession = "per-client"\nmax_client_sessions = {cap}\n')
                # The legacy pair is measured twice (see idle_sessions): room for both rounds.
                cap = min(4096, max(1024, 2 * args.idle_sessions + 16))
                f.write(f'[upstreams.hl]\nurl = "http://127.0.0.1:{legacy_port}/mcp"\n')
                f.write(f'[upstreams.pl]\nurl = "http://127.0.0.1:{legacy_port}/mcp"\nsession = "per-client"\nmax_client_sessions = {cap}\n')
            if args.redis:
                f.write(f'[redis]\nurl = "{args.redis}"\nprefix = "bench-{os.getpid()}:"\nentry_secret = "bench-entry-secret-0123456789abcdef"\n')
        gw = start([gateway, "serve", "--config", config])
        wait_http(f"http://127.0.0.1:{gw_port}/readyz?strict=1")
        b = None
        if args.ab or args.layers_off:
            b_port = free_port()
            b_config = os.path.join(work, "b.toml")
            with open(config) as f, open(b_config, "w") as g:
                g.write(f.read().replace(f"127.0.0.1:{gw_port}", f"127.0.0.1:{b_port}"))
                if args.layers_off:
                    g.write(LAYERS_OFF)
            b = start([args.ab or gateway, "serve", "--config", b_config])
            wait_http(f"http://127.0.0.1:{b_port}/readyz?strict=1")
        time.sleep(1.0)
        rss_idle = rss_mb(gw.pid)
        if b:
            print(f"B: RSS idle {rss_mb(b.pid):.1f} MB", file=sys.stderr)

        targets = {
            "direct": (f"http://127.0.0.1:{up_port}/mcp", "echo", upstream.pid),
            "sekisho-http": (f"http://127.0.0.1:{gw_port}/mcp", "h__echo", gw.pid),
            "sekisho-stdio": (f"http://127.0.0.1:{gw_port}/mcp", "s__echo", gw.pid),
        }
        if args.cache:
            # `c` is the same HTTP upstream, trusted: its read-only echo is cached.
            del targets["sekisho-stdio"]
            targets["cache-miss"] = (f"http://127.0.0.1:{gw_port}/mcp", "c__echo", gw.pid, ["--distinct", "0"])
            targets["cache-hit"] = (f"http://127.0.0.1:{gw_port}/mcp", "c__echo", gw.pid, ["--distinct", "64"])
            # The same comparison against an upstream whose echo takes 2 ms (real work).
            targets["direct-2ms"] = (f"http://127.0.0.1:{slow_port}/mcp", "echo", slow.pid)
            targets["cache-hit-2ms"] = (f"http://127.0.0.1:{gw_port}/mcp", "d__echo", gw.pid, ["--distinct", "64"])
        if args.per_client:
            del targets["sekisho-stdio"]
            targets["sekisho-http-pc"] = (f"http://127.0.0.1:{gw_port}/mcp", "p__echo", gw.pid)
            targets["sekisho-http-legacy"] = (f"http://127.0.0.1:{gw_port}/mcp", "hl__echo", gw.pid)
            targets["sekisho-http-legacy-pc"] = (f"http://127.0.0.1:{gw_port}/mcp", "pl__echo", gw.pid)
        if b:
            targets["B-http"] = (f"http://127.0.0.1:{b_port}/mcp", "h__echo", b.pid)
            targets["B-stdio"] = (f"http://127.0.0.1:{b_port}/mcp", "s__echo", b.pid)
        for name, env in (("supergateway", "SUPERGATEWAY"), ("mcp-proxy", "MCP_PROXY")):
            binary = os.environ.get(env)
            if binary and shutil.which(binary):
                port = free_port()
                if name == "supergateway":
                    cmd = [binary, "--stdio", f"{echo} stdio", "--outputTransport", "streamableHttp", "--port", str(port)]
                    url = f"http://127.0.0.1:{port}/mcp"
                else:
                    cmd = [binary, "--port", str(port), "--", echo, "stdio"]
                    url = f"http://127.0.0.1:{port}/mcp"
                p = start(cmd)
                time.sleep(3)
                targets[name] = (url, "echo", p.pid)

        def load(url: str, tool: str, conc: int, seconds: float, kib: int | None, extra: list[str] | None = None) -> dict:
            cmd = [loadgen, "--url", url, "--tool", tool if kib is None else tool.replace("echo", "big"),
                   "--era", args.era, "--concurrency", str(conc), "--duration", str(seconds), "--warmup", "0.5",
                   *(extra or [])]
            if kib is not None:
                cmd += ["--kib", str(kib)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
            if out.returncode != 0:
                raise SystemExit(f"loadgen failed on {url} {tool}:\n{out.stderr}")
            return json.loads(out.stdout)

        if args.soak:
            sampler = Sampler(gw.pid, every=5.0)
            sampler.start()
            r = load(*targets["sekisho-http"][:2], 32, args.soak, None)
            sampler.stop.set()
            first, last = sampler.series[1][1], sampler.series[-1][1]
            print(json.dumps({"soak_seconds": args.soak, "requests": r["requests"], "errors": r["errors"], "rps": r["rps"],
                              "rss_mb_idle": round(rss_idle, 2), "rss_mb_series": sampler.series,
                              "rss_growth_mb_after_warmup": round(last - first, 2)}))
            return

        cells = [(1, None), (32, None)] if args.cache else [(1, None), (32, None), (1, 16), (32, 16)]
        if args.conc:
            cells = [c for c in cells if c[0] == args.conc]
        results: dict = {}
        errors = 0
        for conc, kib in cells:
            for rep in range(args.reps):
                order = list(targets)
                random.shuffle(order)
                for name in order:
                    url, tool, pid, *extra = targets[name]
                    sampler = Sampler(pid)
                    sampler.start()
                    cpu0 = cpu_seconds(pid)
                    r = load(url, tool, conc, args.seconds, kib, extra[0] if extra else None)
                    cpu = cpu_seconds(pid) - cpu0
                    sampler.stop.set()
                    sampler.join()
                    # The warm-up requests are not in r["requests"]; measure CPU over the timed part only
                    # by scaling with the measured duration share.
                    timed_share = r["seconds"] / (r["seconds"] + 0.5)
                    entry = results.setdefault((conc, kib, name), {"runs": []})
                    entry["runs"].append({**r, "cpu_s": cpu * timed_share, "rss_max_mb": sampler.max})
                    errors += r["errors"]
                    print(f"  c={conc:<2} {'16KiB' if kib else 'small':5} {name:14} rep {rep + 1}: "
                          f"{r['rps']:>9.0f} req/s  p50 {r['p50_us']:>6} µs  p99 {r['p99_us']:>6} µs  "
                          f"cpu {1e6 * cpu * timed_share / max(r['requests'], 1):6.1f} µs/req  errors {r['errors']}",
                          file=sys.stderr, flush=True)

        rows = []
        for conc, kib in cells:
            for name in targets:
                base = "direct-2ms" if name.endswith("-2ms") else "direct"
                d_rps = statistics.median(x["rps"] for x in results[(conc, kib, base)]["runs"])
                runs = results[(conc, kib, name)]["runs"]
                rps = statistics.median(x["rps"] for x in runs)
                reqs = sum(x["requests"] for x in runs)
                cpu_us = 1e6 * sum(x["cpu_s"] for x in runs) / max(reqs, 1)
                rows.append({
                    "concurrency": conc, "payload": "16KiB" if kib else "small", "target": name,
                    "rps": round(rps), "ratio_to_direct": round(rps / d_rps, 2),
                    "p50_us": statistics.median(x["p50_us"] for x in runs),
                    "p99_us": statistics.median(x["p99_us"] for x in runs),
                    "p999_us": statistics.median(x["p999_us"] for x in runs),
                    "cpu_us_per_req": round(cpu_us, 1),
                    "rss_max_mb": round(max(x["rss_max_mb"] for x in runs), 1),
                    "errors": sum(x["errors"] for x in runs),
                })
        print(f"\nsekisho {gw_port}: RSS idle {rss_idle:.1f} MB; client era {args.era}; {args.seconds:g} s x {args.reps} reps per cell\n")
        print("| conc | payload | target | req/s | × direct | p50 µs | p99 µs | p99.9 µs | CPU µs/req (process) | RSS max MB | errors |")
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['concurrency']} | {r['payload']} | {r['target']} | {r['rps']} | {r['ratio_to_direct']:.2f} | {r['p50_us']:.0f} "
                  f"| {r['p99_us']:.0f} | {r['p999_us']:.0f} | {r['cpu_us_per_req']} | {r['rss_max_mb']} | {r['errors']} |")
        idle = idle_sessions(f"http://127.0.0.1:{gw_port}/mcp", gw.pid, args.idle_sessions) if args.per_client else None
        if idle:
            print(f"\nidle sessions: {json.dumps(idle)}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rss_idle_mb": rss_idle, "era": args.era, "rows": rows, "idle_sessions": idle}, f, indent=1)
        total = sum(r["errors"] for r in rows)
        failed = sum(1 for r in rows if r["errors"])
        print(f"\nbench: {len(rows) - failed} passed, {failed} failed")
        if total:
            raise SystemExit(1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
