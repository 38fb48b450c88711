#!/bin/bash
# Usage: bash bench/peers/cryptopaths.sh > out.jsonl  (JSON rows prefixed with round, crypto path, bench)
# End-to-end: what the crypto path buys (issue 7). Interleaved rounds.
cd "$(dirname "$0")/../.."
go build -o /tmp/cryptopaths-p2p ./bench/p2p && go build -o /tmp/cryptopaths-ar ./bench/allreduce || exit 1
for round in 1 2 3; do
  for path in aesni vaes-avx512 off; do
    if [ $path = off ]; then env=""; rows=insecure; cr="-crypto off"; else env="SEALRING_CRYPTO=$path"; rows=sealed; cr=""; fi
    env $env /tmp/cryptopaths-p2p -b 64K -e 4M -f 4 -r 3 -rows $rows,tcp -pp 2000 -json 2>/dev/null | sed "s/^/{\"round\":$round,\"path\":\"$path\",\"bench\":\"p2p\"}/"
    env $env /tmp/cryptopaths-ar -np 2 -b 64K -e 64M -f 4 -q -json $cr 2>/dev/null | sed "s/^/{\"round\":$round,\"path\":\"$path\",\"bench\":\"ar2\"}/"
    env $env /tmp/cryptopaths-ar -np 4 -b 1M -e 64M -f 4 -q -json $cr 2>/dev/null | sed "s/^/{\"round\":$round,\"path\":\"$path\",\"bench\":\"ar4\"}/"
  done
done
