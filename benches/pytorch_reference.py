"""PyTorch reference timing: single-pass Grad-CAM of all 32 blocks of EfficientNet-B4.

One forward (hooks on every block, each output keeps its gradient), one backward of
probs[c] (c = the top cell), then the 32 Grad-CAM maps, their bilinear upsampling and the
Combi-CAM fusion: the same work as `combicam-gpu explain`, done by PyTorch on the CPU
(or, with --device cuda, on an NVIDIA GPU).
The model is efficientnet_pytorch 0.7.0 `efficientnet-b4` with the visloc head (31,145
cells) and the deterministic test weights of tests/golden/detweights.py, so nothing is
downloaded and the numbers are comparable with `combicam-gpu bench` (same default model).

    pip install torch efficientnet_pytorch==0.7.0 numpy
    python benches/pytorch_reference.py                        # 300x450 and 380x380
    python benches/pytorch_reference.py --size 300x450 --json pytorch.json
    combicam-gpu bench compare ours.json pytorch.json          # side by side

--json writes the `combicam-bench/1` schema of `combicam-gpu bench --json`, with the
CPU (or the GPU) as the "adapter" and no kernel families.
"""

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "golden"))

NUM_CELLS = 31145


def parse_size(s):
    try:
        h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {s!r} is not HxW (e.g. 300x450)")
    if not (8 <= h <= 4096 and 8 <= w <= 4096):
        raise argparse.ArgumentTypeError(f"size {s}: each side must be 8..4096")
    return h, w


def stat(values):
    v = sorted(values)
    return {"median_ms": v[len(v) // 2] * 1e3, "min_ms": v[0] * 1e3, "max_ms": v[-1] * 1e3}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Time PyTorch's single-pass Combi-CAM (B4, all 32 blocks) on the CPU or a CUDA GPU.")
    ap.add_argument("--size", type=parse_size, action="append", metavar="HxW",
                    help="input size, repeatable (default: 300x450 and 380x380)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per size (default 1)")
    ap.add_argument("--iters", type=int, default=5, help="timed runs per size (default 5)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu", metavar="DEV",
                    help="torch device: cpu (default) or cuda; on cuda every phase mark waits for the GPU")
    ap.add_argument("--json", metavar="FILE", help="write the results in the combicam-bench/1 schema")
    ap.add_argument("--forward-batch", type=int, default=16, metavar="N",
                    help="also time no-grad forwards at the first size, batch 1 and batch N (0: off; default 16)")
    args = ap.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        ap.error("--iters must be ≥ 1 and --warmup ≥ 0")

    try:
        import torch
        from visloc_ref import build_visloc, combicam
    except ImportError as e:
        sys.exit(f"error: {e}; install the reference's packages: pip install torch efficientnet_pytorch==0.7.0 numpy")
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.size or [(300, 450), (380, 380)]

    t0 = time.perf_counter()
    bb, head = build_visloc("efficientnet-b4", NUM_CELLS)
    dev = torch.device(args.device)
    bb, head = bb.to(dev), head.to(dev)
    print(f"built efficientnet-b4 + {NUM_CELLS}-cell head in {time.perf_counter() - t0:.1f} s")
    machine = f"{cpu_name()}, {os.cpu_count()} cores, {platform.system().lower()}"
    if dev.type == "cuda":
        # cuDNN's default lets convolutions use TF32; the figure is what a user gets by default
        tf32 = "TF32 convs" if torch.backends.cudnn.allow_tf32 else "FP32"
        who = f"PyTorch {torch.__version__} {torch.cuda.get_device_name(dev)}, eager, {tf32}"
        kind, info = "DiscreteGpu", f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    else:
        who = f"PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads"
        kind, info = "CPU", torch.__config__.parallel_info().splitlines()[0]
    print(f"{who} · {machine}")

    gen = torch.Generator().manual_seed(0)
    results = []
    for h, w in sizes:
        x = torch.randn(1, 3, h, w, generator=gen).to(dev)
        for _ in range(args.warmup):
            combicam(bb, head, x, keep_blocks=False)
        total, fwd, bwd, cam = [], [], [], []
        for _ in range(args.iters):
            marks = [time.perf_counter()]
            combicam(bb, head, x, keep_blocks=False, marks=marks)
            total.append(marks[3] - marks[0])
            fwd.append(marks[1] - marks[0])
            bwd.append(marks[2] - marks[1])
            cam.append(marks[3] - marks[2])
        r = {
            "size": [h, w],
            "batch": 1,
            "explain": stat(total),
            "phases": {"forward": stat(fwd), "backward": stat(bwd), "cam": stat(cam)},
            "families": [],
            "peak_gpu_bytes": 0,
            "dispatches": 0,
            "forward_gflop": 0.0,
        }
        results.append(r)
        e = r["explain"]
        print(f"{h}×{w}: single-pass Combi-CAM {e['median_ms']:.1f} ms median "
              f"(min {e['min_ms']:.1f}, max {e['max_ms']:.1f}) over {args.iters} runs")
        for ph in ("forward", "backward", "cam"):
            print(f"  {ph:<9} {r['phases'][ph]['median_ms']:9.1f} ms")

    forward = None
    if args.forward_batch > 0:
        h, w = sizes[0]
        n = args.forward_batch

        def per_image(batch):
            xb = torch.randn(batch, 3, h, w, generator=gen).to(dev)
            with torch.no_grad():
                times = []
                for i in range(args.warmup + args.iters):
                    t = time.perf_counter()
                    feats = bb.extract_features(xb).mean((2, 3))
                    torch.softmax(head(feats), dim=1)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    if i >= args.warmup:
                        times.append((time.perf_counter() - t) / batch)
            return stat(times)

        single, batched = per_image(1), per_image(n)
        forward = {"size": [h, w], "single": single, "copies_per_submission": n,
                   "masked_per_copy": batched}
        print(f"no-grad forward at {h}×{w}: {single['median_ms']:.1f} ms at batch 1, "
              f"{batched['median_ms']:.1f} ms per image at batch {n}")

    if args.json:
        report = {
            "schema": "combicam-bench/1",
            "adapter": {"index": 0, "name": who, "backend": "PyTorch", "device_type": kind,
                        "driver": "torch", "driver_info": info},
            "machine": machine,
            "timing": "wall-clock",
            "model": "efficientnet-b4",
            "weights": "deterministic test weights",
            "iters": args.iters,
            "results": results,
            **({"forward": forward} if forward else {}),
        }
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
