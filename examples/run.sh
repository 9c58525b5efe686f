#!/usr/bin/env bash
# Run sekisho in front of real MCP servers: @modelcontextprotocol/server-everything (npm) and
# mcp-server-time (PyPI), at pinned versions. Installs what it needs under .sekisho/ and
# serves Streamable HTTP on http://127.0.0.1:8080/mcp until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null || { echo "run.sh: $1 is required ($2)" >&2; exit 1; }; }
need cargo "https://rustup.rs"
need npx "Node.js 20+"
need python3 "Python 3.10+"

if [ ! -x .sekisho/venv/bin/mcp-server-time ]; then
  echo "installing mcp-server-time 2026.10.19 into .sekisho/venv" >&2
  python3 -m venv .sekisho/venv
  .sekisho/venv/bin/pip install --quiet mcp-server-time==2026.10.19
fi
# Warm npx's cache so the first start does not count the download against startup_timeout.
npx -y @modelcontextprotocol/server-everything@2026.8.31 --help >/dev/null 2>&1 </dev/null || true

cargo build --release --quiet
exec target/release/sekisho serve --config examples/sekisho.toml "$@"
