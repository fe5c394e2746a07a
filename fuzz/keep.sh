#!/usr/bin/env bash
# Keep a sample of a target's corpus as regressions the suite replays:
#   bash fuzz/keep.sh TARGET [N] [MAX_BYTES]
# libFuzzer first merges fuzz/corpus/TARGET into the smallest set of inputs with the same
# coverage. Then up to N (default 40) of its entries of at most MAX_BYTES (default 4096) are
# copied into fuzz/regressions/TARGET/ as corpus-<hash>. The selection is by hash, so it is
# a spread, not the smallest only.
set -euo pipefail
cd "$(dirname "$0")"
t="${1:?usage: fuzz/keep.sh TARGET [N] [MAX_BYTES]}"
n="${2:-40}"
max="${3:-4096}"
bin="$PWD/target/x86_64-unknown-linux-gnu/release/$t"
min="$PWD/scratch/min-$t"
rm -rf "$min" && mkdir -p "$min" "regressions/$t" "scratch/$t"
export LSAN_OPTIONS="suppressions=$PWD/lsan.supp:print_suppressions=0"
(cd "scratch/$t" && "$bin" -merge=1 -rss_limit_mb=2048 -timeout=10 "$min" "$PWD/../../corpus/$t" \
    2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true)
find "$min" -type f -size -"$((max + 1))"c -printf '%f\n' | sort | head -n "$n" |
    while read -r f; do cp "$min/$f" "regressions/$t/corpus-$f"; done
echo "$t: kept $(ls "regressions/$t" | grep -c '^corpus-') corpus entries of the $(ls "$min" | wc -l) the merge kept"
