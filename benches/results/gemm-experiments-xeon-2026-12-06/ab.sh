#!/bin/bash
# usage: ab.sh N bin1 bin2 ... ; per-family min over N alternating runs
N=$1; shift
rm -f /tmp/ab.*.txt
for i in $(seq 1 $N); do for b in "$@"; do BIN=/tmp/bin-$b /tmp/fam.sh | head -1 >> /tmp/ab.$b.txt; done; done
for b in "$@"; do echo -n "$b min: "; python3 - $b <<'PY'
import sys,collections
b=sys.argv[1]; m=collections.OrderedDict()
for line in open(f'/tmp/ab.{b}.txt'):
    t=line.split()
    for k,v in zip(t[::2],t[1::2]):
        m[k]=min(m.get(k,1e9),float(v))
print('  '.join(f'{k} {v:.0f}' for k,v in sorted(m.items())))
PY
done
