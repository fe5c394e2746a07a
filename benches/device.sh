#!/usr/bin/env bash
# Every check a lent GPU machine runs, prepared here and run there in one call.
#
#   bash benches/device.sh pack   # here: build, then pack into .device/ (ignored by git) the
#                                 # binary, the test binary, the kernel benchmarks, the shared
#                                 # libraries they load, the Vulkan loader and GLVND packages
#                                 # and efficientnet_pytorch: what a bare machine lacks. The
#                                 # Lite0 weights both binaries embed are cut out (rebuilt
#                                 # there from the .pth, benches/device_blob.py); $BASELINE
#                                 # adds an older binary to bench beside this one
#   bash benches/device.sh run    # there: unpack, then adapter, check, bench --slowest 25 ($SLOWEST)
#                                 # (300×450 and 380×380), bench --masked 32, bench with the
#                                 # kernels' guards left out (src/gpu/checks.rs) and with the
#                                 # long-K GEMM at four K groups (COMBICAM_SLIM_WIDE), PyTorch's
#                                 # reference on the same GPU (NVIDIA), the kernel benchmarks,
#                                 # and the test suite without the browser and Python tests
#                                 # (no Chromium or maturin there), logging every tolerance's
#                                 # use, then the photo goldens again with the CPU-shaped kernels
#
# Copy the checkout there with its .device/ (14 MiB; with the tracked tree 48 of the 64 MiB
# that travel). Each step has its own time limit (`step` below), so that the run ends inside
# one remote command; on an H200 the whole run took about 70 s. It writes eight files into
# $OUT (else benches/results/device-<date>/), the most that come back: run.log (adapter,
# check, bench, masked, PyTorch, baseline), bench.json, bench-masked32.json, pytorch-cuda.json
# (PyTorch on the same GPU, side by side), kernels.txt (`cargo bench --bench kernels`),
# tests.log, tolerances.log and clocks.csv (the GPU's clocks every 250 ms). Archive the JSON in
# benches/results/ under the GPU's name, and put its rows in the README's performance table.
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=.device

pack() {
    set -e
    cargo build --release
    cargo test --release --no-run
    cargo bench --bench kernels --no-run
    local tests kernels
    tests=$(ls -t target/release/deps/all-* | grep -v '\.d$' | head -1)
    kernels=$(ls -t target/release/deps/kernels-* | grep -v '\.d$' | head -1)
    rm -rf "$PACK" && mkdir -p "$PACK/bins/lib" "$PACK/gl"
    strip -o "$PACK/bins/combicam-gpu" target/release/combicam-gpu
    strip -o "$PACK/bins/tests" "$tests"
    strip -o "$PACK/bins/kernels" "$kernels"
    # $BASELINE: an older build to bench beside this one, telling the code's changes from the
    # machine's (its built-in model must be this one's)
    local cut=("$PACK/bins/combicam-gpu" "$PACK/bins/tests")
    if [ -n "${BASELINE:-}" ]; then
        strip -o "$PACK/bins/baseline" "$BASELINE"
        cut+=("$PACK/bins/baseline")
    fi
    # the test binary reads its data and runs the binary from the paths it was built at
    pwd >"$PACK/manifest_dir"
    # shared libraries beyond the C runtime (HDF5, curl and theirs)
    ldd target/release/combicam-gpu "$tests" | awk '$3 ~ /^\// {print $3}' | sort -u |
        grep -Ev '/(libc|libm|libgcc_s|ld-linux[^/]*|libpthread|libdl|librt|libresolv)\.so' |
        xargs -r cp -L -t "$PACK/bins/lib"
    # the Lite0 weights both binaries embed are rebuilt there from the .pth that travels anyway
    local blob
    blob=$(ls -t target/release/build/combicam-gpu-*/out/builtin-lite0.safetensors | head -1)
    python3 benches/device_blob.py cut "$blob" "$PACK/blob.json" "${cut[@]}"
    # one stream with a dictionary wider than a binary: what the two share is stored once
    tar -C "$PACK/bins" -cf - . | xz -T1 -9e --lzma2=preset=9e,dict=192MiB >"$PACK/bins.tar.xz"
    rm -rf "$PACK/bins"
    # PyTorch is there, efficientnet_pytorch (pure Python) is not: the side-by-side reference
    mkdir -p "$PACK/py"
    # ($REF_PYTHON: an interpreter that has it; pip install efficientnet_pytorch==0.7.0)
    # (found, not imported: importing it imports torch, which the packing machine may lack)
    cp -r "$(${REF_PYTHON:-python3} -c 'import importlib.util as u; print(u.find_spec("efficientnet_pytorch").submodule_search_locations[0])')" "$PACK/py/"
    find "$PACK/py" -name __pycache__ -prune -exec rm -rf {} +
    # the Vulkan loader and GLVND, which NVIDIA's Vulkan driver (libGLX_nvidia) needs there
    (cd "$PACK/gl" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 \
        libgles2 2>/dev/null >/dev/null)
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
    mkdir -p "$PACK/bins" && xz -dc "$PACK/bins.tar.xz" | tar -C "$PACK/bins" -xf -
    python3 benches/device_blob.py put weights/efficientnet-lite0-57934424.pth "$PACK/blob.json" || return 1
    mv "$PACK/bins/combicam-gpu" target/release/combicam-gpu
    mv "$PACK/bins/tests" "$PACK/all-tests" && mv "$PACK/bins/kernels" "$PACK/kernels"
    mv "$PACK/bins/lib" "$PACK/lib"
    [ -f "$PACK/bins/baseline" ] && mv "$PACK/bins/baseline" "$PACK/baseline" && chmod +x "$PACK/baseline"
    chmod +x target/release/combicam-gpu "$PACK/all-tests" "$PACK/kernels"
    export LD_LIBRARY_PATH="$PWD/$PACK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    for f in "$PACK"/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES=${VK_DRIVER_FILES:-$icd}
    local egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    [ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
    # that ICD names libGLX_nvidia.so.0 bare, and ldconfig there does not list its folder
    [ -d /usr/local/nvidia/lib64 ] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/nvidia/lib64
    export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg} && mkdir -p "$XDG_RUNTIME_DIR"
    local bin=target/release/combicam-gpu
    if ldd "$bin" "$PACK/all-tests" | grep 'not found'; then
        echo "error: the machine lacks the libraries above: pack them (benches/device.sh pack)"
        return 1
    fi
    # a step and the seconds it may take, so that the whole run ends inside one command
    # ($SKIP: names of steps to leave out, e.g. SKIP="pytorch tests" for a rerun)
    step() {
        local limit=$1 name=$2
        shift 2
        if [[ " ${SKIP:-} " == *" $name "* ]]; then
            echo "== $name: skipped (\$SKIP)"
            return
        fi
        echo "== $name ($(date +%T), at most ${limit}s)"
        timeout "$limit" "$@"
        echo "== $name: exit $?"
    }
    if ! timeout 20 "$bin" devices >/dev/null 2>&1; then
        timeout 20 "$bin" devices
        VK_LOADER_DEBUG=error timeout 20 "$bin" devices 2>&1 | tail -5
        echo "error: no adapter there; nothing else is run"
        return 1
    fi
    # the clocks through the run: a GPU that stays in a low power state between short bursts
    # would make every figure slow alike
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,pstate --format=csv,noheader \
        -lms 250 >"$out/clocks.csv" 2>/dev/null &
    local smi=$!
    {
        step 20 devices "$bin" devices
        nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv
        step 60 check "$bin" check
        step 90 bench "$bin" bench --slowest "${SLOWEST:-25}" --json "$out/bench.json"
        step 45 masked32 "$bin" bench --size 300x450 --mixed 0 --masked 32 \
            --json "$out/bench-masked32.json"
        # PyTorch on the same GPU, in the same run: the side-by-side figure
        PYTHONPATH="$PWD/$PACK/py" PYTHONUNBUFFERED=1 step 100 pytorch python3 \
            benches/pytorch_reference.py --device cuda --warmup 3 --iters 20 --forward-batch 32 \
            --json "$out/pytorch-cuda.json"
        # the kernels' run-time guards (src/gpu/checks.rs): all of them, and none, against the default
        for c in full none; do
            COMBICAM_SHADER_CHECKS=$c step 40 "bench-checks-$c" "$bin" bench --size 300x450 --mixed 0
        done
        # the long-K GEMMs at four K groups, against bench's eight (ops::gemm::SlimWide)
        COMBICAM_SLIM_WIDE=off step 40 bench-slim4 "$bin" bench --size 300x450 --mixed 0
        if [ -x "$PACK/baseline" ]; then
            step 60 baseline-bench "$PACK/baseline" bench --size 300x450
        fi
    } 2>&1 | tee "$out/run.log"
    kill $smi 2>/dev/null
    step 60 kernels "$PACK/kernels" 2>&1 | tee "$out/kernels.txt" | tail -5
    COMBICAM_SHADER_CHECKS=none step 60 kernels-checks-none "$PACK/kernels" gemm 2>&1 |
        tee -a "$out/kernels.txt" | tail -3
    export COMBICAM_TOLERANCE_LOG="$out/tolerances.log"
    # no Chromium (browser) and no maturin (python) there
    # ($TEST_ENV: variables for the suite alone, e.g. TEST_ENV=COMBICAM_SHADER_CHECKS=none)
    step 180 tests env ${TEST_ENV:-} "$PACK/all-tests" --skip browser:: --skip python:: 2>&1 | tee "$out/tests.log" | tail -40
    # the photo goldens again with the CPU-shaped kernels: the kernels' order of sums against
    # the adapter's arithmetic, where a map strays
    COMBICAM_KERNELS=cpu step 60 tests-cpu-kernels "$PACK/all-tests" finer:: \
        model::trained_lite0_on_photos eigen::smoothed_maps 2>&1 | tee -a "$out/tests.log" | tail -8
}

case "${1:-}" in
pack) pack ;;
run) run ;;
*)
    echo "usage: bash benches/device.sh pack|run (see the comment at its top)" >&2
    exit 2
    ;;
esac
