#!/usr/bin/env python3
"""RSS of idle legacy client sessions (issue 12's budget: 1,000 idle legacy client sessions
<= 20 MB): a fresh release gateway in front of the HTTP echo upstream; after one warm-up
session, n legacy sessions are opened (initialize + one tools/call each) and left idle; prints
the gateway's RSS before and after.

Usage (from the repo root, after cargo build --release --workspace --bins):
  CARGO_TARGET_DIR=... python3 bench/idle_legacy_sessions.py [N]     (default N = 1000)
"""
import sys, os, time, json, tempfile, subprocess
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import matrix as m
T = os.environ.get("CARGO_TARGET_DIR", "target") + "/release"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
up_port, gw_port = m.free_port(), m.free_port()
work = tempfile.mkdtemp()
up = subprocess.Popen([T + "/echo-upstream", "http", "--listen", f"127.0.0.1:{up_port}"], stderr=subprocess.DEVNULL)
cfg = os.path.join(work, "s.toml")
open(cfg, "w").write(f'[server]\nlisten = "127.0.0.1:{gw_port}"\nmax_sessions_per_caller = 100000\n[log]\nlevel = "warn"\n[upstreams.h]\nurl = "http://127.0.0.1:{up_port}/mcp"\n')
gw = subprocess.Popen([T + "/sekisho", "serve", "--config", cfg], stderr=subprocess.DEVNULL)
m.wait_http(f"http://127.0.0.1:{gw_port}/readyz?strict=1")
url = f"http://127.0.0.1:{gw_port}/mcp"
# warm up: one session and call, so lazily built state is counted in the baseline
s = m.legacy_session(url); m.legacy_post(url, s, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "h__echo", "arguments": {"message": "x"}}})
time.sleep(1.0)
before = m.rss_mb(gw.pid)
for i in range(N):
    s = m.legacy_session(url)
    m.legacy_post(url, s, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "h__echo", "arguments": {"message": "x"}}})
time.sleep(2.0)
after = m.rss_mb(gw.pid)
print(json.dumps({"rss_before_mb": round(before, 2), "sessions": N, "rss_after_mb": round(after, 2), "growth_mb": round(after - before, 2), "kib_per_session": round((after - before) * 1024 / N, 2)}))
gw.terminate(); up.terminate()
