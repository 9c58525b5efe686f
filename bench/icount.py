#!/usr/bin/env python3
"""Instructions per call of one or more sekisho binaries, counted by callgrind: deterministic
where CPU time on shared machines is not. For each binary, the gateway runs under
`valgrind --tool=callgrind` in front of the echo upstream (HTTP `h`, stdio `s`); for each cell
(HTTP/stdio x small/16 KiB, concurrency 32) it serves a warm-up, then its counters are zeroed,
N calls are made, and the counters are dumped: instructions / N.

Usage (from the repo root, after `cargo build --release --workspace --bins`):
  python3 bench/icount.py base=/path/to/old/sekisho new=$CARGO_TARGET_DIR/release/sekisho
Environment: PER_CLIENT=1 (the cells become shared vs per-client HTTP sessions, small calls:
`h`/`p` on the dual-era upstream spoken in 2026-07-28, `hl`/`pl` on a legacy-only one),
N (calls per cell, default 2000), BINS (folder of echo-upstream and loadgen,
default $CARGO_TARGET_DIR/release or target/release), KEEP (a folder to keep the dumps in, for
callgrind_annotate).
"""
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINS = os.environ.get("BINS") or os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
N = int(os.environ.get("N", "2000"))
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def wait(url, limit=120):
    end = time.time() + limit
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2).read(); return
        except Exception:
            time.sleep(0.5)
    raise SystemExit("not ready: " + url)

def measure(gateway, label, work):
    up = free_port()
    echo = subprocess.Popen([f"{BINS}/echo-upstream", "http", "--listen", f"127.0.0.1:{up}"], stderr=subprocess.DEVNULL)
    legacy = free_port()
    per_client = os.environ.get("PER_CLIENT") == "1"
    twin = subprocess.Popen([f"{BINS}/echo-upstream", "http", "--listen", f"127.0.0.1:{legacy}", "--era", "legacy"],
                            stderr=subprocess.DEVNULL) if per_client else None
    port = free_port()
    cfg = os.path.join(work, f"{label}.toml")
    open(cfg, "w").write(f'''[server]
listen = "127.0.0.1:{port}"
[log]
level = "warn"
[upstreams.h]
url = "http://127.0.0.1:{up}/mcp"
[upstreams.s]
command = "{BINS}/echo-upstream"
args = ["stdio"]
''' + (f'''[upstreams.p]
url = "http://127.0.0.1:{up}/mcp"
session = "per-client"
[upstreams.hl]
url = "http://127.0.0.1:{legacy}/mcp"
[upstreams.pl]
url = "http://127.0.0.1:{legacy}/mcp"
session = "per-client"
''' if per_client else ""))
    out = os.path.join(work, f"{label}.cg")
    gw = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", "--collect-atstart=yes",
                           gateway, "serve", "--config", cfg], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait(f"http://127.0.0.1:{port}/readyz?strict=1")
        res = {}
        cells = (("h__echo", None), ("s__echo", None), ("h__echo", 16), ("s__echo", 16))
        if per_client:
            cells = (("h__echo", None), ("p__echo", None), ("hl__echo", None), ("pl__echo", None))
        for tool, kib in cells:
            t = tool if kib is None else tool.replace("echo", "big")
            base = [f"{BINS}/loadgen", "--url", f"http://127.0.0.1:{port}/mcp", "--tool", t, "--concurrency", "32", "--warmup", "0"]
            if kib: base += ["--kib", str(kib)]
            for _ in range(60):
                if subprocess.run(base + ["--requests", "300"], capture_output=True).returncode == 0:
                    break
                time.sleep(1)
            else:
                raise SystemExit("warm-up never succeeded")
            subprocess.run(["callgrind_control", "-z", str(gw.pid)], check=True, capture_output=True)
            r = subprocess.run(base + ["--requests", str(N)], check=True, capture_output=True, text=True)
            assert json.loads(r.stdout)["errors"] == 0
            before = set(glob.glob(out + ".*"))
            subprocess.run(["callgrind_control", "-d", str(gw.pid)], check=True, capture_output=True)
            time.sleep(1)
            new = sorted(set(glob.glob(out + ".*")) - before) or sorted(glob.glob(out + ".*"))
            total = 0
            for line in open(new[-1]):
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = int(line.split()[1]); break
            cell = tool.split("__")[0] if per_client else ('http' if tool.startswith('h') else 'stdio')
            res[f"{cell} {'16KiB' if kib else 'small'}"] = total / N
            keep = os.environ.get("KEEP")
            for f in new:
                if keep: os.rename(f, f"{keep}/{label}-{tool}-{kib or 0}.cg")
                else: os.remove(f)
        return res
    finally:
        gw.terminate(); echo.terminate()
        if twin: twin.terminate()
        try: gw.wait(30)
        except Exception: gw.kill()

work = tempfile.mkdtemp()
results = {}
for label, gw in [(a.split("=")[0], a.split("=")[1]) for a in sys.argv[1:]]:
    results[label] = measure(gw, label, work)
    print(label, json.dumps(results[label]), flush=True)
labels = list(results)
print("| cell | " + " | ".join(labels) + " |")
for cell in results[labels[0]]:
    print(f"| {cell} | " + " | ".join(f"{results[l][cell]:.0f}" for l in labels) + " |")
