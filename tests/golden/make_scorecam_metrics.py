"""Golden Score-CAM maps and faithfulness metrics: tests/golden/scorecam_metrics_b0.safetensors.

Same model and input as b0_visloc.safetensors / methods_b0.safetensors (efficientnet_pytorch
efficientnet-b0 + visloc head, N = 500, formula weights, input x = detweights.input_tensor,
1 x 3 x 67 x 45, the normalised input), float32 on CPU. p_c(y) = softmax(logits(y))[c], c = the top
cell of the unmodified x (argmax of its probabilities). up(.) = F.interpolate bilinear,
align_corners=True, to the input size (H, W) = (67, 45).

A. Score-CAM at block 15 (the last block; A = its output after the residual add, (C = 320, 3, 2)):
  scorecam           (pytorch-grad-cam 1.5) M_k = up(A_k); M_k = (M_k - min M_k)/(max M_k - min M_k + 1e-8)
                     (min / max over the upsampled map); s_k = p_c(x * M_k) (M_k broadcast over the 3
                     channels); w = softmax_k(s);           map = ReLU(sum_k w_k A_k)
  scorecam-official  (the Combi-CAM repository) M_k = up(A_k) raw; s_k = p_c(x * M_k);
                                                            map = ReLU(sum_k s_k A_k)
  fused: up(map), then min-max normalised ((t - min)/(max - min), zeros if flat).
  The 320 masked passes per method run in batches of 64.
  Checked against pytorch_grad_cam.ScoreCAM (target = softmax(logits)[c], target_layers =
  [bb._blocks[15]]): their channel weights and their unnormalised per-layer map
  (ReLU(sum_k w_k A_k) from their captured A), and both min-max normalised; and against a
  float64 run of the same model (the error to expect of a float32 implementation).

B. Faithfulness metrics (the README's Faithfulness section) for the saliency maps S (H x W, in [0, 1]) of
  combicam    = `combicam` of methods_b0.safetensors, the stored float32 values as they are;
  gradcam@15  = `gradcam.15` of methods_b0.safetensors, up(.) and min-max normalised.
  n = 10 steps. Pixels ranked by S descending, ties by raster index ascending (stable argsort of
  -S). At step i = 0..n the first k_i = floor(i H W / n) ranked pixels are changed on all 3 channels:
    deletion   x with the changed pixels := 0
    insertion  B = torchvision gaussian_blur(x, kernel_size=11, sigma=5) (reflect padding) with the
               changed pixels := x
  score_i = p_c of the perturbed input (n + 1 scores per curve);
  AUC = (sum_i score_i - (score_0 + score_n)/2) / n (trapezoid on [0, 1]).
  Average Drop = 100 max(0, Y - O)/Y, Increase = [O > Y] (1.0 / 0.0), Y = p_c(x), O = p_c(x * S)
  (S broadcast over the channels). Checked against pytorch-grad-cam's CamMultImageConfidenceChange
  (O - Y), DropInConfidence and IncreaseInConfidence, the blur against an independent float64
  numpy separable blur, the ranks against np.lexsort, and the curves against float64.

Tensors (float32): `input` (3, 67, 45), `probs` (500,) of x, `blurred` (3, 67, 45) = B;
  `scorecam.15`, `scorecam-official.15` (3, 2), `scorecam.scores`, `scorecam-official.scores`
  (320,) the s_k, `scorecam.fused`, `scorecam-official.fused` (67, 45);
  per explainer E in {combicam, gradcam@15}: `S.E` (67, 45), `deletion.E`, `insertion.E` (11,),
  `metrics.E` = [deletion AUC, insertion AUC, average drop, increase] (4,).
Caveat: with the formula weights the output hardly depends on the input, so every s_k and every
curve point equals p_c to ~3e-6 relative (~10x float32 rounding), `scorecam.15` ~ ReLU(mean_k A_k),
and `increase` (|O - Y| ~ 1e-7 Y) is decided by rounding; the script prints these spreads.
Metadata: `target`, `steps` ("10"), `block` ("15"), model, sizes, generator, versions.
Usage: python tests/golden/make_scorecam_metrics.py     (CPU, 2 threads, ~10 s)
Needs torch, torchvision, efficientnet_pytorch==0.7.0, safetensors, numpy, grad-cam==1.5.*,
and methods_b0.safetensors next to this script (make_methods.py).
"""

import contextlib
import io
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

BLOCK = 15
STEPS = 10
BATCH = 64
BLUR_KERNEL = 11
BLUR_SIGMA = 5.0
EXPLAINERS = ["combicam", "gradcam@15"]


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def _rel(ours, theirs):
    ours = np.asarray(ours, np.float64)
    theirs = np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    d = np.abs(ours - theirs).max()
    s = np.abs(theirs).max()
    return float(d / s) if s > 0 else float(d)


def probs_of(bb, head, xs, batch=BATCH):
    """Softmax probabilities (B, N) of the model on the inputs xs (B, 3, H, W), in batches."""
    out = []
    with torch.no_grad():
        for i in range(0, xs.shape[0], batch):
            fm = bb.extract_features(xs[i : i + batch])
            out.append(torch.softmax(head(F.adaptive_avg_pool2d(fm, 1).flatten(1)), dim=1))
    return torch.cat(out)


def block_output(bb, x, block=BLOCK):
    """Block `block`'s output (C, h, w) on x (1, 3, H, W) (a forward hook, after the residual add)."""
    got = []
    hook = bb._blocks[block].register_forward_hook(lambda _m, _i, o: got.append(o.detach().clone()))
    try:
        with torch.no_grad():
            bb.extract_features(x)
    finally:
        hook.remove()
    return got[0][0]


def up(m, H, W):
    """Bilinear, align_corners=True: (..., h, w) -> (..., H, W)."""
    shape = m.shape[:-2]
    t = m.reshape(-1, 1, *m.shape[-2:])
    t = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=True)
    return t.reshape(*shape, H, W)


def minmax(t):
    lo, hi = t.min(), t.max()
    return (t - lo) / (hi - lo) if hi > lo else torch.zeros_like(t)


def scorecam(bb, head, x, a, c, official):
    """(map (h, w), scores s (C,), fused (H, W)) of scorecam / scorecam-official from the block
    output a (C, h, w) of x (1, 3, H, W)."""
    H, W = x.shape[-2:]
    m = up(a, H, W)  # (C, H, W)
    if not official:
        flat = m.reshape(m.shape[0], -1)
        lo = flat.min(dim=1)[0][:, None, None]
        hi = flat.max(dim=1)[0][:, None, None]
        m = (m - lo) / (hi - lo + 1e-8)
    xs = x * m[:, None]  # (C, 3, H, W)
    s = probs_of(bb, head, xs)[:, c]
    w = s if official else torch.softmax(s, dim=0)
    cam = F.relu((w[:, None, None] * a).sum(0))
    return cam, s, minmax(up(cam, H, W))


def ranks_of(S):
    """order (pixel indices by S descending, ties by index ascending) and rank of every pixel."""
    flat = S.reshape(-1)
    order = np.argsort(-flat, kind="stable")
    rank = np.empty(flat.size, np.int64)
    rank[order] = np.arange(flat.size)
    return order, rank


def counts(npix, n=STEPS):
    return [(i * npix) // n for i in range(n + 1)]


def perturbed(x, blurred, order, n=STEPS):
    """(deletion, insertion) inputs (n + 1, 3, H, W) each: first k_i pixels of `order` changed."""
    _, _, H, W = x.shape
    xf = x[0].reshape(3, -1)
    bf = blurred[0].reshape(3, -1)
    dele, ins = [], []
    for k in counts(H * W, n):
        idx = torch.from_numpy(order[:k])
        d = xf.clone()
        d[:, idx] = 0
        b = bf.clone()
        b[:, idx] = xf[:, idx]
        dele.append(d.reshape(3, H, W))
        ins.append(b.reshape(3, H, W))
    return torch.stack(dele), torch.stack(ins)


def perturbed_by_rank(x, blurred, rank, n=STEPS):
    """Same as `perturbed`, written from the ranks with torch.where (a second path)."""
    _, _, H, W = x.shape
    rk = torch.from_numpy(rank.reshape(H, W))
    dele = [torch.where(rk < k, torch.zeros_like(x[0]), x[0]) for k in counts(H * W, n)]
    ins = [torch.where(rk < k, x[0], blurred[0]) for k in counts(H * W, n)]
    return torch.stack(dele), torch.stack(ins)


def auc(scores, n=STEPS):
    s = np.asarray(scores, np.float64)
    return (s.sum() - (s[0] + s[-1]) / 2) / n


def metrics(bb, head, x, blurred, S, c, Y):
    """{"deletion", "insertion" (n+1,), "metrics" [del AUC, ins AUC, drop, increase], "O"}."""
    order, _ = ranks_of(S.numpy())
    dele, ins = perturbed(x, blurred, order)
    p = probs_of(bb, head, torch.cat([dele, ins, x * S]))[:, c]
    d, i, O = p[: STEPS + 1], p[STEPS + 1 : 2 * STEPS + 2], p[-1].item()
    drop = 100.0 * max(0.0, Y - O) / Y
    inc = 1.0 if O > Y else 0.0
    return {"deletion": d, "insertion": i, "O": O,
            "metrics": torch.tensor([auc(d.numpy()), auc(i.numpy()), drop, inc], dtype=torch.float64)}


def blur_np(x, k=BLUR_KERNEL, sigma=BLUR_SIGMA):
    """Independent float64 separable Gaussian blur, reflect padding (no edge repeat). x: (3, H, W)."""
    half = (k - 1) / 2
    t = np.linspace(-half, half, k)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    p = k // 2
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (p, p), (p, p)), mode="reflect")
    H, W = x.shape[1:]
    rows = sum(g[j] * xp[:, j : j + H, :] for j in range(k))
    return sum(g[j] * rows[:, :, j : j + W] for j in range(k))


# ---------------------------------------------------------------- pytorch-grad-cam cross-checks


def scorecam_lib_check(bb, head, x, c, a_ours, ours):
    """pytorch_grad_cam.ScoreCAM run fully (its hooks and its masked passes); returns the relative
    errors of our weights / map vs theirs."""
    import pytorch_grad_cam as pgc
    from make_methods import _Model, _ProbTarget

    model = _Model(bb, head)
    layer = model.bb._blocks[BLOCK]
    cam = pgc.ScoreCAM(model=model, target_layers=[layer])
    cam.batch_size = BATCH
    saved = {}
    orig = cam.get_cam_weights

    def keep(*args, **kw):
        w = orig(*args, **kw)
        saved["w"] = w
        return w

    cam.get_cam_weights = keep
    with contextlib.redirect_stderr(io.StringIO()):  # tqdm progress bars
        full = cam(input_tensor=x, targets=[_ProbTarget(c)])
    ta = cam.activations_and_grads.activations[0].numpy()[0]
    cam.activations_and_grads.release()
    w = saved["w"][0]
    theirs = np.maximum((w[:, None, None].astype(np.float64) * ta).sum(0), 0)
    ours_w = torch.softmax(ours["scores"], 0).numpy()
    res = {
        "captured A": _rel(a_ours.numpy(), ta),
        "weights softmax(s)": _rel(ours_w, w),
        "map (unnormalised)": _rel(ours["map"].numpy(), theirs),
        "map (min-max normalised)": _rel(minmax(ours["map"]).numpy(),
                                         minmax(torch.from_numpy(theirs)).numpy()),
    }
    # their final output resizes with cv2 (half-pixel centres), so only the range is comparable
    assert full.shape == (1,) + tuple(x.shape[-2:]), full.shape
    return res


def confidence_lib_check(bb, head, x, S, c, Y, O):
    """pytorch-grad-cam's CamMultImageConfidenceChange / DropInConfidence / IncreaseInConfidence."""
    from make_methods import _Model, _ProbTarget
    from pytorch_grad_cam.metrics.cam_mult_image import (CamMultImageConfidenceChange,
                                                         DropInConfidence, IncreaseInConfidence)

    model = _Model(bb, head)
    t = [_ProbTarget(c)]
    cams = S.numpy()[None]
    change = float(CamMultImageConfidenceChange()(x, cams, t, model)[0])
    drop = float(DropInConfidence()(x, cams, t, model)[0])
    inc = float(IncreaseInConfidence()(x, cams, t, model)[0])
    return {"O - Y (ours)": O - Y, "O - Y (lib)": change,
            "drop % (lib)": 100.0 * drop / Y, "increase (lib)": inc}


# ---------------------------------------------------------------- main


def main():
    import importlib.metadata as md

    from safetensors.numpy import load_file, save_file
    from torchvision.transforms.functional import gaussian_blur

    import detweights
    from visloc_ref import build_visloc, to_double

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    variant, n, H, W = "efficientnet-b0", 500, 67, 45
    print(f"== scorecam_metrics_b0.safetensors: {variant}, N={n}, input 3x{H}x{W}, block {BLOCK}, {STEPS} steps")
    bb, head = build_visloc(variant, n)
    bbd, headd = to_double(bb, head)
    x = torch.from_numpy(detweights.input_tensor((1, 3, H, W)))
    probs = probs_of(bb, head, x)[0]
    c = int(torch.argmax(probs).item())
    Y = probs[c].item()
    probs64 = probs_of(bbd, headd, x.double())[0]
    assert int(torch.argmax(probs64).item()) == c
    print(f"   target c = {c}, p_c = {Y:.7g} (f32 vs f64 {_rel(probs.numpy(), probs64.numpy()):.2e})")

    gold = load_file(os.path.join(HERE, "methods_b0.safetensors"))
    assert np.array_equal(gold["input"], x[0].numpy()), "methods_b0.safetensors has another input"
    print(f"   vs methods_b0.safetensors: probs {_rel(probs.numpy(), gold['probs']):.2e}, "
          f"target {int(np.argmax(gold['probs']))}")
    assert int(np.argmax(gold["probs"])) == c

    t = {"input": f32(x[0]), "probs": f32(probs)}

    # ------------------------------------------------------------ A. Score-CAM
    a = block_output(bb, x)
    a64 = block_output(bbd, x.double())
    print(f"   block {BLOCK} output {tuple(a.shape)}, f32 vs f64 {_rel(a.numpy(), a64.numpy()):.2e}")
    sc = {}
    for name, official in (("scorecam", False), ("scorecam-official", True)):
        m, s, fused = scorecam(bb, head, x, a, c, official)
        m64, s64, fused64 = scorecam(bbd, headd, x.double(), a64, c, official)
        sc[name] = {"map": m, "scores": s}
        # how much the masks matter: this formula-weight model's output hardly depends on its input
        flat = (a.mean(0) if not official else s.mean() * a.sum(0)).relu()
        spread = (s64.max() - s64.min()).item() / s64.mean().item()
        print(f"   {name:18s} s_k spread (max - min)/mean (float64) {spread:.2e}; map vs "
              f"{'ReLU(mean_k A_k)' if not official else 'mean(s) ReLU(sum_k A_k)'} {_rel(m.numpy(), flat.numpy()):.2e}")
        t[f"{name}.{BLOCK}"] = f32(m)
        t[f"{name}.scores"] = f32(s)
        t[f"{name}.fused"] = f32(fused)
        print(f"   {name:18s} max|map| {m.abs().max().item():.6e}, positive {int((m > 0).sum())}/{m.numel()}, "
              f"scores [{s.min().item():.4e}, {s.max().item():.4e}] mean {s.mean().item():.4e}; "
              f"f32 vs f64: scores {_rel(s.numpy(), s64.numpy()):.2e}, map {_rel(m.numpy(), m64.numpy()):.2e}, "
              f"fused {_rel(fused.numpy(), fused64.numpy()):.2e}")
    res = scorecam_lib_check(bb, head, x, c, a, sc["scorecam"])
    print("   scorecam vs pytorch_grad_cam.ScoreCAM (max|ours-theirs|/max|theirs|):")
    for k, v in res.items():
        print(f"     {k:26s} {v:.2e}")
    assert res["map (min-max normalised)"] < 1e-4, res

    # ------------------------------------------------------------ B. metrics
    blurred = gaussian_blur(x, kernel_size=BLUR_KERNEL, sigma=BLUR_SIGMA)
    e_blur = _rel(blurred[0].numpy(), blur_np(x[0].numpy()))
    print(f"   blurred input (kernel {BLUR_KERNEL}, sigma {BLUR_SIGMA}, reflect): vs float64 numpy separable {e_blur:.2e}")
    assert e_blur < 1e-5
    t["blurred"] = f32(blurred[0])
    blurred64 = gaussian_blur(x.double(), kernel_size=BLUR_KERNEL, sigma=BLUR_SIGMA)

    maps = {
        "combicam": torch.from_numpy(gold["combicam"].copy()),
        "gradcam@15": minmax(up(torch.from_numpy(gold[f"gradcam.{BLOCK}"].copy()), H, W)),
    }
    for e, S in maps.items():
        assert S.shape == (H, W) and S.min().item() == 0.0 and S.max().item() == 1.0, e
        Sn = S.numpy()
        assert not np.any(np.signbit(Sn) & (Sn == 0)), "negative zero in S"  # Rust ranks with total_cmp
        order, rank = ranks_of(Sn)
        order2 = np.lexsort((np.arange(Sn.size), -Sn.reshape(-1).astype(np.float64)))
        assert np.array_equal(order, order2), e
        d1, i1 = perturbed(x, blurred, order)
        d2, i2 = perturbed_by_rank(x, blurred, rank)
        assert torch.equal(d1, d2) and torch.equal(i1, i2), e
        r = metrics(bb, head, x, blurred, S, c, Y)
        r64 = metrics(bbd, headd, x.double(), blurred64, S.double(), c, probs64[c].item())
        t[f"S.{e}"] = f32(S)
        t[f"deletion.{e}"] = f32(r["deletion"])
        t[f"insertion.{e}"] = f32(r["insertion"])
        t[f"metrics.{e}"] = f32(r["metrics"])
        mt = r["metrics"].tolist()
        _, nties = np.unique(Sn, return_counts=True)
        print(f"   {e}: {int((nties > 1).sum())} tied values ({int(nties[nties > 1].sum())} pixels); "
              f"deletion AUC {mt[0]:.6f}, insertion AUC {mt[1]:.6f}, average drop {mt[2]:.4f} %, "
              f"increase {mt[3]:.0f} (O = {r['O']:.6g})")
        print(f"     deletion  {np.array2string(r['deletion'].numpy(), precision=5, max_line_width=200)}")
        print(f"     insertion {np.array2string(r['insertion'].numpy(), precision=5, max_line_width=200)}")
        print(f"     f32 vs f64: deletion {_rel(r['deletion'].numpy(), r64['deletion'].numpy()):.2e}, "
              f"insertion {_rel(r['insertion'].numpy(), r64['insertion'].numpy()):.2e}, "
              f"metrics {np.abs(r['metrics'].numpy() - r64['metrics'].numpy()).max():.2e} (abs)")
        assert abs(r["deletion"][0].item() - Y) <= 1e-6 * Y and abs(r["insertion"][-1].item() - Y) <= 1e-6 * Y
        curves = torch.cat([r64["deletion"], r64["insertion"]])
        O64, Y64 = r64["O"], probs64[c].item()
        print(f"     curve spread (max - min)/p_c (float64) {(curves.max() - curves.min()).item() / Y64:.2e}; "
              f"(O - Y)/Y float32 {(r['O'] - Y) / Y:.2e}, float64 {(O64 - Y64) / Y64:.2e}")
        lib = confidence_lib_check(bb, head, x, S, c, Y, r["O"])
        print("     vs CamMultImageConfidenceChange: " + ", ".join(f"{k} {v:.7g}" for k, v in lib.items()))
        tol = 1e-6 * Y  # batch-size dependent float32 rounding of p_c
        assert abs(lib["O - Y (lib)"] - lib["O - Y (ours)"]) <= tol
        assert abs(lib["drop % (lib)"] - mt[2]) <= 100 * tol / Y
        if abs(r["O"] - Y) > tol:
            assert lib["increase (lib)"] == mt[3]
        else:
            print(f"     NOTE: |O - Y| <= {tol:.1e}: `increase` ({mt[3]:.0f}) is decided by float32 rounding, "
                  f"do not test it exactly")

    meta = {
        "target": str(c),
        "steps": str(STEPS),
        "block": str(BLOCK),
        "model": f"{variant}+visloc_head",
        "height": str(H),
        "width": str(W),
        "num_classes": str(n),
        "blur": f"gaussian_blur kernel_size={BLUR_KERNEL} sigma={BLUR_SIGMA} reflect",
        "explainers": ",".join(EXPLAINERS),
        "generator": "make_scorecam_metrics.py",
        "torch": torch.__version__,
        "torchvision": md.version("torchvision"),
        "efficientnet_pytorch": md.version("efficientnet_pytorch"),
        "grad-cam": md.version("grad-cam"),
        "numpy": np.__version__,
    }
    path = os.path.join(HERE, "scorecam_metrics_b0.safetensors")
    save_file(t, path, metadata=meta)
    print(f"   wrote {path} ({os.path.getsize(path)} bytes, {len(t)} tensors) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
