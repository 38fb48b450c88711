import glob, re, statistics, collections
data = collections.defaultdict(list)  # (sys, np, size) -> [busbw]
lat = collections.defaultdict(list)
for f in glob.glob(__import__('os').environ.get('OUT', '/tmp/peers') + '/*.txt'):
    m = re.match(r'.*/(\w+)_np(\d)_r\d+\.txt', f)
    sysname, np_ = m.group(1), int(m.group(2))
    for line in open(f):
        if line.startswith('#') or not line.strip():
            continue
        p = line.split()
        try:
            size = int(p[0])
        except ValueError:
            continue
        if sysname.startswith('sealring'):
            busbw = float(p[6]); t = float(p[4])
        else:
            busbw = float(p[4]); t = float(p[2])
        data[(sysname, np_, size)].append(busbw)
names = [('sealring', 'sealring (encrypted, UDP)'), ('sealringplain', 'sealring, -crypto off'), ('mpitcp', 'Open MPI, TCP'), ('mpishm', 'Open MPI, shared memory'), ('gloo', 'torch gloo')]
sizes = [65536 * 4**i for i in range(6)]
for np_ in (2, 4):
    runs = max((len(v) for k, v in data.items() if k[1] == np_), default=0)
    print(f"\n**{np_} ranks** — busbw GB/s, median of {runs} runs (min–max)\n")
    print('| size | ' + ' | '.join(n for _, n in names) + ' |')
    print('|---|' + '---|' * len(names))
    for s in sizes:
        cells = []
        for key, _ in names:
            v = data.get((key, np_, s))
            cells.append(f"{statistics.median(v):.3f} ({min(v):.2f}–{max(v):.2f})" if v else 'n/a')
        lab = f"{s>>20} MiB" if s >= 1 << 20 else f"{s>>10} KiB"
        print(f"| {lab} | " + ' | '.join(cells) + ' |')
print("\nRatios of medians to Open MPI/TCP (to gloo): sealring encrypted; sealring -crypto off\n")
print('| ranks | ' + ' | '.join(f"{s>>20} MiB" if s >= 1 << 20 else f"{s>>10} KiB" for s in sizes) + ' |')
print('|---|' + '---|' * len(sizes))
med = lambda k: statistics.median(data[k]) if data.get(k) else float('nan')
for np_ in (2, 4):
    for key in ('sealring', 'sealringplain'):
        cells = [f"{med((key, np_, s)) / med(('mpitcp', np_, s)):.2f} ({med((key, np_, s)) / med(('gloo', np_, s)):.2f})" for s in sizes]
        print(f"| {np_}{'' if key == 'sealring' else ', off'} | " + ' | '.join(cells) + ' |')
