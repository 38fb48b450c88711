#!/usr/bin/env bash
# Usage: bash bench/peers/cpuattr.sh NP SIZE ITERS [allreduce flags...]
#
# Where a rank's CPU goes in one allreduce of SIZE bytes on NP local ranks:
# runs `allreduce -np NP -b SIZE -e SIZE -n ITERS`, samples every CPU with
# `perf record -a -g` for 5 s from the third second (choose ITERS so that the
# run lasts at least 9 s, or the idle share counts the time after it), and
# prints per rank and allreduce: the kernel's send system calls (on loopback
# these include delivering the datagrams into the peer's socket), its receive
# system calls, AES-GCM (the assembly kernels), the reduction kernel, idle
# CPU, and everything else (the transport, the Go runtime, the rest of the
# kernel). The shares are of all CPUs' time, so per-rank microseconds are
# share x CPUs x time per allreduce / NP. Needs perf (linux-perf) and a
# quiet machine; docs/performance.md §8 "What limits the rest" uses it.
set -eu
np=$1 size=$2 iters=$3; shift 3
repo=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$repo" && go build -o "$tmp/allreduce" ./bench/allreduce)
"$tmp/allreduce" -np "$np" -b "$size" -e "$size" -n "$iters" -w 20 -q "$@" > "$tmp/out" 2>&1 &
run=$!
sleep 3
perf record -a -g -o "$tmp/perf.data" -- sleep 5 > /dev/null 2>&1
wait $run
t=$(awk '!/^#/ && NF >= 8 {print $5}' "$tmp/out")
perf report -i "$tmp/perf.data" --children --sort sym 2> /dev/null | grep -E '^ +[0-9]' > "$tmp/report"
python3 - "$np" "$size" "$t" "$tmp/report" "$(nproc)" <<'PY'
import re, sys
np_, size, t, report, ncpu = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
children, self_ = {}, {}
for line in open(report):
    m = re.match(r'\s+([\d.]+)%\s+([\d.]+)%\s+\[.\]\s+(\S+)', line)
    if m:
        children[m.group(3)] = float(m.group(1))
        self_[m.group(3)] = float(m.group(2))
ch = lambda *names: sum(children.get(n, 0) for n in names)
aes = sum(v for k, v in self_.items() if re.search(r'aesgcm\.gcm(Seal|Open)\w*\.abi0$', k))
red = sum(v for k, v in self_.items() if re.search(r'collectives\.k\w+\.abi0$', k))
cats = [
    ('send system calls (incl. loopback delivery)', ch('__x64_sys_sendmmsg', '__x64_sys_sendto', '__x64_sys_sendmsg')),
    ('receive system calls', ch('__x64_sys_recvmmsg', '__x64_sys_recvfrom', '__x64_sys_recvmsg')),
    ('AES-GCM', aes),
    ('reduction', red),
    ('idle', ch('cpuidle_enter')),
]
cats.append(('other', 100 - sum(v for _, v in cats)))
us = ncpu * t / np_ / 100
print(f"{np_} ranks, {size}: {t:.1f} us per allreduce; per rank:")
for name, v in cats:
    print(f"  {name:44s} {v * us:9.1f} us  ({v:4.1f} %)")
PY
