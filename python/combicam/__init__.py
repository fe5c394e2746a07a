"""combicam: why does an EfficientNet predict what it predicts?

Grad-CAM and its relatives at every block of an EfficientNet from one forward and one
backward pass, written as WGSL compute shaders (wgpu: Vulkan, Metal, DX12), fused into one
map: Combi-CAM (Faget, Lisani, Colom, VISAPP 2026). Numpy in, numpy out; no PyTorch needed.

    >>> import combicam
    >>> ex = combicam.Explainer()                 # the built-in ImageNet EfficientNet-Lite0
    >>> r = ex.explain("tests/photos/coffee.png")
    >>> print(r.prediction[0])                    # espresso
    >>> r.fused                                   # float32 (H, W) in [0, 1]
    >>> r.maps["gradcam"][15]                     # one block's map, unnormalised
    >>> img = r.overlay(alpha=0.5)                # uint8 (photo H, W, 3)
    >>> r.save("out/")                            # the command line's files

For geolocation, `combicam.Explainer(weights="visloc/")` with CERTH's
efficientnet_backbone.pt and mvmf_head.pt in that folder.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Optional

from . import _native
from ._errors import (
    Error,
    GpuError,
    ImageError,
    ImageNotFoundError,
    InputError,
    OutputError,
    WeightsError,
)
from ._native import Entry, Explanation

__version__ = _native.__version__

__all__ = [
    "Explainer",
    "Explanation",
    "Entry",
    "devices",
    "Error",
    "InputError",
    "ImageError",
    "ImageNotFoundError",
    "WeightsError",
    "GpuError",
    "OutputError",
]


def devices() -> list[dict]:
    """The GPU adapters `Explainer(device=N)` chooses from, best first: dicts with index,
    name, backend, device_type, driver and driver_info. Without a GPU on Linux, Mesa's
    software Vulkan (apt-get install mesa-vulkan-drivers) is one."""
    return _native.devices()


class Explainer(_native._Explainer):
    __doc__ = _native._Explainer.__doc__
    __slots__ = ()

    def explain_many(
        self,
        images: Iterable[Any],
        *,
        progress: bool = False,
        on_error: str = "raise",
        **options: Any,
    ) -> Iterator[Explanation]:
        """Explain many photos, one `Explanation` each, in order. `images`: paths (a folder
        stands for the images in it and its sub-folders, as on the command line), arrays or
        PIL images. The next photo is decoded while the GPU works on this one, and plans are
        reused between photos of one size. `progress`: a progress line on stderr.
        `on_error`: "raise" (default) or "skip" (a warning, and on to the next photo).
        Other keywords are `explain`'s."""
        if on_error not in ("raise", "skip"):
            raise InputError(f'on_error={on_error!r}: use "raise" or "skip"')
        items = _expand(images)
        total = len(items)
        with ThreadPoolExecutor(max_workers=1) as pool:
            nxt = pool.submit(_decode, items[0]) if items else None
            for i, item in enumerate(items):
                cur = nxt
                nxt = pool.submit(_decode, items[i + 1]) if i + 1 < total else None
                try:
                    photo, name = cur.result()
                    r = self.explain(photo, name=name, **options)
                except Error as e:
                    if on_error == "raise":
                        raise
                    import warnings

                    warnings.warn(str(e), stacklevel=2)
                    continue
                finally:
                    if progress:
                        sys.stderr.write(f"\r{i + 1}/{total} photos")
                        if i + 1 == total:
                            sys.stderr.write("\n")
                        sys.stderr.flush()
                yield r


def _expand(images: Iterable[Any]) -> list:
    """Folders replaced by their images (sorted, this tool's outputs passed over)."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    out: list = []
    for im in images:
        if isinstance(im, (str, os.PathLike)) and os.path.isdir(im):
            out.extend(_native._collect(os.fspath(im)))
        else:
            out.append(im)
    return out


def _decode(item: Any) -> tuple[Any, Optional[str]]:
    """A path decoded (on the prefetch thread, the GIL released), anything else as it is."""
    if isinstance(item, (str, os.PathLike)):
        return Explainer.load_photo(item), os.fspath(item)
    return item, None
