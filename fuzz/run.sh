#!/usr/bin/env bash
# Fuzz one target: bash fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags]
# TARGET: image, checkpoint, safetensors, pickle, hdf5, cli (fuzz/README.md).
# Seeds fuzz/corpus/TARGET from the test data the first time; crashes land in
# fuzz/artifacts/TARGET; the log in fuzz/logs/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")"
t="${1:?usage: fuzz/run.sh TARGET [SECONDS]}"
secs="${2:-900}"
shift $(( $# >= 2 ? 2 : 1 ))
g=../tests/golden
corpus="corpus/$t"
mkdir -p "$corpus" logs "artifacts/$t"
seed() { for f in "$@"; do [ -f "$f" ] && cp -n "$f" "$corpus/$(basename "$f" | tr ' ' _)"; done; return 0; }
if [ -z "$(ls -A "$corpus")" ]; then
    case "$t" in
        image) seed $g/preprocess/*.{jpg,png,bmp,gif,tiff,webp} ;;
        checkpoint) seed $g/pt/*.pt $g/pt/certh/*.pt
            for f in $g/pt/names/*.pt; do cp "$f" "$corpus/names_$(basename "$f" | tr -c 'a-z0-9.\n' _)"; done
            for f in $g/pt/names_legacy/*.pt; do cp "$f" "$corpus/legacy_$(basename "$f" | tr -c 'a-z0-9.\n' _)"; done ;;
        safetensors) seed $g/pt/expected.safetensors $g/retrieval/rrm_b0.safetensors $g/timm_b0.safetensors \
            $g/scorecam_metrics_b0.safetensors ;;
        pickle) seed $g/retrieval/*.pkl ;;
        hdf5) seed $g/retrieval/*.hdf5 ;;
        cli) while IFS= read -r line; do
                 printf '%s' "$line" | tr '|' '\0' > "$corpus/$(printf '%s' "$line" | cksum | cut -d' ' -f1)"
             done < seeds/cli.txt ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
fi
# regressions already kept are seeds too
[ -d "regressions/$t" ] && cp -n regressions/"$t"/* "$corpus"/ 2>/dev/null || true
flags=(-rss_limit_mb=2048 -timeout=10 -max_total_time="$secs" -print_final_stats=1
       -artifact_prefix="$PWD/artifacts/$t/")
[ "$t" = cli ] && flags+=(-dict="$PWD/seeds/cli.dict")
[ "$t" = checkpoint ] && flags+=(-max_len=1048576)
# room for deep nesting (serde-pickle overflowed its stack on 200,000 levels)
[ "$t" = pickle ] && flags+=(-max_len=65536)
# the hdf5 target: libhdf5 is Debian's binary, not instrumented. Its oversized requests get
# null as from glibc instead of an ASan abort; the fork mode records each of its crashes and
# goes on (fuzz/README.md, "What a hostile HDF5 file can still do")
if [ "$t" = hdf5 ]; then
    export ASAN_OPTIONS="allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    flags+=(-malloc_limit_mb=65536 -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
fi
# the C libraries built from source (libjpeg-turbo in mozjpeg) get ASan and coverage too when
# clang is there (Debian: apt-get install clang-14)
if command -v clang-14 >/dev/null; then
    export CC_x86_64_unknown_linux_gnu=clang-14
    export CFLAGS_x86_64_unknown_linux_gnu="-fsanitize=address -fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp -g -O1"
fi
bin="$PWD/target/x86_64-unknown-linux-gnu/release/$t"
if [ ! -x "$bin" ]; then cargo +nightly fuzz build -a "$t"; fi
# the CLI target runs in a folder holding the files its command lines may name
work="$PWD/scratch/$t"
mkdir -p "$work"
if [ "$t" = cli ]; then
    cp -n $g/preprocess/photo_65x49.jpg "$work/a.jpg"
    mkdir -p "$work/d" && cp -n $g/preprocess/gray_45x31.png "$work/d/b.png"
    cp -n $g/pt/layout.pt "$work/w.pt"
    cp -n $g/retrieval/cells_assignments.pkl "$work/c.pkl"
    cp -n $g/retrieval/no_labels.hdf5 "$work/bg.hdf5"
    printf 'not an image' > "$work/bad.png"
fi
cd "$work"
export LSAN_OPTIONS="suppressions=$PWD/../../lsan.supp:print_suppressions=0"
env -u COMBICAM_WEIGHTS -u COMBICAM_DEVICE "$bin" "$PWD/../../$corpus" "${flags[@]}" "$@" 2>&1 | tee "../../logs/$t.log" | grep -E "^#[0-9]+ *(pulse|DONE)|ERROR|SUMMARY|stat::|Done" || true
