"""Golden maps of every CAM method and fusion rule: tests/golden/methods_b0.safetensors.

Same model and input as b0_visloc.safetensors (efficientnet_pytorch efficientnet-b0 + visloc
head, N = 500, formula weights, input 3x67x45 = detweights.input_tensor), ONE forward and ONE
backward (visloc_ref.combicam: A_l = block l output after the residual add, g_l = d p_c / d A_l,
c = top cell). From A_l, g_l every method's block map is computed independently here, in float32
(stored) and in float64 (from a float64 run of the model, to print the float32 error per map):

  gradcam            w_k = mean_ij g;                                map = ReLU(sum_k w_k A_k)
  gradcampp          a = g^2 / (2 g^2 + (sum_ij A_k) g^3 + 1e-6), a = 0 where g = 0;
                     w_k = sum_ij ReLU(g) a;                         map = ReLU(sum_k w_k A_k)
  xgradcam           w_k = sum_ij g A_k / (sum_ij A_k + 1e-7);       map = ReLU(sum_k w_k A_k)
  hirescam           map = ReLU(sum_k g_k * A_k)
  gradcam-elementwise map = ReLU(sum_k ReLU(g_k * A_k))        (pytorch-grad-cam GradCAMElementWise)
  fem                w_k = mean_ij [A_k > mean_ij A_k + 2 std_ij A_k] (population std; no gradient;
                     pytorch-grad-cam FEM, k = 2);             map = ReLU(sum_k w_k A_k)
  layercam           map = ReLU(sum_k ReLU(g_k) * A_k)
  layercam-official  map = ReLU(sum_k ReLU(g_k) / (max_block ReLU(g) + 1e-8) * A_k)

  gradcampp-official (last block only; the official Combi-CAM repository's Grad-CAM++):
                     g = d p_c / d A, h = d(sum g)/d A (a Hessian-vector product through the
                     head: conv_head + BN + swish, average pool, linear, softmax);
                     a = g^2 / (2 g^2 + h g + 1e-10) * ReLU(g) (no special case for g = 0);
                     w_k = sum_ij a_k;                               map = ReLU(sum_k w_k A_k)

Fusion at the input size H x W (F.interpolate bilinear, align_corners=True), then min-max
normalised ((t - min)/(max - min), zeros if flat): sum, mean (sum / B), mean-normalised / max /
product of up(n_l), n_l = (m_l - min m_l)/(max m_l - min m_l + 1e-7) at block resolution.
Default fusion: gradcam -> sum (`combicam`), gradcampp/xgradcam/hirescam -> sum, layercam -> max,
layercam-official -> mean.

Tensors: `input`, `probs`, `<method>.NN` (16 blocks, h_l x w_l), `combicam`, `<method>.fused`
(default fusion, all blocks), `gradcam.{mean,mean-normalised,max,product}.fused` (all blocks),
`blocks12-15.<gradcam fused name>` (the five rules over blocks 12-15 only: the product over all
16 blocks is flat, i.e. zeros, because gradcam.08-11 are all zero), `kappa.<method>` (16,): each
block map's rounding amplification (see `condition`; inf for an all-zero map);
`gradcampp-official.NN` and `hvp.NN` (h, (C, h, w)) for the last block NN only, and
`gradcampp-official.fused` (that map upsampled and min-max normalised). h is checked against
float64 and against a central finite difference of g along the all-ones direction.
Cross-checks the block maps with pytorch-grad-cam 1.5's own classes (GradCAM, GradCAMPlusPlus,
XGradCAM, HiResCAM, GradCAMElementWise, LayerCAM, FEM) at blocks 3, 9, 13, 15.
Usage: python tests/golden/make_methods.py          (CPU, a few seconds)
Needs torch, efficientnet_pytorch==0.7.0, safetensors, numpy, grad-cam==1.5.* (pytorch_grad_cam).
The functions `block_map`, `method_maps`, `fuse`, `all_maps`, `official_maps`, `official_check`
are shared with methods_full.py.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

METHODS = [
    "gradcam",
    "gradcampp",
    "xgradcam",
    "hirescam",
    "gradcam-elementwise",
    "layercam",
    "layercam-official",
    "fem",
]
DEFAULT_FUSION = {
    "gradcam": "sum",
    "gradcampp": "sum",
    "xgradcam": "sum",
    "hirescam": "sum",
    "gradcam-elementwise": "sum",
    "fem": "sum",
    "layercam": "max",
    "layercam-official": "mean",
}
FUSIONS = ["sum", "mean", "mean-normalised", "max", "product"]
CHECK_LAYERS = [3, 9, 13, 15]
SUBSET = [12, 13, 14, 15]
SUBSET_NAME = "blocks12-15"


def fused_name(method: str, rule: str) -> str:
    """The Rust tool's name of a fused map (Explainer::fused_name)."""
    if method == "gradcam" and rule == "sum":
        return "combicam"
    if rule == DEFAULT_FUSION[method]:
        return f"{method}.fused"
    return f"{method}.{rule}.fused"


def block_map(method: str, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """One block's map (h, w), after ReLU, unnormalised. a, g: (C, h, w), same dtype."""
    if method == "gradcam":
        w = g.mean(dim=(1, 2))
    elif method == "gradcampp":  # the order of operations of pytorch-grad-cam 1.5
        g2 = g * g
        g3 = g2 * g
        s = a.sum(dim=(1, 2))[:, None, None]
        aij = g2 / (2 * g2 + s * g3 + 1e-6)
        aij = torch.where(g != 0, aij, torch.zeros_like(aij))
        w = (F.relu(g) * aij).sum(dim=(1, 2))
    elif method == "xgradcam":
        s = a.sum(dim=(1, 2))[:, None, None]
        w = (g * a / (s + 1e-7)).sum(dim=(1, 2))
    elif method == "hirescam":
        return F.relu((g * a).sum(0))
    elif method == "gradcam-elementwise":
        return F.relu(F.relu(g * a).sum(0))
    elif method == "fem":
        w = fem_weights(a)
    elif method == "layercam":
        return F.relu((F.relu(g) * a).sum(0))
    elif method == "layercam-official":
        rg = F.relu(g)
        return F.relu((rg / (rg.max() + 1e-8) * a).sum(0))
    else:
        raise ValueError(method)
    return F.relu((w[:, None, None] * a).sum(0))


def fem_weights(a: torch.Tensor) -> torch.Tensor:
    """FEM's channel weights (C,): the share of positions above mean + 2 std (population)."""
    mean = a.mean(dim=(1, 2))
    std = a.std(dim=(1, 2), unbiased=False)
    th = (mean + 2 * std)[:, None, None]
    return (a > th).to(a.dtype).mean(dim=(1, 2))


def condition(method: str, a: torch.Tensor, g: torch.Tensor) -> float:
    """Rounding amplification of a block map: kappa = max_ij sum_k |c_k| rho_k / peak, where
    c_k is channel k's term of the channel sum and rho_k = 1 + the condition number of its
    weight (gradcam: sum|g_k|/|sum g_k|; xgradcam: sum|A_k|/|sum A_k + 1e-7| +
    sum|g A_k|/|sum g A_k|; others 1). A float32 map is expected within ~kappa * 6e-8 (relative
    to its peak) of exact; inf for an all-zero map. Computed in float64."""
    a = a.double()
    g = g.double()
    one = torch.ones(a.shape[0], dtype=a.dtype)
    if method == "gradcam":
        w = g.mean(dim=(1, 2))
        rho = 1 + g.abs().sum((1, 2)) / g.sum((1, 2)).abs()
        c = w[:, None, None] * a
    elif method == "gradcampp":
        g2 = g * g
        aij = g2 / (2 * g2 + a.sum(dim=(1, 2))[:, None, None] * g2 * g + 1e-6)
        aij = torch.where(g != 0, aij, torch.zeros_like(aij))
        c = (F.relu(g) * aij).sum(dim=(1, 2))[:, None, None] * a
        rho = one
    elif method == "xgradcam":
        s = a.sum(dim=(1, 2))
        ga = g * a
        c = (ga.sum((1, 2)) / (s + 1e-7))[:, None, None] * a
        rho = 1 + a.abs().sum((1, 2)) / (s + 1e-7).abs() + ga.abs().sum((1, 2)) / ga.sum((1, 2)).abs()
    elif method == "hirescam":
        c, rho = g * a, one
    elif method == "gradcam-elementwise":
        c, rho = F.relu(g * a), one
    elif method == "fem":
        c, rho = fem_weights(a)[:, None, None] * a, one
    elif method == "layercam":
        c, rho = F.relu(g) * a, one
    elif method == "layercam-official":
        rg = F.relu(g)
        c, rho = rg / (rg.max() + 1e-8) * a, one
    else:
        raise ValueError(method)
    peak = F.relu(c.sum(0)).max().item()
    if peak <= 0:
        return float("inf")
    return ((c.abs() * rho[:, None, None]).sum(0).max() / peak).item()


def method_maps(method, acts, grads):
    return [block_map(method, a, g) for a, g in zip(acts, grads)]


def _up(m, H, W):
    return F.interpolate(m[None, None], size=(H, W), mode="bilinear", align_corners=True)[0, 0]


def _norm_block(m):
    return (m - m.min()) / (m.max() - m.min() + 1e-7)


def fuse(maps, rule: str, H: int, W: int) -> torch.Tensor:
    """Fused map (H, W) over `maps` (in block order), min-max normalised (zeros if flat)."""
    if rule in ("sum", "mean"):
        t = torch.zeros(H, W, dtype=maps[0].dtype)
        for m in maps:
            t = t + _up(m, H, W)
        if rule == "mean":
            t = t / len(maps)
    elif rule == "mean-normalised":
        t = torch.zeros(H, W, dtype=maps[0].dtype)
        for m in maps:
            t = t + _up(_norm_block(m), H, W)
        t = t / len(maps)
    elif rule == "max":
        t = _up(_norm_block(maps[0]), H, W)
        for m in maps[1:]:
            t = torch.maximum(t, _up(_norm_block(m), H, W))
    elif rule == "product":
        t = _up(_norm_block(maps[0]), H, W)
        for m in maps[1:]:
            t = t * _up(_norm_block(m), H, W)
    else:
        raise ValueError(rule)
    lo, hi = t.min(), t.max()
    return (t - lo) / (hi - lo) if hi > lo else torch.zeros_like(t)


def all_maps(r, H, W, gradcam_rules=True):
    """{name: tensor} for every method's block maps and fused maps, from a visloc_ref.combicam result r."""
    nb = r["nblocks"]
    acts = [r[f"block.{l:02d}"] for l in range(nb)]
    grads = [r[f"grad.{l:02d}"] for l in range(nb)]
    out = {}
    for method in METHODS:
        maps = method_maps(method, acts, grads)
        for l, m in enumerate(maps):
            out[f"{method}.{l:02d}"] = m
        rules = FUSIONS if (method == "gradcam" and gradcam_rules) else [DEFAULT_FUSION[method]]
        for rule in rules:
            out[fused_name(method, rule)] = fuse(maps, rule, H, W)
    return out


# ---------------------------------------------------------------- gradcampp-official (last block)

OFFICIAL = "gradcampp-official"


def head_probs(bb, head, a):
    """Softmax probabilities (1, N) from the last block's output a (1, C, h, w): the model's
    conv_head, bn1 and swish (as extract_features), adaptive average pool, flatten, the visloc
    head's linear, softmax."""
    z = bb._swish(bb._bn1(bb._conv_head(a)))
    return torch.softmax(head(F.adaptive_avg_pool2d(z, 1).flatten(1)), dim=1)


def head_grad(bb, head, a, c):
    """g = d p_c / d a through the head only (first order). a: (C, h, w)."""
    a = a.detach().clone()[None].requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(head_probs(bb, head, a)[0, c], a)
    return g[0]


def official_block_map(a, g, h):
    """gradcampp-official map (h, w), after ReLU, unnormalised. a, g, h: (C, h, w)."""
    g2 = g * g
    aij = g2 / (2 * g2 + h * g + 1e-10) * F.relu(g)
    w = aij.sum(dim=(1, 2))
    return F.relu((w[:, None, None] * a).sum(0))


def official_maps(bb, head, a, H, W, c=None):
    """From the last block's output a (C, h, w): {"target", "probs", "grad", "hvp", "map",
    "fused"}. g = d p_c/d A with create_graph, h = d(sum g)/d A; c = argmax p if None."""
    A = a.detach().clone()[None].requires_grad_(True)
    with torch.enable_grad():
        p = head_probs(bb, head, A)
        if c is None:
            c = int(torch.argmax(p[0]).item())
        (g,) = torch.autograd.grad(p[0, c], A, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), A)
    g = g.detach()[0]
    h = h.detach()[0]
    with torch.no_grad():
        m = official_block_map(a.detach(), g, h)
        fused = fuse([m], "sum", H, W)  # upsample + min-max normalise (zeros if flat)
    return {"target": c, "probs": p.detach()[0], "grad": g, "hvp": h, "map": m, "fused": fused}


def official_check(bb64, head64, a64, o32, o64, g_full=None):
    """Prints (and returns) the float32-vs-float64 relative errors of h and the map, and the
    central finite difference (g(A + t 1) - g(A - t 1)) / 2t, t = 1e-4 max|A|, in float64,
    against the float64 h; also h with the model's swish vs F.silu (double backward of
    efficientnet_pytorch's custom SwishImplementation). g_full: g of the full-model backward."""
    c = o64["target"]
    rel_ = lambda x, y: _rel(x.detach().double().numpy(), y.detach().double().numpy())  # noqa: E731
    res = {
        "grad f32-f64": rel_(o32["grad"], o64["grad"]),
        "hvp f32-f64": rel_(o32["hvp"], o64["hvp"]),
        "map f32-f64": rel_(o32["map"], o64["map"]),
        "fused f32-f64": rel_(o32["fused"], o64["fused"]),
    }
    if g_full is not None:
        res["grad vs full backward"] = rel_(o32["grad"], g_full)
    t = 1e-4 * a64.abs().max().item()
    one = torch.ones_like(a64)
    fd = (head_grad(bb64, head64, a64 + t * one, c) - head_grad(bb64, head64, a64 - t * one, c)) / (2 * t)
    res[f"hvp vs central FD (t = {t:.2e})"] = rel_(fd, o64["hvp"])
    swish = bb64._swish
    try:
        bb64._swish = nn.SiLU()
        o_silu = official_maps(bb64, head64, a64, 2, 2, c)
    finally:
        bb64._swish = swish
    res["hvp swish vs F.silu (f64)"] = rel_(o_silu["hvp"], o64["hvp"])
    m = o32["map"]
    g, h = o64["grad"], o64["hvp"]
    den = 2 * g * g + h * g
    nz = g > 0
    worst_den = (den[nz].abs() / (g[nz] * g[nz])).min().item() if nz.any() else float("nan")
    print(f"   {OFFICIAL} (last block, target {c}): map {tuple(m.shape)} peak {m.max().item():.4e}, "
          f"positive fraction {(m > 0).double().mean().item():.3f}; min over g > 0 of "
          f"|2g^2 + h g| / g^2 = {worst_den:.3g}; |h| max {h.abs().max().item():.3e}, |g| max {g.abs().max().item():.3e}")
    for k, v in res.items():
        print(f"     {k:34s} {v:.2e}")
    return res


def map_stats(name, m32, m64=None):
    """(peak, positive fraction, float32-vs-float64 relative error or None, #sign flips)."""
    a = m32.detach().double()
    peak = a.max().item()
    pos = (a > 0).double().mean().item()
    err = flips = None
    if m64 is not None:
        b = m64.detach().double()
        s = b.abs().max().item()
        d = (a - b).abs().max().item()
        err = d / s if s > 0 else d
        flips = int(((a > 0) != (b > 0)).sum().item())
    return peak, pos, err, flips


def method_of(name: str) -> str:
    if name == "combicam":
        return "gradcam"
    head = name.split(".")[0]
    return head if head in METHODS else "model"


# ---------------------------------------------------------------- pytorch-grad-cam cross-check


class _Model(nn.Module):
    """backbone + visloc head as one module returning logits (what pytorch-grad-cam wants)."""

    def __init__(self, bb, head):
        super().__init__()
        self.bb = bb
        self.head = head

    def forward(self, x):
        fm = self.bb.extract_features(x)
        return self.head(F.adaptive_avg_pool2d(fm, 1).flatten(1))


class _ProbTarget:
    def __init__(self, c):
        self.c = c

    def __call__(self, out):  # out: logits of one sample (N,)
        return torch.softmax(out, dim=-1)[self.c]


def gradcam_lib_check(bb, head, x, c, acts, grads, acts64, grads64, ours, ours64, conds, layers=CHECK_LAYERS):
    """Runs pytorch-grad-cam's classes fully (hooks, forward, backward of p_c) at `layers` and
    compares (1) their captured A, g with ours, (2) their block map (get_cam_image + max(0),
    what compute_cam_per_layer does before scale_cam_image) on their A, g and on ours with our
    float32 map, (3) their formula in float64 on our float64 A, g with our float64 map.
    Asserts (3) < 1e-12 and (2) < tol = max(1e-5, 16 kappa eps32) (kappa: `condition`; only
    ill-conditioned maps get more than 1e-5). Returns the worst (2) / tol."""
    import pytorch_grad_cam as pgc

    classes = {
        "gradcam": pgc.GradCAM,
        "gradcampp": pgc.GradCAMPlusPlus,
        "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM,
        "gradcam-elementwise": pgc.GradCAMElementWise,
        "fem": pgc.FEM,
        "layercam": pgc.LayerCAM,
        "layercam-official": pgc.LayerCAM,  # fed with g / (max ReLU(g) + 1e-8)
    }
    model = _Model(bb, head)
    targets = [_ProbTarget(c)]
    worst = 0.0
    print("   pytorch-grad-cam cross-check: max|ours-theirs|/max|theirs| at block resolution")
    print("   method             block  A,g captured  their A,g   our A,g   float64     tol")
    for method, cls in classes.items():
        for l in layers:
            layer = model.bb._blocks[l]
            cam = cls(model=model, target_layers=[layer])
            # parameters are frozen and x needs no grad: let BaseCAM make x require grad so that
            # the block outputs do (the attribute its forward() reads)
            cam.compute_input_gradient = True
            with torch.enable_grad():
                full = cam(input_tensor=x[None], targets=targets)
            ta = cam.activations_and_grads.activations[0].numpy()
            # FEM uses no gradient: pytorch-grad-cam runs no backward for it
            grads_seen = len(cam.activations_and_grads.gradients) > 0
            tg = cam.activations_and_grads.gradients[0].numpy() if grads_seen else np.zeros_like(ta)
            cam.activations_and_grads.release()
            a_ours = acts[l][None].numpy()
            g_ours = grads[l][None].numpy() if grads_seen else np.zeros_like(a_ours)
            cap = max(_rel(ta, a_ours), _rel(tg, g_ours))

            def theirs(a_np, g_np):
                if method == "layercam-official":
                    g_np = g_np / (np.maximum(g_np, 0).max() + g_np.dtype.type(1e-8))
                m = cam.get_cam_image(x[None], layer, targets, a_np, g_np, False)
                return np.maximum(m, 0)[0]

            ref = ours[f"{method}.{l:02d}"].numpy()
            e_their = _rel(ref, theirs(ta, tg))
            e_ours = _rel(ref, theirs(a_ours, g_ours))
            e64 = _rel(
                ours64[f"{method}.{l:02d}"].numpy(),
                theirs(acts64[l][None].numpy(), grads64[l][None].numpy() if grads_seen else np.zeros(acts64[l][None].shape)),
            )
            assert full.shape == (1,) + tuple(x.shape[1:]), full.shape
            tol = max(1e-5, 16 * conds[f"{method}.{l:02d}"] * EPS32)
            print(f"   {method:18s} {l:5d}  {cap:11.2e}  {e_their:9.2e}  {e_ours:8.2e}  {e64:8.2e}  {tol:.1e}")
            assert e64 < 1e-12, (method, l, e64)
            assert max(e_their, e_ours) < tol, (method, l, e_their, e_ours, tol)
            worst = max(worst, e_their / tol, e_ours / tol)
    return worst


def _rel(ours, theirs):
    ours = np.asarray(ours, np.float64)
    theirs = np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    d = np.abs(ours - theirs).max()
    s = np.abs(theirs).max()
    return float(d / s) if s > 0 else float(d)


# ---------------------------------------------------------------- main


EPS32 = 2.0**-24  # float32 unit roundoff


def print_stats(maps32, maps64, conds):
    """Per map: peak, positive fraction, float32-vs-float64 error, kappa (see `condition`);
    returns the block maps that are tiny, have few positive pixels or are ill-conditioned."""
    print(f"   {'map':34s} {'shape':9s} {'peak':>9s} {'pos.frac':>8s} {'f32-f64':>8s} {'kappa':>8s}  note")
    biggest = {}
    for k, m in maps32.items():
        if k.split(".")[-1].isdigit():
            biggest[method_of(k)] = max(biggest.get(method_of(k), 0.0), m.max().item())
    flagged = []
    for k, m in maps32.items():
        peak, pos, err, flips = map_stats(k, m, maps64[k])
        kappa = conds.get(k)
        notes = []
        if kappa is not None:
            n = m.numel()
            if peak == 0:
                notes.append("all zero")
            elif peak < 1e-6 * biggest[method_of(k)]:
                notes.append(f"tiny (peak {peak / biggest[method_of(k)]:.0e} of the method's largest)")
            if 0 < pos * n <= max(2, 0.1 * n):
                notes.append(f"few positive ({round(pos * n)}/{n})")
            if peak > 0 and kappa > 100:
                notes.append(f"ill-conditioned (kappa*eps32 = {kappa * EPS32:.1e})")
            if flips:
                notes.append(f"{flips} sign flips vs float64")
            if notes:
                flagged.append((k, peak, pos, err, kappa, "; ".join(notes)))
        ks = "" if kappa is None else f"{kappa:8.3g}"
        print(f"   {k:34s} {str(tuple(m.shape)):9s} {peak:9.3e} {pos:8.3f} {err:8.2e} {ks:>8s}  {'; '.join(notes)}")
    return flagged


def main():
    import importlib.metadata as md

    from safetensors.numpy import save_file

    import detweights
    from make_golden import f32, rel
    from visloc_ref import build_visloc, combicam, to_double

    variant, n, h, w = "efficientnet-b0", 500, 67, 45
    print(f"== methods_b0.safetensors: {variant}, N={n}, input 3x{h}x{w}")
    bb, head = build_visloc(variant, n)
    x = torch.from_numpy(detweights.input_tensor((1, 3, h, w)))
    r = combicam(bb, head, x)
    c, nb = r["target"], r["nblocks"]
    print(f"   top cell {c}, top prob {r['probs'][c].item():.6g}, {nb} blocks")
    bbd, headd = to_double(bb, head)
    rd = combicam(bbd, headd, x.double())
    assert rd["target"] == c, "float64 run picks another top cell"
    print(f"   f32 vs f64: probs {rel(r['probs'], rd['probs']):.2e}")

    maps32 = all_maps(r, h, w)
    maps64 = all_maps(rd, h, w)
    # a block subset where every gradcam map is non-zero (the product over all 16 blocks is
    # flat, hence all zeros): what `--blocks 12-15` gives
    for src, dst in ((r, maps32), (rd, maps64)):
        sub = [src[f"gradcam.{l:02d}"] for l in SUBSET]
        for rule in FUSIONS:
            dst[f"{SUBSET_NAME}.{fused_name('gradcam', rule)}"] = fuse(sub, rule, h, w)
    # our gradcam / combicam are visloc_ref's (same formula, same order of operations)
    for l in range(nb):
        assert torch.equal(maps32[f"gradcam.{l:02d}"], r[f"gradcam.{l:02d}"]), l
    assert torch.equal(maps32["combicam"], r["combicam"])
    acts = [r[f"block.{l:02d}"] for l in range(nb)]
    grads = [r[f"grad.{l:02d}"] for l in range(nb)]
    acts64 = [rd[f"block.{l:02d}"] for l in range(nb)]
    grads64 = [rd[f"grad.{l:02d}"] for l in range(nb)]
    conds = {f"{m}.{l:02d}": condition(m, acts64[l], grads64[l]) for m in METHODS for l in range(nb)}
    flagged = print_stats(maps32, maps64, conds)
    old = os.path.join(HERE, "b0_visloc.safetensors")
    if os.path.isfile(old):  # same model and input: only run-to-run float32 noise expected
        from safetensors.numpy import load_file

        g = load_file(old)
        e = max(_rel(maps32[f"gradcam.{l:02d}"].numpy(), g[f"gradcam.{l:02d}"]) for l in range(nb))
        print(f"   vs b0_visloc.safetensors: worst gradcam.NN {e:.2e}, combicam "
              f"{_rel(maps32['combicam'].numpy(), g['combicam']):.2e}, probs {_rel(r['probs'].numpy(), g['probs']):.2e}")

    worst = gradcam_lib_check(bb, head, x[0], c, acts, grads, acts64, grads64, maps32, maps64, conds)
    print(f"   worst vs pytorch-grad-cam (float32, relative to the tolerance): {worst:.2f}")

    if flagged:
        print("   tiny / few-positive / ill-conditioned block maps:")
        for k, peak, pos, err, kappa, note in flagged:
            print(f"     {k:22s} peak {peak:.3e}  pos {pos:.3f}  f32-f64 {err:.2e}  kappa {kappa:.3g}  {note}")

    t = {"input": f32(x[0]), "probs": f32(r["probs"])}
    for k, m in maps32.items():
        t[k] = f32(m)
    last = nb - 1
    o32 = official_maps(bb, head, acts[last], h, w)
    assert o32["target"] == c, (o32["target"], c)
    o64 = official_maps(bbd, headd, acts64[last], h, w, c)
    official_check(bbd, headd, acts64[last], o32, o64, g_full=grads[last])
    t[f"{OFFICIAL}.{last:02d}"] = f32(o32["map"])
    t[f"hvp.{last:02d}"] = f32(o32["hvp"])
    t[f"{OFFICIAL}.fused"] = f32(o32["fused"])
    for m in METHODS:  # per-block rounding amplification (inf: all-zero map), for test tolerances
        t[f"kappa.{m}"] = np.array([conds[f"{m}.{l:02d}"] for l in range(nb)], np.float32)
    meta = {
        "model": f"{variant}+visloc_head",
        "height": str(h),
        "width": str(w),
        "num_classes": str(n),
        "target": str(c),
        "blocks": str(nb),
        "methods": ",".join(METHODS + [OFFICIAL]),
        "official": f"{OFFICIAL}.NN, hvp.NN: last block only",
        "subset": f"{SUBSET_NAME}.*: gradcam fused over blocks " + ",".join(map(str, SUBSET)),
        "default_fusion": ",".join(f"{m}:{DEFAULT_FUSION[m]}" for m in METHODS),
        "generator": "make_methods.py",
        "torch": torch.__version__,
        "efficientnet_pytorch": md.version("efficientnet_pytorch"),
        "grad-cam": md.version("grad-cam"),
        "numpy": np.__version__,
    }
    path = os.path.join(HERE, "methods_b0.safetensors")
    save_file(t, path, metadata=meta)
    print(f"   wrote {path} ({os.path.getsize(path)} bytes, {len(t)} tensors)")


if __name__ == "__main__":
    main()
