#!/usr/bin/env bash
# Runs the peer engines' reference workflow (../shared/peers/run.sh: SpiffWorkflow, bpmn-engine,
# acts; in memory) and Yishi's `reference` and `concurrent` cases (durable, SQLite) in the same
# run, and prints each figure and the ratio of Yishi to each peer, then one table with the floor
# and every ratio, so that one run gives the whole picture. Release build.
#
# Usage: benches/peers.sh [N]     (N instances; default 20000; ROUNDS=k rounds of Yishi and the
#                                  floor, alternating, each figure their median; default 3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=${PEERS_DIR:-$root/../shared/peers}
N=${1:-20000}
[ -x "$peers/run.sh" ] || { echo "peers not found at $peers (set PEERS_DIR)" >&2; exit 2; }

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
yishi="$root/target/release/yishi"

echo "# $(date -u +%FT%TZ) commit $(git -C "$root" rev-parse --short HEAD) $(nproc) cores"
# SpiffWorkflow, the peer the aims are set against, runs in every round (below); the others once.
other_peers=$("$peers/run.sh" "$N" bpmn-engine acts)
echo "$other_peers"
# Yishi's figures, the floor and SpiffWorkflow, in ROUNDS rounds that alternate them (default 3), each figure
# the median of its rounds: on a shared machine the disk's speed moves from one minute to the
# next, so one run of each, minutes apart, compares two different disks.
rounds=${ROUNDS:-3}
# Concurrent runs long enough (at least 100,000 instances) to measure the steady state.
con_n=$(( N > 100000 ? N : 100000 ))
all=""
for round in $(seq 1 "$rounds"); do
  # The same reference with commits synced at checkpoints only, and raw SQLite writing the same
  # rows one transaction at a time (the floor under `reference` on this disk).
  # Each durability's floor right after Yishi's figure it divides.
  lines=$(cd "$root" && "$yishi" bench reference --n "$N"
    python3 "$here/sqlite-floor.py" "$N" FULL
    "$yishi" bench reference --n "$N" --sync normal | sed 's/^reference_/reference_sync_normal_/'
    python3 "$here/sqlite-floor.py" "$N" NORMAL
    "$yishi" bench concurrent --n "$con_n"
    "$peers/run.sh" "$N" spiffworkflow | awk '{print "peer_spiffworkflow_instances_per_second", $3, "inst/s"}')
  echo "# round $round of $rounds"
  echo "$lines"
  # Each round's share of its floor, measured side by side.
  shares=$(echo "$lines" | awk '{v[$1]=$2} END {
    printf "round_reference_of_floor_full %.4f share\n", v["reference_instances_per_second"] / v["sqlite_floor_full_instances_per_second"]
    printf "round_normal_of_floor_normal %.4f share\n", v["reference_sync_normal_instances_per_second"] / v["sqlite_floor_normal_instances_per_second"] }')
  echo "$shares"
  lines="$lines"$'\n'"$shares"
  all="$all$lines"$'\n'
done
# The median of a figure over the rounds.
median() { echo "$all" | awk -v k="$1" '$1==k{print $2}' | sort -g | awk '{v[NR]=$1} END { if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }
floor=$(median sqlite_floor_full_instances_per_second)
floor_normal=$(median sqlite_floor_normal_instances_per_second)
ref=$(median reference_instances_per_second)
normal=$(median reference_sync_normal_instances_per_second)
con=$(median concurrent_instances_per_second)
# A share of the floor is the median of the rounds' shares (each figure over the floor measured
# right after it), not the ratio of two medians: the disk's speed drifts between rounds.
share_full=$(median round_reference_of_floor_full)
share_normal=$(median round_normal_of_floor_normal)
peer_lines="PEER spiffworkflow $(median peer_spiffworkflow_instances_per_second)"$'\n'"$other_peers"
echo "# medians of $rounds rounds"
echo "$peer_lines" | head -1
echo "YISHI reference $ref"
echo "YISHI concurrent $con"
echo "ratio reference/sqlite-floor-full $share_full (median of the rounds)"
echo "$peer_lines" | while read -r _ name rate _; do
  [ -n "${rate:-}" ] || continue
  awk -v p="$name" -v r="$rate" -v a="$ref" -v b="$con" 'BEGIN { printf "ratio reference/%s %.2f\nratio concurrent/%s %.2f\n", p, a / r, p, b / r }'
done

# One table: each of Yishi's figures, its share of the raw SQLite floor of the same durability,
# and its ratio to each peer.
names=$(echo "$peer_lines" | awk 'NF >= 3 {print $2}')
echo
printf '| figure | instances/s | of the SQLite floor |'
for p in $names; do printf ' vs %s |' "$p"; done
printf '\n|---|---|---|'
for _ in $names; do printf -- '---|'; done
printf '\n'
row() { # label, rate, share of the floor (or empty)
  printf '| %s | %.0f | ' "$1" "$2"
  if [ -n "$3" ]; then awk -v s="$3" 'BEGIN { printf "%.0f%%", 100 * s }'; fi
  printf ' |'
  echo "$peer_lines" | awk 'NF >= 3 {print $3}' | while read -r r; do awk -v a="$2" -v r="$r" 'BEGIN { printf " %.2fx |", a / r }'; done
  printf '\n'
}
row "reference, durable (FULL), one at a time" "$ref" "$share_full"
row "reference --sync normal" "$normal" "$share_normal"
row "concurrent, durable, 256 in flight" "$con" ""
printf '| raw SQLite floor, FULL / NORMAL | %.0f / %.0f | |' "$floor" "$floor_normal"
for _ in $names; do printf ' |'; done
printf '\n'
