#!/usr/bin/env python3
"""What an idle per-client upstream session costs the gateway, on a fresh gateway: the RSS
growth over rounds of N client sessions (legacy, 2025-11-25) that each make one call through an
HTTP upstream with `session = "per-client"` (each starting its own upstream session), then idle
for 12 s, against the same with `session = "shared"`.

A legacy per-client session opens its upstream GET stream for its first call and closes it 5 s
after (`upstream/http/gate.rs`), so a round's N streams are open together for a moment: round 1
also shows the memory the allocator keeps after they close; later rounds reuse it, and their
growth is the steady cost of one more idle session.

Usage (from the repo root, after `cargo build --release --workspace --bins`):
  python3 bench/idle_per_client_sessions.py [N=1000] [ROUNDS=3]
Environment: CARGO_TARGET_DIR (binaries from its release folder, else target/release).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import matrix  # noqa: E402  (legacy_session, legacy_post, rss_mb, free_port, wait_http)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINS = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")


def run(n: int, rounds: int, era: str, mode: str) -> list[float]:
    """KiB of gateway RSS growth per session, per round."""
    work = tempfile.mkdtemp(prefix="sekisho-idle-")
    up_port, gw_port = matrix.free_port(), matrix.free_port()
    up = subprocess.Popen([f"{BINS}/echo-upstream", "http", "--listen", f"127.0.0.1:{up_port}", "--era", era],
                          stderr=subprocess.DEVNULL)
    extra = f'max_client_sessions = 4096\nidle_timeout = "30m"\n' if mode == "per-client" else ""
    cfg = os.path.join(work, "sekisho.toml")
    with open(cfg, "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{gw_port}"\nmax_sessions_per_caller = 100000\n[log]\nlevel = "warn"\n'
                f'[upstreams.p]\nurl = "http://127.0.0.1:{up_port}/mcp"\nsession = "{mode}"\n{extra}')
    gw = subprocess.Popen([f"{BINS}/sekisho", "serve", "--config", cfg], stderr=open(os.path.join(work, "gw.log"), "wb"))
    try:
        matrix.wait_http(f"http://127.0.0.1:{gw_port}/readyz?strict=1")
        time.sleep(1)
        url = f"http://127.0.0.1:{gw_port}/mcp"
        out = []
        for _ in range(rounds):
            before = matrix.rss_mb(gw.pid)
            for _ in range(n):
                s = matrix.legacy_session(url)
                call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "p__echo", "arguments": {"message": "x"}}}
                matrix.legacy_post(url, s, call)
            time.sleep(12.0)
            out.append(round((matrix.rss_mb(gw.pid) - before) * 1024 / n, 1))
        stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{up_port}/stats"))
        print(f"  {era:6} {mode:10}: KiB/session by round {out}; upstream streams open at the end: "
              f"GET {stats['get_streams']}, listen {stats['listen_streams']}", flush=True)
        return out
    finally:
        gw.kill()
        up.kill()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(f"{n} legacy client sessions per round, one call each, then 12 s idle; fresh gateway per line")
    result = {}
    for era in ("legacy", "dual"):
        shared, per_client = run(n, rounds, era, "shared"), run(n, rounds, era, "per-client")
        result[era] = [round(p - s, 1) for p, s in zip(per_client, shared)]
    print("per idle per-client upstream session (per-client minus shared), KiB by round:", json.dumps(result))


if __name__ == "__main__":
    main()
