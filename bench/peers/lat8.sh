#!/usr/bin/env bash
# Usage: [BASE=<git rev>] [ROUNDS=6] bash bench/peers/lat8.sh
# 8-byte allreduce latency (µs) of bench/allreduce beside Open MPI over TCP,
# 2 and 4 ranks, in one sitting; the programs' order rotates every round.
# With BASE, bench/allreduce built at that revision runs too ("before").
# Needs openmpi-bin and libopenmpi-dev (see shared/peers/README.md).
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
repo=$(cd "$(dirname "$0")/../.." && pwd); shared=${SHARED:-$repo/../shared}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"; git -C "$repo" worktree prune' EXIT
cd "$repo" && go build -o "$tmp/after" ./bench/allreduce || exit 1
progs="after mpi"
if [ -n "${BASE:-}" ]; then
  git worktree add -q --detach "$tmp/base" "$BASE" && (cd "$tmp/base" && go build -o "$tmp/before" ./bench/allreduce) || exit 1
  progs="before after mpi"
fi
mpicc -O2 -o "$tmp/mpi_allreduce" "$shared/peers/mpi_allreduce.c" || exit 1
one() { # prog np iterations
  if [ "$1" = mpi ]; then
    mpirun --oversubscribe -np "$2" --mca btl tcp,self "$tmp/mpi_allreduce" 8 8 2>/dev/null | awk '$1=="8"{print $3}'
  else
    "$tmp/$1" -np "$2" -b 8 -e 8 -n "$3" -w 100 -q 2>/dev/null | awk '$1=="8"{print $5}'
  fi
}
set -- $progs; k=$#
for np in 2 4; do
  n=20000; [ $np = 4 ] && n=5000
  for r in $(seq 1 "${ROUNDS:-6}"); do
    line="np $np round $r"
    for i in $(seq 0 $((k-1))); do
      j=$(( (i + r) % k + 1 )); p=${!j}
      line="$line $p $(one "$p" $np $n)"
    done
    echo "$line"
  done
done
