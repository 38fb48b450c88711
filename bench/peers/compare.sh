#!/usr/bin/env bash
# Usage: bash bench/peers/compare.sh  (needs openmpi-bin, libopenmpi-dev, python3-torch: see shared/peers/README.md);
# then python3 bench/peers/table.py prints the markdown tables of docs/performance.md §8.
# Same-sitting comparison: sealring (encrypted, and with -crypto off) vs Open MPI (tcp, vader) vs gloo;
# ROUNDS rounds (default 3), each system in turn within a round.
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
repo=$(cd "$(dirname "$0")/../.." && pwd); shared=${SHARED:-$repo/../shared}
cd "$repo" && go build -o /tmp/allreduce ./bench/allreduce
mpicc -O2 -o /tmp/mpi_allreduce "$shared/peers/mpi_allreduce.c"
out=${OUT:-/tmp/peers}; rm -rf "$out"; mkdir -p "$out"
for round in $(seq ${ROUNDS:-3}); do
  for np in 2 4; do
    timeout 300 /tmp/allreduce -np $np -b 64K -e 64M -f 4 -q > $out/sealring_np${np}_r$round.txt 2>/dev/null
    timeout 300 /tmp/allreduce -np $np -b 64K -e 64M -f 4 -q -crypto off > $out/sealringplain_np${np}_r$round.txt 2>/dev/null
    timeout 300 mpirun --oversubscribe -np $np --mca btl tcp,self /tmp/mpi_allreduce 65536 67108864 > $out/mpitcp_np${np}_r$round.txt 2>/dev/null
    timeout 300 mpirun --oversubscribe -np $np --mca btl vader,self /tmp/mpi_allreduce 65536 67108864 > $out/mpishm_np${np}_r$round.txt 2>/dev/null
    if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
      (cd "$shared/peers" && timeout 300 /usr/bin/python3 gloo_allreduce.py $np 65536 67108864) > $out/gloo_np${np}_r$round.txt 2>/dev/null
    fi
  done
done
echo done
