#!/bin/bash
# usage: codegen-ab.sh MESA(22|25) ROUNDS PATTERN BINARY...  (run from the checkout's root)
# Each BINARY is a build with codegen-timing.patch.txt applied (a throwaway: it times each
# kernel's first dispatch alone while the plan warms its pipelines, and prints it with CG_TIME
# set). Rounds alternate the binaries; each run starts from an empty Mesa shader cache with
# one device compiling (COMBICAM_COMPILE_THREADS=1). Prints each kernel's median and minimum
# seconds per binary, then the sum of the medians. For Mesa 25, export VK_DRIVER_FILES (or
# VK_ICD_FILENAMES) and LD_LIBRARY_PATH for the unpacked backports driver as `env25` names.
m=$1; r=$2; pat=$3; shift 3
work=$(mktemp -d)
if [ "$m" = 25 ] && [ -n "$env25" ]; then . "$env25"; fi
for i in $(seq "$r"); do for b in "$@"; do
  rm -rf "$work/cache" && mkdir "$work/cache"
  MESA_SHADER_CACHE_DIR=$work/cache COMBICAM_COMPILE_THREADS=1 CG_TIME=1 "$b" explain tests/photos/coffee.png --out "$work/out" 2>&1 |
    grep -E "^CG" | grep -E "$pat" | sed "s#^#$(basename "$b") #"
done; done | python3 -c "
import sys,collections,statistics
d=collections.defaultdict(list)
for l in sys.stdin:
    p=l.split(); d[(p[0],p[4])].append(float(p[2]))
tot=collections.defaultdict(float)
for k in sorted(d, key=lambda k:(k[1],k[0])):
    v=d[k]; print(f'{k[1]:28s} {k[0]:16s} med {statistics.median(v):.3f} min {min(v):.3f}'); tot[k[0]]+=statistics.median(v)
for b,t in tot.items(): print('total', b, round(t,3))
"
rm -r "$work"
