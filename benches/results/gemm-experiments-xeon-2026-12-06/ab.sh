#!/bin/bash
# usage: ab.sh N BINARY...  N rounds, each running fam.sh on every binary in turn; prints, per
# binary, the minimum of each kind over the rounds (the lines kept were round8-*.txt).
n=$1; shift
here=$(dirname "$0")
out=$(mktemp -d)
for i in $(seq 1 "$n"); do
  for j in $(seq 1 $#); do "$here/fam.sh" "${!j}" >> "$out/$j.txt"; done
done
for j in $(seq 1 $#); do
  echo -n "${!j} min: "
  python3 - "$out/$j.txt" <<'PY'
import sys
m = {}
for line in open(sys.argv[1]):
    t = line.split()
    for k, v in zip(t[::2], t[1::2]):
        m[k] = min(m.get(k, 1e9), float(v))
print('  '.join(f'{k} {v:.0f}' for k, v in sorted(m.items())))
PY
done
rm -r "$out"
