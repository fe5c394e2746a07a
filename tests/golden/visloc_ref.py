"""PyTorch reference of the visloc model + Combi-CAM, shared by the golden scripts.

Builds efficientnet_pytorch 0.7.0 backbones (`EfficientNet.from_name`) and the
visloc MvMF head (Linear K->N, softmax) with the deterministic weights from
detweights.py, and runs the official Combi-CAM algorithm in ONE forward and ONE
backward (the README's Numerics section).
Needs torch, efficientnet_pytorch==0.7.0, numpy.
"""

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from detweights import det_tensor, is_bn_param

_NP = {torch.float32: np.float32, torch.float64: np.float64}


def fill_deterministic(module: nn.Module, prefix: str = ""):
    """Overwrite every float tensor of module.state_dict() with the formula (key = prefix+name).

    Also checks that the name-based BatchNorm / Linear rules agree with the real module types.
    """
    mods = dict(module.named_modules())
    sd = module.state_dict()
    new = {}
    for name, t in sd.items():
        mod_name, _, leaf = name.rpartition(".")
        m = mods.get(mod_name)
        real_bn = isinstance(m, nn.modules.batchnorm._BatchNorm)
        if leaf in ("weight", "bias"):
            assert is_bn_param(prefix + name, t.dim()) == real_bn, (name, type(m))
            if t.dim() == 2:
                assert isinstance(m, nn.Linear), (name, type(m))
        if not t.is_floating_point():
            continue
        arr = det_tensor(prefix + name, tuple(t.shape), _NP[t.dtype])
        if arr is None:
            continue
        new[name] = torch.from_numpy(np.ascontiguousarray(arr))
    missing = set(k for k, t in sd.items() if t.is_floating_point()) - set(new)
    assert not missing, missing
    module.load_state_dict(new, strict=False)
    return module


class VislocHead(nn.Module):
    """Inference path of the visloc MVMFModule: key layout mixture_weights.seq_model.0.*, mvmf.mus/kappas."""

    def __init__(self, k: int, n: int):
        super().__init__()
        self.mixture_weights = nn.Module()
        self.mixture_weights.seq_model = nn.Sequential(nn.Linear(k, n))
        self.mvmf = nn.Module()
        self.mvmf.mus = nn.Parameter(torch.zeros(2, n, dtype=torch.float64), requires_grad=False)
        self.mvmf.kappas = nn.Parameter(torch.zeros(n, dtype=torch.float64), requires_grad=False)

    def forward(self, feats):
        return self.mixture_weights.seq_model(feats)  # logits


def build_visloc(variant: str, num_classes: int):
    """(backbone, head) for 'efficientnet-b0' / 'efficientnet-b4', deterministic weights, eval mode."""
    from efficientnet_pytorch import EfficientNet

    bb = EfficientNet.from_name(variant)
    # `_fc` is not part of the visloc weights: fill it too (unused) but with its own key.
    fill_deterministic(bb, "backbone.")
    k = bb._conv_head.out_channels
    head = VislocHead(k, num_classes)
    fill_deterministic(head, "mvmf_head.")
    bb.eval()
    head.eval()
    for p in list(bb.parameters()) + list(head.parameters()):
        p.requires_grad_(False)
    return bb, head


def _mark(marks):
    if marks is not None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # a mark times the work queued before it, on a GPU too
        marks.append(time.perf_counter())


def combicam(bb, head, x: torch.Tensor, keep_blocks=True, marks=None):
    """One forward + one backward of probs[c], c = argmax probs. x: (1,3,H,W) float32.

    If `marks` is a list, time.perf_counter() is appended to it after the forward, after the
    backward and after the maps (benches/pytorch_reference.py times the phases with it).

    Returns a dict of torch tensors (batch dim removed): stem, block.NN, grad.NN,
    gradcam.NN, features, logits, probs, combicam, and 'target' (int).
    """
    acts = []
    stem = []

    def fwd_hook(_m, _inp, out):
        out.retain_grad()
        acts.append(out)

    def pre_hook(_m, inp):
        stem.append(inp[0].detach().clone())

    hooks = [b.register_forward_hook(fwd_hook) for b in bb._blocks]
    hooks.append(bb._blocks[0].register_forward_pre_hook(pre_hook))
    try:
        x = x.detach().clone().requires_grad_(True)  # so that every activation requires grad
        with torch.enable_grad():
            fm = bb.extract_features(x)
            feats = F.adaptive_avg_pool2d(fm, 1).flatten(1)
            logits = head(feats)
            probs = torch.softmax(logits, dim=1)
            c = int(torch.argmax(probs[0]).item())
            _mark(marks)
            probs[0, c].backward()
            _mark(marks)
    finally:
        for h in hooks:
            h.remove()
    H, W = x.shape[2], x.shape[3]
    out = {"target": c, "stem": stem[0][0]}
    total = torch.zeros(H, W, dtype=x.dtype, device=x.device)
    for l, a in enumerate(acts):
        g = a.grad
        alpha = g[0].mean(dim=(1, 2))
        m = F.relu((alpha[:, None, None] * a[0].detach()).sum(0))
        up = F.interpolate(m[None, None], size=(H, W), mode="bilinear", align_corners=True)[0, 0]
        total = total + up
        out[f"gradcam.{l:02d}"] = m
        if keep_blocks:
            out[f"block.{l:02d}"] = a[0].detach()
            out[f"grad.{l:02d}"] = g[0].detach()
    lo, hi = total.min(), total.max()
    out["combicam"] = (total - lo) / (hi - lo) if hi > lo else torch.zeros_like(total)
    _mark(marks)
    out["features"] = feats[0].detach()
    out["logits"] = logits[0].detach()
    out["probs"] = probs[0].detach()
    out["nblocks"] = len(acts)
    return out


def to_double(bb, head):
    """float64 copies (for measuring how far the float32 reference is from exact)."""
    import copy

    return copy.deepcopy(bb).double(), copy.deepcopy(head).double()
