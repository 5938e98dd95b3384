#!/usr/bin/env bash
# Yishi on PostgreSQL with 1, 2 and 3 nodes on one database, beside SQLite, in one run.
# - engine: `yishi bench reference` (one at a time) and `yishi bench concurrent` (256 in flight
#   per node), each node a process of its own on the same fresh database; instances/s and
#   transitions/s summed over the nodes; the CPU seconds of each node (from /usr/bin/time) and of
#   the whole machine (from /proc/stat), so that PostgreSQL's share is what is left;
# - HTTP: 1, 2 and 3 `yishi serve` nodes on one database, one wrk per node submitting actions on
#   2,000 shared cases (as a load balancer spreads a district's requests); requests/s summed,
#   the worst p99.
# Prints `name value unit` lines, then a table. Needs wrk and GNU time (Debian: wrk, time).
# Usage: benches/pg-nodes.sh [instances per run] [http seconds]
# YISHI_BENCH_POSTGRES: the server (default postgres://postgres@127.0.0.1:5432/postgres); the
# script creates and drops databases named yishi_bench_* there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-40000}; secs=${2:-10}
server=${YISHI_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
base=${server%/*}
for tool in wrk psql /usr/bin/time; do command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 2; }; done
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
yishi="$root/target/release/yishi"
work=$(mktemp -d); pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

fresh() { # a new empty database; prints its address
  psql -q "$server" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null 2>&1
  echo "$base/$1"
}
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
hz=$(getconf CLK_TCK)
echo "# $(date -u +%FT%TZ) $(git -C "$root" rev-parse --short HEAD) $(nproc) cores, $n instances a run"

declare -A fig
# SQLite, the same run.
fig[sqlite_reference]=$("$yishi" bench reference --n 3000 --workflows "$root/workflows" | awk '/instances_per_second/ {print $2}')
fig[sqlite_concurrent]=$("$yishi" bench concurrent --n "$n" --clients 256 --workflows "$root/workflows" | awk '/instances_per_second/ {print $2}')
db=$(fresh yishi_bench_ref)
fig[pg_reference]=$("$yishi" bench reference --n 3000 --workflows "$root/workflows" --db "$db" | awk '/instances_per_second/ {print $2}')

for k in 1 2 3; do
  db=$(fresh "yishi_bench_$k")
  # Each node's schema set-up and activation first (a short run), so that the measured runs overlap.
  "$yishi" bench concurrent --n 10 --clients 1 --workflows "$root/workflows" --db "$db" >/dev/null
  b0=$(busy)
  for i in $(seq 1 "$k"); do
    /usr/bin/time -f "%U %S %e" -o "$work/time.$k.$i" \
      "$yishi" bench concurrent --n $((n / k)) --clients 256 --workflows "$root/workflows" --db "$db" >"$work/out.$k.$i" &
    pids+=($!)
  done
  wait "${pids[@]}"; pids=()
  b1=$(busy)
  total=0; steps=0; cpu=""; wall=0
  for i in $(seq 1 "$k"); do
    r=$(awk '/concurrent_instances_per_second/ {print $2}' "$work/out.$k.$i")
    s=$(awk '/concurrent_step_transitions_per_second/ {print $2}' "$work/out.$k.$i")
    total=$(echo "$total + $r" | bc); steps=$(echo "$steps + $s" | bc)
    read -r u sy e <"$work/time.$k.$i"
    cpu="$cpu $(echo "$u + $sy" | bc)"; wall=$(echo "if ($e > $wall) $e else $wall" | bc)
    nodes_cpu=$(echo "${nodes_cpu:-0} + $u + $sy" | bc)
  done
  machine=$(echo "scale=2; ($b1 - $b0) / $hz" | bc)
  echo "pg_concurrent_${k}_nodes_instances_per_second $total inst/s"
  echo "pg_concurrent_${k}_nodes_step_transitions_per_second $steps steps/s"
  echo "pg_concurrent_${k}_nodes_cpu_seconds_per_node$cpu s (wall $wall s; machine busy $machine s, of which PostgreSQL and the rest $(echo "$machine - $nodes_cpu" | bc) s)"
  fig[pg_concurrent_$k]=$total; fig[pg_cpu_$k]="$cpu / $machine"
  unset nodes_cpu
done

# HTTP: k serve nodes, one wrk per node.
cat >"$work/act.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.headers["Content-Type"] = "application/json"
request = function() return wrk.format("POST", "/api/v1/instances/" .. math.random(1, 2000) .. "/actions", nil, '{"action":"tick"}') end
LUA
for k in 1 2 3; do
  db=$(fresh "yishi_bench_http_$k")
  ports=()
  for i in $(seq 1 "$k"); do
    port=$((20000 + RANDOM % 20000)); ports+=("$port")
    mkdir -p "$work/node$k$i"
    (cd "$work/node$k$i" && exec "$yishi" serve --workflows "$root/workflows" --db "$db" --listen "127.0.0.1:$port" --no-watch >serve.log 2>err.log) &
    pids+=($!)
    for _ in $(seq 1 300); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  done
  token=$(grep -ho 'yishi_[0-9a-f]*_[0-9a-f]*' "$work"/node"$k"*/err.log | head -1)
  seq 1 2000 | xargs -P 8 -I{} curl -sf --retry 3 --retry-all-errors "http://127.0.0.1:${ports[0]}/api/v1/instances" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"workflow":"bench/counter"}' -o /dev/null \
    || echo "# some cases could not be started; actions on them count as non-2xx" >&2
  wrks=()
  for port in "${ports[@]}"; do
    TOKEN=$token wrk -t1 -c$((32 / k)) -d"${secs}s" --latency -s "$work/act.lua" "http://127.0.0.1:$port" >"$work/wrk.$k.$port" &
    wrks+=($!)
  done
  wait "${wrks[@]}"
  rps=0; p99=0
  for port in "${ports[@]}"; do
    r=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.$k.$port"); rps=$(echo "$rps + $r" | bc)
    p=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else {sub(/s/,"",v); v=v*1000}; print v}' "$work/wrk.$k.$port")
    p99=$(echo "if ($p > $p99) $p else $p99" | bc)
  done
  echo "pg_http_${k}_nodes_submit_action_requests_per_second $rps req/s"
  echo "pg_http_${k}_nodes_submit_action_latency_p99 $p99 ms"
  non2xx=$(cat "$work"/wrk."$k".* | awk '/Non-2xx/ {s += $NF} END {print s + 0}')
  [ "$non2xx" = 0 ] || echo "pg_http_${k}_nodes_non_2xx $non2xx responses"
  fig[http_$k]="$rps req/s, p99 $p99 ms"
  kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=()
done
for d in ref 1 2 3 http_1 http_2 http_3; do psql -q "$server" -c "DROP DATABASE IF EXISTS yishi_bench_$d WITH (FORCE)" >/dev/null; done

echo
echo "| figure | SQLite | PostgreSQL, 1 node | 2 nodes | 3 nodes |"
echo "|---|---|---|---|---|"
echo "| reference, one at a time (inst/s) | ${fig[sqlite_reference]} | ${fig[pg_reference]} | | |"
echo "| concurrent, 256 in flight per node (inst/s) | ${fig[sqlite_concurrent]} | ${fig[pg_concurrent_1]} | ${fig[pg_concurrent_2]} | ${fig[pg_concurrent_3]} |"
echo "| CPU s per node / whole machine | | ${fig[pg_cpu_1]} | ${fig[pg_cpu_2]} | ${fig[pg_cpu_3]} |"
echo "| HTTP submit an action (32 connections in all) | | ${fig[http_1]} | ${fig[http_2]} | ${fig[http_3]} |"
