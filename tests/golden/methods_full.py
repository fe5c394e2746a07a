"""Full-size reference of every CAM method for one real image, and its comparison (by hand, not CI).

Reference: builds efficientnet-b4 + visloc head (N = 31145, formula weights) and preprocesses
the image exactly as full_reference.py does, runs ONE forward + ONE backward
(visloc_ref.combicam), and writes DIR/methods_reference.safetensors with `input`, `logits`,
`probs`, every method's block maps `<method>.NN` for all 32 blocks (after ReLU, unnormalised;
the formulas of make_methods.py), the default-fusion maps `combicam`, `<method>.fused`, the other
gradcam rules `gradcam.{mean,mean-normalised,max,product}.fused` (all 32 blocks), and
`kappa.<method>` (32,): each block map's rounding amplification (make_methods.condition), and
the official Combi-CAM Grad-CAM++ on the last block only: `gradcampp-official.31`, `hvp.31`
(the Hessian-vector product h, (C, h, w)) and `gradcampp-official.fused` (make_methods.official_maps).
h and that map are always checked against a float64 run of the head on the float32 last-block
output and against a float64 central finite difference of g (make_methods.official_check).
--f64 also runs the model in float64 and prints every map's float32-vs-float64 error (slow).

Compare: for every tensor present in both files, max|ours-ref|/max|ref|, the reference map's peak
and positive fraction (and ours), kappa; then the worst per method. The Rust tool's
`--save-raw` file has `probs`, `logits`, `<method>.NN` (`gradcam.NN` for Grad-CAM), `combicam`,
`<method>.fused`, `<method>.RULE.fused` - the same names.

Usage:
  python tests/golden/methods_full.py --image PATH --out DIR [--f64]
  python tests/golden/methods_full.py --compare OURS.cams.safetensors DIR/methods_reference.safetensors
Needs torch, torchvision, efficientnet_pytorch==0.7.0, safetensors, numpy, pillow (compare: numpy,
safetensors only).
"""

import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402


def reference(args, ap):
    import importlib.metadata as md

    import torch
    from safetensors.numpy import save_file

    from full_reference import NUM_CELLS, preprocess
    from make_methods import EPS32, METHODS, OFFICIAL, all_maps, condition, map_stats, official_check, official_maps
    from visloc_ref import build_visloc, combicam, to_double

    if not os.path.isfile(args.image):
        ap.error(f"no such image: {args.image}")
    os.makedirs(args.out, exist_ok=True)
    x = preprocess(args.image)
    H, W = x.shape[1], x.shape[2]
    print(f"input tensor 3x{H}x{W}")
    t0 = time.perf_counter()
    bb, head = build_visloc("efficientnet-b4", NUM_CELLS)
    print(f"built model in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    r = combicam(bb, head, x[None], keep_blocks=True)
    t1 = time.perf_counter()
    nb, c = r["nblocks"], r["target"]
    with torch.no_grad():
        maps = all_maps(r, H, W)
        acts = [r[f"block.{l:02d}"] for l in range(nb)]
        grads = [r[f"grad.{l:02d}"] for l in range(nb)]
    t2 = time.perf_counter()
    kappa = {f"{m}.{l:02d}": condition(m, acts[l], grads[l]) for m in METHODS for l in range(nb)}
    print(f"forward+backward {t1 - t0:.2f} s, {len(maps)} maps of {len(METHODS)} methods x {nb} blocks "
          f"+ fusions {t2 - t1:.2f} s, kappa {time.perf_counter() - t2:.2f} s")
    top = torch.topk(r["probs"], 5)
    print("top-5 cells: " + ", ".join(f"{i} (p = {p:.4g})" for p, i in zip(top.values.tolist(), top.indices.tolist())))

    last = nb - 1
    t0 = time.perf_counter()
    off = official_maps(bb, head, acts[last], H, W)
    assert off["target"] == c, (off["target"], c)
    maps[f"{OFFICIAL}.{last:02d}"] = off["map"]
    maps[f"{OFFICIAL}.fused"] = off["fused"]
    print(f"{OFFICIAL} (block {last}, g and h = d(sum g)/dA through the head): {time.perf_counter() - t0:.2f} s")
    bbd, headd = to_double(bb, head)
    print("float64 head on the float32 block output:")
    official_check(bbd, headd, acts[last].double(), off, official_maps(bbd, headd, acts[last].double(), H, W, c),
                   g_full=grads[last])

    maps64 = None
    if args.f64:
        t0 = time.perf_counter()
        rd = combicam(bbd, headd, x[None].double(), keep_blocks=True)
        assert rd["target"] == c, "float64 run picks another top cell"
        with torch.no_grad():
            maps64 = all_maps(rd, H, W)
        print(f"float64 run {time.perf_counter() - t0:.1f} s")
        a64 = rd[f"block.{last:02d}"]
        off64 = official_maps(bbd, headd, a64, H, W, c)
        maps64[f"{OFFICIAL}.{last:02d}"] = off64["map"]
        maps64[f"{OFFICIAL}.fused"] = off64["fused"]
        print("float64 model:")
        official_check(bbd, headd, a64, off, off64, g_full=grads[last])

    print(f"{'map':30s} {'shape':10s} {'peak':>9s} {'pos.frac':>8s} {'kappa':>8s}" + (" f32-f64" if maps64 else ""))
    worst = {}
    for k, m in maps.items():
        peak, pos, err, _ = map_stats(k, m, None if maps64 is None else maps64[k])
        kp = kappa.get(k)
        line = f"{k:30s} {str(tuple(m.shape)):10s} {peak:9.3e} {pos:8.3f} {'' if kp is None else f'{kp:8.3g}':>8s}"
        if maps64 is not None:
            line += f" {err:8.2e}"
            meth = k.split(".")[0] if k != "combicam" else "gradcam"
            if err > worst.get(meth, (-1, ""))[0]:
                worst[meth] = (err, k)
        print(line)
    if maps64 is not None:
        print("worst float32-vs-float64 per method: "
              + ", ".join(f"{m} {e:.2e} ({k})" for m, (e, k) in worst.items()))
    ill = [(k, v) for k, v in kappa.items() if np.isfinite(v) and v > 100]
    print(f"ill-conditioned block maps (kappa > 100, float32 error ~ kappa x {EPS32:.1e}): "
          + (", ".join(f"{k} {v:.3g}" for k, v in ill) or "none"))
    print("all-zero block maps: " + (", ".join(k for k, v in kappa.items() if not np.isfinite(v)) or "none"))

    def f32(t):
        return np.ascontiguousarray(t.detach().numpy().astype(np.float32))

    out = {"input": f32(x), "logits": f32(r["logits"]), "probs": f32(r["probs"])}
    for k, m in maps.items():
        out[k] = f32(m)
    for m in METHODS:
        out[f"kappa.{m}"] = np.array([kappa[f"{m}.{l:02d}"] for l in range(nb)], np.float32)
    out[f"hvp.{last:02d}"] = f32(off["hvp"])
    meta = {
        "model": "efficientnet-b4+visloc_head",
        "height": str(H),
        "width": str(W),
        "num_classes": str(NUM_CELLS),
        "target": str(c),
        "blocks": str(nb),
        "official": f"{OFFICIAL}.{last:02d}, hvp.{last:02d}: last block only",
        "generator": "methods_full.py",
        "image": os.path.basename(args.image),
        "torch": torch.__version__,
        "efficientnet_pytorch": md.version("efficientnet_pytorch"),
    }
    path = os.path.join(args.out, "methods_reference.safetensors")
    save_file(out, path, metadata=meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(out)} tensors)")
    return 0


def _group(name):
    if name == "combicam":
        return "gradcam"
    if name in ("probs", "logits", "input"):
        return "model"
    return name.split(".")[0]


def compare(ours_path, ref_path):
    from safetensors.numpy import load_file

    ours = load_file(ours_path)
    ref = load_file(ref_path)
    common = [k for k in ref if k in ours and not k.startswith("kappa.")]
    common.sort(key=lambda k: (_group(k) == "model", _group(k), k))
    print(f"{len(common)} tensors in both; only in ours: {sorted(set(ours) - set(ref)) or 'none'}")
    print(f"{'tensor':30s} {'shape':12s} {'rel.err':>9s} {'ref peak':>9s} {'ref pos':>7s} {'our pos':>7s} {'kappa':>8s}")
    worst = {}
    bad = []
    for k in common:
        a = ours[k].astype(np.float64)
        b = ref[k].astype(np.float64)
        if a.shape != b.shape:
            print(f"{k:30s} SHAPE MISMATCH ours {a.shape} ref {b.shape}")
            bad.append(k)
            continue
        s = np.abs(b).max() if b.size else 0.0
        d = np.abs(a - b).max() if b.size else 0.0
        e = float(d / s) if s > 0 else float(d)
        kp = ""
        m = re.fullmatch(r"(.+)\.(\d\d)", k)
        if m and f"kappa.{m.group(1)}" in ref:
            kp = f"{ref[f'kappa.{m.group(1)}'][int(m.group(2))]:8.3g}"
        print(f"{k:30s} {str(b.shape):12s} {e:9.2e} {b.max():9.3e} {(b > 0).mean():7.3f} {(a > 0).mean():7.3f} {kp:>8s}")
        g = _group(k)
        if e > worst.get(g, (-1.0, ""))[0]:
            worst[g] = (e, k)
    print("worst per method:")
    for g, (e, k) in sorted(worst.items()):
        print(f"  {g:18s} {e:.3e}  ({k})")
    missing = sorted(k for k in ref if k not in ours and _group(k) in worst and not k.startswith("kappa."))
    if missing:
        print(f"in the reference but not in ours (methods ours has): {len(missing)}: {', '.join(missing[:12])}"
              + (" ..." if len(missing) > 12 else ""))
    if bad:
        print("problems:", ", ".join(bad))
    return 1 if bad else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="Full-size PyTorch reference of every CAM method (B4 + visloc head), or compare.")
    ap.add_argument("--image", help="input image (any PIL-readable format)")
    ap.add_argument("--out", help="output directory (methods_reference.safetensors goes there)")
    ap.add_argument("--f64", action="store_true", help="also run in float64 and print each map's float32 error")
    ap.add_argument("--compare", nargs=2, metavar=("OURS", "REF"), help="compare OURS.cams.safetensors with REF")
    args = ap.parse_args(argv)
    if args.compare:
        for p in args.compare:
            if not os.path.isfile(p):
                ap.error(f"no such file: {p}")
        return compare(*args.compare)
    if not (args.image and args.out):
        ap.error("give --image and --out, or --compare OURS REF")
    return reference(args, ap)


if __name__ == "__main__":
    sys.exit(main())
