"""Type stubs of combicam's native half (Rust, pyo3). Import from `combicam`, not from here."""

import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

PathLike = Union[str, os.PathLike]
Photo = Union[PathLike, npt.NDArray[np.uint8], Any]  # a path, (H, W, 3) uint8, or a PIL image
Blocks = Union[str, int, Sequence[int]]
Methods = Union[str, Sequence[str]]

__version__: str

def devices() -> list[dict[str, Any]]: ...
def _collect(folder: PathLike) -> list[str]: ...

class Entry:
    """One output of the model: a class (label) or a cell (lat, lon), with its probability.
    `str(entry)` is the label, or "cell N (lat, lon)"."""

    index: int
    probability: float
    label: Optional[str]
    lat: Optional[float]
    lon: Optional[float]

class Explanation:
    """One photo's explanation: every method's block maps and fused map, the prediction,
    and the command line's overlay and files."""

    @property
    def fused(self) -> npt.NDArray[np.float32]:
        """The first method's fused map, (H, W) in [0, 1] at the model's input size."""
    @property
    def fused_maps(self) -> dict[str, npt.NDArray[np.float32]]:
        """Every method's fused map by its raw-file name ("combicam", "layercam.fused")."""
    @property
    def maps(self) -> dict[str, dict[int, npt.NDArray[np.float32]]]:
        """Per method, per block: (h_l, w_l) after ReLU, unnormalised."""
    @property
    def probs(self) -> npt.NDArray[np.float32]: ...
    @property
    def logits(self) -> npt.NDArray[np.float32]: ...
    @property
    def prediction(self) -> list[Entry]:
        """The top outputs, best first."""
    @property
    def confidence_km(self) -> Optional[dict[int, float]]:
        """Geolocation: the probability mass within r km of the top cell, by r."""
    @property
    def target(self) -> Entry:
        """What was explained: the top output or the one `target` named."""
    @property
    def input_size(self) -> tuple[int, int]: ...
    @property
    def photo_size(self) -> tuple[int, int]: ...
    @property
    def report(self) -> dict[str, Any]:
        """The command line's JSON report."""
    def fused_at(
        self, size: Optional[tuple[int, int]] = None, name: Optional[str] = None
    ) -> npt.NDArray[np.float32]:
        """A fused map resized to `size` (default: the photo's), as --raw-size photo."""
    def overlay(
        self, alpha: float = 0.5, name: Optional[str] = None, size: int = 0
    ) -> npt.NDArray[np.uint8]:
        """The command line's overlay, (photo H, W, 3)."""
    def heatmap(self, name: Optional[str] = None, size: int = 0) -> npt.NDArray[np.uint8]:
        """The command line's heat map, (photo H, W, 3)."""
    def save(
        self,
        out: PathLike,
        raw: bool = False,
        report: bool = False,
        stem: Optional[str] = None,
        alpha: float = 0.5,
    ) -> list[str]:
        """Write the command line's files into the folder `out`; return their paths."""

class _Explainer:
    """Weights on a GPU device of the explainer's own, and the plans it has built."""

    weights_info: str
    notes: list[str]
    def __init__(
        self,
        weights: Union[None, PathLike, Sequence[PathLike]] = None,
        *,
        arch: Optional[str] = None,
        device: Optional[int] = None,
        test_weights: Optional[str] = None,
        cells: int = 31145,
    ) -> None: ...
    def explain(
        self,
        image: Photo,
        *,
        methods: Optional[Methods] = None,
        blocks: Optional[Blocks] = None,
        fusion: Optional[str] = None,
        target: Union[None, int, str] = None,
        target_latlon: Optional[str] = None,
        score: str = "prob",
        top_k: int = 5,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        comparison: int = 3,
        name: Optional[str] = None,
    ) -> Explanation: ...
    def explain_tensor(
        self,
        x: Any,
        *,
        methods: Optional[Methods] = None,
        blocks: Optional[Blocks] = None,
        fusion: Optional[str] = None,
        target: Union[None, int, str] = None,
        target_latlon: Optional[str] = None,
        score: str = "prob",
        top_k: int = 5,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        comparison: int = 3,
    ) -> Explanation: ...
    def predict(self, image: Photo, top_k: int = 5) -> list[Entry]: ...
    def evaluate(
        self,
        images: Union[PathLike, Sequence[PathLike]],
        explainers: Optional[Methods] = None,
        steps: int = 50,
        batch: Optional[int] = None,
        road_noise: Optional[float] = 0.01,
    ) -> dict[str, Any]: ...
    def preprocess(self, image: Photo) -> npt.NDArray[np.float32]: ...
    @staticmethod
    def load_photo(path: PathLike) -> npt.NDArray[np.uint8]: ...
    @property
    def model(self) -> dict[str, Any]: ...
    @property
    def adapter(self) -> str: ...
    @property
    def gpu_memory(self) -> int: ...
