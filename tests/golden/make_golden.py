"""Writes the golden reference files for the Rust tests (tests/golden/*.safetensors).

Models use the deterministic weights of detweights.py; inputs are u("input", i)
mapped to (-2, 2). Files written next to this script:
  b0_visloc.safetensors  efficientnet-b0 (efficientnet_pytorch 0.7.0) + visloc head, N=500, input 3x67x45
  b4_visloc.safetensors  efficientnet-b4 + visloc head, N=31145, input 3x63x95
  timm_b0.safetensors    timm efficientnet_b0 (ImageNet layout, BN eps 1e-5), input 3x57x61
Also rewrites detweights_check.txt. Usage: python tests/golden/make_golden.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

import detweights  # noqa: E402
from visloc_ref import build_visloc, combicam, fill_deterministic, to_double  # noqa: E402

torch.set_grad_enabled(False)


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def rel(a, b):
    a = a.detach().double()
    b = b.detach().double()
    d = (a - b).abs().max().item()
    s = b.abs().max().item()
    return d / s if s > 0 else d


def visloc_case(fname, variant, n, h, w, block_keys, grad_keys, extra_keys):
    print(f"== {fname}: {variant}, N={n}, input 3x{h}x{w}")
    bb, head = build_visloc(variant, n)
    x = torch.from_numpy(detweights.input_tensor((1, 3, h, w)))
    r = combicam(bb, head, x)
    nb = r["nblocks"]
    c = r["target"]
    print(f"   top cell {c}, top prob {r['probs'][c].item():.6g}, logits std {r['logits'].std().item():.4g}")
    print(f"   max|stem| {r['stem'].abs().max().item():.4g}")
    for l in range(nb):
        a = r[f"block.{l:02d}"]
        print(
            f"   block {l:2d} {tuple(a.shape)}: max|A| {a.abs().max().item():.4g}  "
            f"max|dA| {r[f'grad.{l:02d}'].abs().max().item():.3g}  max gradcam {r[f'gradcam.{l:02d}'].max().item():.3g}"
        )
    print(f"   max|features| {r['features'].abs().max().item():.4g}")
    # how exact is the float32 reference? (float64 run of the same model/input)
    bbd, headd = to_double(bb, head)
    rd = combicam(bbd, headd, x.double())
    assert rd["target"] == c, "float64 run picks another top cell"
    worst = max((rel(r[f"gradcam.{l:02d}"], rd[f"gradcam.{l:02d}"]), l) for l in range(nb))
    print(
        f"   f32 vs f64: probs {rel(r['probs'], rd['probs']):.2e}, logits {rel(r['logits'], rd['logits']):.2e}, "
        f"worst gradcam {worst[0]:.2e} (block {worst[1]}), combicam {rel(r['combicam'], rd['combicam']):.2e}"
    )
    t = {"input": f32(x[0])}
    for k in ["features", "logits", "probs", "combicam"] + extra_keys:
        t[k] = f32(r[k])
    for l in range(nb):
        t[f"gradcam.{l:02d}"] = f32(r[f"gradcam.{l:02d}"])
    for l in block_keys(nb):
        t[f"block.{l:02d}"] = f32(r[f"block.{l:02d}"])
    for l in grad_keys(nb):
        t[f"grad.{l:02d}"] = f32(r[f"grad.{l:02d}"])
    meta = {
        "model": f"{variant}+visloc_head",
        "height": str(h),
        "width": str(w),
        "num_classes": str(n),
        "target": str(c),
        "generator": "make_golden.py",
        "torch": torch.__version__,
        "efficientnet_pytorch": "0.7.0",
    }
    path = os.path.join(HERE, fname)
    save_file(t, path, metadata=meta)
    print(f"   wrote {path} ({os.path.getsize(path)} bytes, {len(t)} tensors)")


def timm_case():
    import timm

    h, w = 57, 61
    print(f"== timm_b0.safetensors: timm {timm.__version__} efficientnet_b0, input 3x{h}x{w}")
    m = timm.create_model("efficientnet_b0", pretrained=False)
    fill_deterministic(m, "")
    m.eval()
    bn_eps = {mod.eps for mod in m.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)}
    assert bn_eps == {1e-5}, bn_eps
    x = torch.from_numpy(detweights.input_tensor((1, 3, h, w)))
    logits = m(x)[0]
    probs = torch.softmax(logits, 0)
    c = int(probs.argmax())
    print(f"   top class {c}, top prob {probs[c].item():.6g}, logits std {logits.std().item():.4g}")
    md = m.double()
    ld = md(x.double())[0]
    print(f"   f32 vs f64: logits {rel(logits, ld):.2e}, probs {rel(probs, torch.softmax(ld, 0)):.2e}")
    t = {"input": f32(x[0]), "logits": f32(logits), "probs": f32(probs)}
    meta = {
        "model": "timm/efficientnet_b0",
        "height": str(h),
        "width": str(w),
        "num_classes": "1000",
        "target": str(c),
        "generator": "make_golden.py",
        "timm": timm.__version__,
        "torch": torch.__version__,
    }
    path = os.path.join(HERE, "timm_b0.safetensors")
    save_file(t, path, metadata=meta)
    print(f"   wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    torch.manual_seed(0)
    detweights._self_test()
    visloc_case(
        "b0_visloc.safetensors", "efficientnet-b0", 500, 67, 45,
        block_keys=lambda nb: range(nb), grad_keys=lambda nb: range(nb), extra_keys=["stem"],
    )
    visloc_case(
        "b4_visloc.safetensors", "efficientnet-b4", 31145, 63, 95,
        block_keys=lambda nb: [nb - 1], grad_keys=lambda nb: [nb - 1], extra_keys=[],
    )
    timm_case()
    total = sum(
        os.path.getsize(os.path.join(HERE, f))
        for f in ("b0_visloc.safetensors", "b4_visloc.safetensors", "timm_b0.safetensors")
    )
    print(f"total golden size {total} bytes")


if __name__ == "__main__":
    main()
