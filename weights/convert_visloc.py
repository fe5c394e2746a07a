"""Converts the published visloc PyTorch weights into one safetensors file for combicam-gpu.

Inputs are the state dicts released with mever-team/visloc-estimation:
  efficientnet_backbone.pt  (efficientnet_pytorch 0.7.0 EfficientNet-B4, keys `_conv_stem.weight`, ...)
  mvmf_head.pt              (keys `mixture_weights.seq_model.0.weight`, `mvmf.mus`, `mvmf.kappas`, ...)
  rrm_head.pt               (optional retrieval head: `norm.*`, `res.fc1.*`, `res.fc2.*`, `res.norm.*`)
Output: ONE safetensors file whose keys are the original keys prefixed with
`backbone.`, `mvmf_head.` and `rrm_head.` (otherwise unchanged; dtypes kept;
tensors made contiguous). A file may also be a full checkpoint whose state dict
sits under 'state_dict', 'model', 'model_state_dict', ...; a leading `module.`
(DataParallel) is stripped.

Requires: pip install torch safetensors
Usage:    python weights/convert_visloc.py --backbone efficientnet_backbone.pt \
              --head mvmf_head.pt [--rrm rrm_head.pt] --out weights/visloc_b4.safetensors
"""

import argparse
import os
import sys

CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_obj(path, allow_pickle):
    import torch

    if not os.path.isfile(path):
        fail(f"no such file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001
        if not allow_pickle:
            fail(
                f"could not load {path} with torch.load(weights_only=True): {e}\n"
                "If you trust this file, re-run with --allow-pickle (full unpickling)."
            )
        fail(f"could not load {path}: {e}")


def extract_state_dict(obj, path):
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    for _ in range(3):  # nested containers, e.g. {'model': {'state_dict': ...}}
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if isinstance(obj, dict):
            for k in CONTAINER_KEYS:
                if k in obj:
                    obj = obj[k]
                    if isinstance(obj, torch.nn.Module):
                        obj = obj.state_dict()
                    break
            else:
                break
    if not isinstance(obj, dict):
        fail(f"{path}: expected a state dict (or a checkpoint holding one), got {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        fail(f"{path}: no tensors found (top-level keys: {list(obj)[:10]})")
    skipped = [k for k in obj if k not in tensors]
    if skipped:
        print(f"  {path}: ignoring {len(skipped)} non-tensor entries: {skipped[:5]}")
    out = {}
    for k, v in tensors.items():
        k2 = k[len("module."):] if k.startswith("module.") else k
        out[k2] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Merge the visloc backbone / MvMF head / RRM head .pt state dicts into one safetensors file.",
        epilog="Needs: pip install torch safetensors",
    )
    ap.add_argument("--backbone", required=True, help="efficientnet_backbone.pt")
    ap.add_argument("--head", required=True, help="mvmf_head.pt")
    ap.add_argument("--rrm", help="rrm_head.pt (optional)")
    ap.add_argument("--out", required=True, help="output .safetensors path")
    ap.add_argument("--allow-pickle", action="store_true",
                    help="load with torch.load(weights_only=False); only for files you trust")
    args = ap.parse_args(argv)

    try:
        import torch  # noqa: F401
        from safetensors.torch import save_file
    except ImportError as e:
        fail(f"{e}. Install the converter's dependencies: pip install torch safetensors")

    merged = {}
    sources = [("backbone.", args.backbone), ("mvmf_head.", args.head)]
    if args.rrm:
        sources.append(("rrm_head.", args.rrm))
    for prefix, path in sources:
        sd = extract_state_dict(load_obj(path, args.allow_pickle), path)
        n = 0
        for k, v in sd.items():
            merged[prefix + k] = v.detach().cpu().contiguous().clone()
            n += v.numel()
        print(f"  {path}: {len(sd)} tensors, {n} values -> {prefix}*")

    expected = ["backbone._conv_stem.weight", "mvmf_head.mixture_weights.seq_model.0.weight", "mvmf_head.mvmf.mus"]
    missing = [k for k in expected if k not in merged]
    if missing:
        fail(
            f"expected keys missing after conversion: {missing}. Are --backbone/--head the right files? "
            f"Sample keys: {sorted(merged)[:8]}"
        )
    w = merged["mvmf_head.mixture_weights.seq_model.0.weight"]
    print(f"  head: {w.shape[0]} cells x {w.shape[1]} features; mus {tuple(merged['mvmf_head.mvmf.mus'].shape)} "
          f"{merged['mvmf_head.mvmf.mus'].dtype}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(merged, args.out, metadata={"format": "pt", "source": "mever-team/visloc-estimation",
                                           "converter": "convert_visloc.py"})
    print(f"wrote {args.out} ({len(merged)} tensors, {os.path.getsize(args.out) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
