#!/usr/bin/env python3
"""Median time (us) per (ranks, size, algorithm) from crossover.sh output; * marks the fastest."""
import collections, json, statistics, sys

d = collections.defaultdict(list)
for line in sys.stdin:
    line = line.strip()
    if not line.startswith('{"round"'):
        continue
    i = line.index('}{')
    meta, r = json.loads(line[:i + 1]), json.loads(line[i + 1:])
    d[(r['ranks'], r['size'], meta['algo'])].append(r['time_us'])
algos = ('rd', 'rabenseifner', 'ring')
for n in sorted({k[0] for k in d}):
    print(f"\n{n} ranks\n\n| size (B) | " + " | ".join(algos) + " |\n|---|---|---|---|")
    for size in sorted({k[1] for k in d if k[0] == n}):
        med = {a: statistics.median(d[(n, size, a)]) for a in algos if d.get((n, size, a))}
        best = min(med, key=med.get)
        cells = [(f"**{med[a]:.0f}**" if a == best else f"{med[a]:.0f}") if a in med else "-" for a in algos]
        print(f"| {size} | " + " | ".join(cells) + " |")
