"""What the pytorch-grad-cam goldens on the trained Lite0 share (make_eigen.py, make_finer.py,
make_road.py): tests/photos/coffee.png preprocessed as the built-in Lite0 says (bicubic resize
of the short side to 224, mean = std = 0.5), the network built for that size (TF "SAME" at the
actual size), its top class; and the golden file's writing."""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from make_golden_families import LITE_PTH, lite0  # noqa: E402


def coffee():
    """(x (1, 3, H, W), net, probs (1000), top class)."""
    photo = Image.open(os.path.join(ROOT, "tests", "photos", "coffee.png")).convert("RGB")
    pre = T.Compose([
        T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
        T.ToTensor(),
        T.Normalize([0.5] * 3, [0.5] * 3),
    ])
    x = pre(photo)[None]
    net = lite0(LITE_PTH, tuple(x.shape[-2:])).eval()
    with torch.no_grad():
        probs = torch.softmax(net(x), dim=1)[0].numpy()
    return x, net, probs, int(probs.argmax())


def scale_cam_image(cam, target_size=None):
    """pytorch-grad-cam's `scale_cam_image` (each map min-max normalised, then resized), but
    for the resize: bilinear, align_corners=True (ours, the fusion's), where theirs is
    OpenCV's half-pixel one. The goldens that resize put it in its place."""
    out = []
    for img in cam:
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        if target_size is not None:
            t = torch.from_numpy(np.float32(img))[None, None]
            w, h = target_size
            img = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=True)[0, 0].numpy()
        out.append(img)
    return np.float32(out)


def save(out, name, x, c):
    """tests/golden/<name> with the metadata the Rust tests read: target, height, width."""
    h, w = x.shape[-2:]
    path = os.path.join(HERE, name)
    meta = {"target": str(c), "height": str(h), "width": str(w), "grad_cam": "1.5.7"}
    save_file(out, path, metadata=meta)
    print(f"wrote {path} (target {c}, {h}x{w})")


def layer_map(cam, x, target, **call):
    """A pytorch-grad-cam CAM object's own call on x (its forward, backward and whatever else it
    computes; `call`: its keywords, e.g. eigen_smooth): the per-layer map its get_cam_image
    returned (one target layer) before the resize, then its ReLU."""
    captured = []
    get = cam.get_cam_image

    def recorded(*args, **kwargs):
        m = get(*args, **kwargs)
        captured.append(np.array(m))
        return m

    cam.get_cam_image = recorded
    with torch.enable_grad():
        cam(x.clone().requires_grad_(True), targets=[target], **call)
    assert len(captured) == 1
    return np.maximum(captured[0], 0)[0].astype(np.float32)
