#!/bin/bash
# usage: coldwarm.sh PAIRS OLD_BINARY NEW_BINARY  (run from the checkout's root; to measure
# another Mesa, export VK_DRIVER_FILES and LD_LIBRARY_PATH for it first)
# Each pair: a cold run (Mesa's shader cache emptied) then a warm one, of each binary in turn;
# prints wall and user seconds and the "compiling pipelines" time of each.
n=$1; old=$2; new=$3
work=$(mktemp -d)
export MESA_SHADER_CACHE_DIR=$work/cache
run() {
  { /usr/bin/time -f "%e %U" "$1" explain tests/photos/coffee.png --out "$work/out" -v 2>&1 >/dev/null; } 2>&1 |
    grep -oE "compiling pipelines [0-9.]+s|^[0-9.]+ [0-9.]+$" | tr '\n' ' '
}
for i in $(seq "$n"); do for b in old new; do
  rm -rf "$MESA_SHADER_CACHE_DIR"
  c=$(run "${!b}")
  w=$(run "${!b}")
  echo "$b cold: $c | warm: $w"
done; done
rm -r "$work"
