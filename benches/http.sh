#!/usr/bin/env bash
# HTTP load from a separate process (wrk) on loopback against a release `yishi serve`:
# requests per second and p50/p99 latency for reading an instance and for submitting an action.
# Prints `name value unit` lines. Needs wrk (Debian: apt-get install wrk).
# Usage: benches/http.sh [seconds] [connections] [full|normal]   (the third is `serve --sync`)
# YISHI_BIN=path measures that binary instead of building this checkout (two builds compared).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}; conns=${2:-32}; sync=${3:-full}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
if [ -z "${YISHI_BIN:-}" ]; then cargo build --release --quiet --manifest-path "$root/Cargo.toml"; fi
yishi=${YISHI_BIN:-$root/target/release/yishi}
work=$(mktemp -d); trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
(cd "$work" && exec "$yishi" serve --workflows "$root/workflows" --listen "127.0.0.1:$port" --no-watch --sync "$sync" >serve.log 2>err.log) & pid=$!
for _ in $(seq 1 200); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
token=$(grep -o 'yishi_[0-9a-f]*_[0-9a-f]*' "$work/err.log")
api="http://127.0.0.1:$port/api/v1"
for _ in $(seq 1 100); do
  curl -sf "$api/instances" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"workflow":"bench/counter"}' >/dev/null
done
cat >"$work/read.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
request = function() return wrk.format("GET", "/api/v1/instances/" .. math.random(1, 100)) end
LUA
cat >"$work/act.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["Content-Type"] = "application/json"
request = function() return wrk.format("POST", "/api/v1/instances/" .. math.random(1, 100) .. "/actions", nil, '{"action":"tick"}') end
LUA
report() { # name, wrk output
  local rps p50 p99
  rps=$(echo "$2" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$2" | awk '$1=="50%" {print $2}')
  p99=$(echo "$2" | awk '$1=="99%" {print $2}')
  echo "http_${1}_requests_per_second $rps req/s"
  echo "http_${1}_latency_p50 $p50"
  echo "http_${1}_latency_p99 $p99"
  non2xx=$(echo "$2" | awk '/Non-2xx/ {print $NF}'); [ -z "$non2xx" ] || echo "http_${1}_non_2xx $non2xx responses"
}
echo "# $(date -u +%FT%TZ) $(git -C "$root" rev-parse --short HEAD) $(nproc) cores, ${secs}s, $conns connections, --sync $sync, wrk on loopback"
report read_instance "$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$work/read.lua" "http://127.0.0.1:$port")"
report submit_action "$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$work/act.lua" "http://127.0.0.1:$port")"
