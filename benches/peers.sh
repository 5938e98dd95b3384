#!/usr/bin/env bash
# Runs the peer engines' reference workflow (../shared/peers/run.sh: SpiffWorkflow, bpmn-engine,
# acts; in memory) and Yishi's `reference` and `concurrent` cases (durable, SQLite) in the same
# run, and prints each figure and the ratio of Yishi to each peer, then one table with the floor
# and every ratio, so that one run gives the whole picture. Release build.
#
# Usage: benches/peers.sh [N]     (N instances; default 20000)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=${PEERS_DIR:-$root/../shared/peers}
N=${1:-20000}
[ -x "$peers/run.sh" ] || { echo "peers not found at $peers (set PEERS_DIR)" >&2; exit 2; }

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
yishi="$root/target/release/yishi"

echo "# $(date -u +%FT%TZ) commit $(git -C "$root" rev-parse --short HEAD) $(nproc) cores"
peer_lines=$("$peers/run.sh" "$N")
echo "$peer_lines"
ref_lines=$(cd "$root" && "$yishi" bench reference --n "$N")
# Concurrent runs long enough (at least 100,000 instances) to measure the steady state.
con_n=$(( N > 100000 ? N : 100000 ))
con_lines=$(cd "$root" && "$yishi" bench concurrent --n "$con_n")
echo "$ref_lines"
echo "$con_lines"
# The same reference with commits synced at checkpoints only, and raw SQLite writing the same
# rows one transaction at a time (the floor under `reference` on this disk).
normal_lines=$(cd "$root" && "$yishi" bench reference --n "$N" --sync normal | sed 's/^reference_/reference_sync_normal_/')
echo "$normal_lines"
floor_lines=$(python3 "$here/sqlite-floor.py" "$N")
echo "$floor_lines"
floor=$(echo "$floor_lines" | awk '$1=="sqlite_floor_full_instances_per_second"{print $2}')
ref=$(echo "$ref_lines" | awk '$1=="reference_instances_per_second"{print $2}')
con=$(echo "$con_lines" | awk '$1=="concurrent_instances_per_second"{print $2}')
echo "YISHI reference $ref"
echo "YISHI concurrent $con"
awk -v a="$ref" -v f="$floor" 'BEGIN { printf "ratio reference/sqlite-floor-full %.2f\n", a / f }'
echo "$peer_lines" | while read -r _ name rate _; do
  [ -n "${rate:-}" ] || continue
  awk -v p="$name" -v r="$rate" -v a="$ref" -v b="$con" 'BEGIN { printf "ratio reference/%s %.2f\nratio concurrent/%s %.2f\n", p, a / r, p, b / r }'
done

# One table: each of Yishi's figures, its share of the raw SQLite floor of the same durability,
# and its ratio to each peer.
floor_normal=$(echo "$floor_lines" | awk '$1=="sqlite_floor_normal_instances_per_second"{print $2}')
normal=$(echo "$normal_lines" | awk '$1=="reference_sync_normal_instances_per_second"{print $2}')
names=$(echo "$peer_lines" | awk 'NF >= 3 {print $2}')
echo
printf '| figure | instances/s | of the SQLite floor |'
for p in $names; do printf ' vs %s |' "$p"; done
printf '\n|---|---|---|'
for _ in $names; do printf -- '---|'; done
printf '\n'
row() { # label, rate, floor (or empty)
  printf '| %s | %.0f | ' "$1" "$2"
  if [ -n "$3" ]; then awk -v a="$2" -v f="$3" 'BEGIN { printf "%.0f%%", 100 * a / f }'; fi
  printf ' |'
  echo "$peer_lines" | awk 'NF >= 3 {print $3}' | while read -r r; do awk -v a="$2" -v r="$r" 'BEGIN { printf " %.2fx |", a / r }'; done
  printf '\n'
}
row "reference, durable (FULL), one at a time" "$ref" "$floor"
row "reference --sync normal" "$normal" "$floor_normal"
row "concurrent, durable, 256 in flight" "$con" ""
printf '| raw SQLite floor, FULL / NORMAL | %.0f / %.0f | |' "$floor" "$floor_normal"
for _ in $names; do printf ' |'; done
printf '\n'
