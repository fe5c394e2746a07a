"""How far PyTorch's own float32 Lite0 moves each block's Grad-CAM map under one ulp of input
noise, on the two photos of lite0_photos.safetensors: the noise floor below which no float32
implementation can be held (tests/model.rs's COFFEE_KINK and chelsea's block 13). Where
rounding_spread.py looks at three blocks of the coffee under pytorch-grad-cam's probability
score, this walks every block of both photos under the goldens' own score (the logit), which
shows where the kink lies: the blocks before it move, those after it do not.

Prints, per photo, the worst max|diff| / peak of each block's map over six draws of
x · (1 + 2^-23 · N(0, 1)) against the unperturbed run. Needs what make_golden_families.py
needs (torch, efficientnet_lite_pytorch 0.1.0, safetensors).
Usage: python tests/golden/perturb_photos.py
"""

import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_golden_families as g  # noqa: E402

DRAWS = 6


def main():
    for p in g.PHOTOS:
        x, _, _ = g.preprocess(os.path.join(g.ROOT, "tests", "photos", f"{p}.png"))
        m = g.lite0(g.LITE_PTH, tuple(x.shape[-2:]))
        r = g.lite_run(m, x)
        nb = r["nblocks"]
        base = [r[f"gradcam.{l:02d}"].detach().double() for l in range(nb)]
        worst = np.zeros(nb)
        for seed in range(DRAWS):
            gen = torch.Generator().manual_seed(seed)
            rp = g.lite_run(m, x * (1 + 2**-23 * torch.randn(x.shape, generator=gen)))
            for l in range(nb):
                pk = base[l].abs().max().item()
                if pk > 0:
                    e = (rp[f"gradcam.{l:02d}"].detach().double() - base[l]).abs().max().item() / pk
                    worst[l] = max(worst[l], e)
        print(f"{p}: worst max|diff|/peak per block under one ulp of input noise ({DRAWS} draws)")
        print("  " + " ".join(f"{l}:{w:.1e}" for l, w in enumerate(worst)))


if __name__ == "__main__":
    main()
