#!/usr/bin/env bash
# Every check a lent GPU machine runs, prepared here and run there in one call.
#
#   bash benches/device.sh pack   # here: build, then pack into .device/ (ignored by git) the
#                                 # binary, the test binary, the shared libraries they load
#                                 # and the Vulkan loader's package: what a bare machine lacks
#   bash benches/device.sh run    # there: unpack, then adapter, check, bench (300×450 and
#                                 # 380×380), bench --masked 32, and the test suite without
#                                 # the browser test (no Chromium there), logging every
#                                 # tolerance's use
#
# Copy the checkout there with its .device/ and allow the run about 540 s: each step has its
# own time limit (`step` below), so that it ends inside one remote command. It writes seven
# files into $OUT (else benches/results/device-<date>/): devices.txt, check.txt, bench.json,
# bench.txt, bench-masked32.json, tests.log, tolerances.log. Archive the JSON in
# benches/results/ under the GPU's name, and put its row in the README's performance table.
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=.device

pack() {
    set -e
    cargo build --release
    cargo test --release --no-run
    local tests
    tests=$(ls -t target/release/deps/all-* | grep -v '\.d$' | head -1)
    rm -rf "$PACK" && mkdir -p "$PACK/lib" "$PACK/gl"
    # stripped and compressed: the working tree and what it carries travel in 64 MiB
    strip -o "$PACK/combicam-gpu" target/release/combicam-gpu
    strip -o "$PACK/tests" "$tests"
    xz -T0 -6 "$PACK/combicam-gpu" "$PACK/tests"
    # the test binary reads its data and runs the binary from the paths it was built at
    pwd >"$PACK/manifest_dir"
    # shared libraries beyond the C runtime (HDF5, curl and theirs)
    ldd target/release/combicam-gpu "$tests" | awk '$3 ~ /^\// {print $3}' | sort -u |
        grep -Ev '/(libc|libm|libgcc_s|ld-linux[^/]*|libpthread|libdl|librt|libresolv)\.so' |
        xargs -r cp -L -t "$PACK/lib"
    tar -C "$PACK" -cJf "$PACK/lib.tar.xz" lib && rm -rf "$PACK/lib"
    # the Vulkan loader, unpacked there if the machine has none
    (cd "$PACK/gl" && apt-get download libvulkan1 2>/dev/null >/dev/null)
    du -sh "$PACK"
    echo "with the tracked tree: $(($(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) / 1048576 + $(du -sb "$PACK" | cut -f1) / 1048576)) MiB of the 64 that travel"
}

run() {
    local out=${OUT:-benches/results/device-$(date +%F)}
    mkdir -p "$out" target/release
    out=$(cd "$out" && pwd)
    # the path the test binary was built at must lead here
    local built
    built=$(cat "$PACK/manifest_dir")
    if [ ! -e "$built/Cargo.toml" ]; then
        mkdir -p "$(dirname "$built")" && ln -sfn "$PWD" "$built"
    fi
    xz -dc "$PACK/combicam-gpu.xz" >target/release/combicam-gpu
    xz -dc "$PACK/tests.xz" >"$PACK/all-tests"
    tar -C "$PACK" -xJf "$PACK/lib.tar.xz"
    chmod +x target/release/combicam-gpu "$PACK/all-tests"
    export LD_LIBRARY_PATH="$PWD/$PACK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if ! ldconfig -p | grep -q libvulkan.so.1; then
        for f in "$PACK"/gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES=${VK_DRIVER_FILES:-$icd}
    export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg} && mkdir -p "$XDG_RUNTIME_DIR"
    local bin=target/release/combicam-gpu
    # a step and the seconds it may take, so that the whole run ends inside one command
    step() {
        local limit=$1 name=$2
        shift 2
        echo "== $name ($(date +%T), at most ${limit}s)"
        timeout "$limit" "$@"
        echo "== $name: exit $?"
    }
    step 30 devices "$bin" devices 2>&1 | tee "$out/devices.txt"
    step 60 check "$bin" check 2>&1 | tee "$out/check.txt"
    step 150 bench "$bin" bench --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"
    step 60 masked32 "$bin" bench --size 300x450 --mixed 0 --masked 32 \
        --json "$out/bench-masked32.json" 2>&1 | tail -20
    export COMBICAM_TOLERANCE_LOG="$out/tolerances.log"
    step 210 tests "$PACK/all-tests" --skip browser:: 2>&1 | tee "$out/tests.log" | tail -30
}

case "${1:-}" in
pack) pack ;;
run) run ;;
*)
    echo "usage: bash benches/device.sh pack|run (see the comment at its top)" >&2
    exit 2
    ;;
esac
