#!/usr/bin/env bash
# Measures the AllReduce algorithm crossovers behind collectives'
# DefaultTuning: every algorithm, interleaved, R rounds, on 2, 3 and 4 local
# ranks, one JSON row per line on stdout prefixed with the round and the
# algorithm. Summarise with: python3 bench/peers/crossover.py < out.jsonl
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${R:-3}
bin=$(mktemp -d)/allreduce
go build -o "$bin" ./bench/allreduce
for round in $(seq "$R"); do
  for np in 2 3 4; do
    for algo in rd rabenseifner ring; do
      "$bin" -np "$np" -b 1K -e 32M -f 2 -q -json -algo "$algo" | sed "s/^/{\"round\":$round,\"algo\":\"$algo\"}/"
    done
  done
done
