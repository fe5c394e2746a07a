"""Memory stays bounded over many calls of mixed sizes: the process's resident memory and
the explainer's GPU memory stop growing once every size has been seen."""

from __future__ import annotations

import gc
import time

import numpy as np

# (H, W) between 32 and 64 pixels a side, cycled: each is a plan of its own
SIZES = [(32, 32), (40, 56), (64, 48), (48, 64), (56, 40), (64, 64)]

# How many calls: the 1,000, as 167 cycles of the 6 sizes (1,002 calls after the
# warm-up cycle). B0 test weights with a 10-cell head run about 80 ms a call here (lavapipe,
# 2 cores: the cost is the submission's hundreds of dispatches, not the size), about 80 s in
# all. Over 1,002 calls, a leak of 17 kB a call shows as growth over the bound below; a
# leaked fused map of the smallest size is 4 kB, a leaked plan hundreds of kB.
CYCLES = 167

# allowed growth of VmRSS between the end of the warm-up cycle and the end
RSS_BOUND_KIB = 16 * 1024


def vm_rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_many_calls_of_mixed_sizes_stay_bounded(explainer_factory):
    ex = explainer_factory(test_weights="b0", cells=10)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((3, h, w)).astype(np.float32) for h, w in SIZES]

    def cycle():
        for x in inputs:
            r = ex.explain_tensor(x)
            # touch the results as a caller would
            assert r.fused.shape == x.shape[1:]
            assert r.probs.shape == (10,)
            del r

    cycle()  # warm-up: every size's plan built once
    gc.collect()
    rss0 = vm_rss_kib()
    gpu0 = ex.gpu_memory
    t = time.perf_counter()
    gpu_seen = [gpu0]
    for _ in range(CYCLES):
        cycle()
        gpu_seen.append(ex.gpu_memory)
    elapsed = time.perf_counter() - t
    gc.collect()
    rss1 = vm_rss_kib()
    gpu1 = ex.gpu_memory
    calls = CYCLES * len(SIZES)
    print(
        f"\nmemory: {calls} calls in {elapsed:.1f} s ({elapsed / calls * 1000:.0f} ms a call); "
        f"VmRSS {rss0 / 1024:.1f} MiB after warm-up, {rss1 / 1024:.1f} MiB at the end "
        f"(growth {(rss1 - rss0) / 1024:+.1f} MiB, bound {RSS_BOUND_KIB / 1024:.0f} MiB); "
        f"gpu_memory {gpu0} B after warm-up, {gpu1} B at the end, max {max(gpu_seen)} B"
    )
    assert gpu0 > 0
    assert max(gpu_seen) <= gpu0, f"gpu_memory grew after the warm-up: {gpu_seen}"
    assert rss1 - rss0 < RSS_BOUND_KIB, (
        f"VmRSS grew by {(rss1 - rss0) / 1024:.1f} MiB over {calls} calls"
    )
