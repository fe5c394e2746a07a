#!/bin/bash
# usage: coldwarm.sh MESA(22|25) PAIRS
m=$1; n=$2
if [ $m = 25 ]; then . /tmp/m25env; fi
for i in $(seq $n); do for b in old new; do
  rm -rf /tmp/mcx; export MESA_SHADER_CACHE_DIR=/tmp/mcx
  c=$( { /usr/bin/time -f "%e %U" /tmp/$b-bin explain tests/photos/coffee.png --out /tmp/cw-$b -v 2>&1 >/dev/null; } 2>&1 | grep -oE "compiling pipelines [0-9.]+s|^[0-9.]+ [0-9.]+$" | tr '\n' ' ')
  w=$( { /usr/bin/time -f "%e %U" /tmp/$b-bin explain tests/photos/coffee.png --out /tmp/cw-$b -v 2>&1 >/dev/null; } 2>&1 | grep -oE "compiling pipelines [0-9.]+s|^[0-9.]+ [0-9.]+$" | tr '\n' ' ')
  echo "mesa$m $b cold: $c | warm: $w"
done; done
