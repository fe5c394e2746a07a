"""Golden data for the visloc retrieval head and "search within cell" (issue 13).

Writes into tests/golden/retrieval/:

  rrm_b0.safetensors     the b0_visloc test network (efficientnet-b0 + visloc head, N = 500,
                         formula weights, the input of b0_visloc.safetensors) plus a retrieval
                         head with formula weights under `rrm_head.*` (dims 1280, hidden 4096):
                         `input`, `features` (pooled backbone features), `embedding` (the head's
                         output, float32), `query.exact` (a synthetic unit query, see below);
                         metadata `top_cell`, `confidence_25km`, ...
  background.hdf5        a background collection in the layout the official inference.py reads:
                         dataset `features` (n, D) float32 and `labels` (n, 2) float64 (lat, lon
                         in degrees), contiguous, h5py defaults
  cells_assignments.pkl  dict int cell -> set of int row indices, pickle protocol 4
  all_cells.pkl          every cell 0..499 -> the same 5 rows (for the CLI test)
  retrieval_cases.json   the cases and their expected results

The retrieval head (mever-team/visloc-estimation, src/modules.py, RetrievalModule + Residual):
    x = LayerNorm(f)                       (rrm_head.norm, eps 1e-5)
    y = fc2(ReLU(fc1(x))) + x              (rrm_head.res.fc1 (4096, D), rrm_head.res.fc2 (D, 4096))
    y = LayerNorm(y)                       (rrm_head.res.norm, eps 1e-5)
    e = y / max(||y||_2, 1e-12)

Search within cell (inference.py + src/utils.py spatial_clustering), reproduced below:
    idxs  = list(assignments[cell])        (the set's iteration order)
    sims  = q . features[idxs]             (float32)
    NNs   = argsort(-sims)[:k]
    DBSCAN(eps = 1 km, min_samples = 1, metric = haversine in km, R = 6371) on the (lat, lon) of
    the k candidates; the largest cluster (ties: the lowest DBSCAN label, i.e. the cluster of
    the best-ranked point); its mean unit vector (NOT renormalised) -> (asin z, atan2(y, x)).
    A cell with no background rows -> the cell centre (mvmf.mus of the cell).

Tie order: numpy's default argsort is not stable (SIMD sorts on AVX2/AVX-512 machines), so the
official tie order is machine dependent. `expected.neighbours` uses the stable order (ties by
position in idxs); every cell's set here iterates in ascending row order (checked), so that is
ascending row index, and equals the pickled order. Where numpy's default argsort on the machine
that ran this script differs, the case also has `numpy_default_neighbours`.

The synthetic query `query.exact` has 16 entries +-0.25 (unit norm exactly) and the rows of the
synthetic cells are exact multiples, so their similarities are exact in float32 in any
summation order (exact ties stay ties on any device).

Usage: python tests/golden/make_retrieval.py      (CPU, ~10 s; needs h5py, scikit-learn)
"""

import json
import math
import os
import pickle
import pickletools
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
OUT = os.path.join(HERE, "retrieval")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from sklearn.cluster import DBSCAN  # noqa: E402

import detweights  # noqa: E402
from visloc_ref import build_visloc, fill_deterministic  # noqa: E402

torch.set_grad_enabled(False)

N_CELLS = 500
D = 1280
HIDDEN = 4096
EPS_KM = 1.0
R_EARTH = 6371.0
KM_PER_DEG = R_EARTH * math.pi / 180.0


class RetrievalHead(nn.Module):
    """Same parameter names as the official RetrievalModule state dict (norm.*, res.norm.*, res.fc1.*, res.fc2.*)."""

    def __init__(self, dims, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(dims)
        self.res = nn.Module()
        self.res.norm = nn.LayerNorm(dims)
        self.res.fc1 = nn.Linear(dims, hidden)
        self.res.fc2 = nn.Linear(hidden, dims)

    def forward(self, f):
        x = self.norm(f)
        y = self.res.fc2(F.relu(self.res.fc1(x))) + x
        y = self.res.norm(y)
        return F.normalize(y, p=2.0, dim=-1)


# ---------------------------------------------------------------- official algorithm (re-stated)


def hav_km(p, q):
    """Great-circle distance in km between (lat, lon) rows in degrees, as src/utils.py haversine."""
    lat1, lon1, lat2, lon2 = np.radians(p[0]), np.radians(p[1]), np.radians(q[0]), np.radians(q[1])
    a = np.sin((lat2 - lat1) / 2.0) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2.0) ** 2
    return R_EARTH * (2 * np.arcsin(np.sqrt(a)))


def to_unit(lat, lon):
    la = lat / 180 * math.pi
    lo = lon / 180 * math.pi
    return [np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)]


def from_unit(x, y, z):
    return math.asin(z) / math.pi * 180, math.atan2(y, x) / math.pi * 180


def official_search(q, feats_t, labels, assignments, cell, k, centre, kind=None):
    """The search as inference.py runs it. feats_t: (D, n) float32 (the file's `features`.T)."""
    if cell not in assignments:
        return {"method": "cell_centre", "lat": float(centre[0]), "lon": float(centre[1]),
                "neighbours": [], "cluster": [], "sims": []}
    idxs = np.array(list(assignments[cell]))
    sims = np.dot(q[None, :], feats_t[:, idxs])[0]
    nns = np.argsort(-sims, kind=kind)[:k]
    sims = sims[nns]
    cand = labels[idxs[nns]]
    lab = DBSCAN(eps=EPS_KM, min_samples=1, metric=hav_km).fit(cand).labels_
    groups = sorted([np.nonzero(lab == c)[0] for c in np.unique(lab)], key=len, reverse=True)
    best = groups[0]
    vec = np.sum([np.array(to_unit(*cand[i])) for i in best], axis=0) / np.sum(sims[best] ** 0)
    lat, lon = from_unit(*vec)
    return {"method": "cluster", "lat": lat, "lon": lon,
            "neighbours": [int(i) for i in idxs[nns]], "cluster": [int(idxs[nns][i]) for i in best],
            "sims": [float(s) for s in sims], "dbscan_labels": [int(v) for v in lab]}


def independent_search(q, feats_t, labels, assignments, cell, k, centre):
    """A second implementation (stable sort, union-find) to cross-check the sklearn path."""
    if cell not in assignments:
        return (float(centre[0]), float(centre[1])), []
    idxs = list(assignments[cell])
    sims = [float(np.dot(q, feats_t[:, i])) for i in idxs]
    order = sorted(range(len(idxs)), key=lambda j: -sims[j])[:k]
    pts = [labels[idxs[j]] for j in order]
    parent = list(range(len(pts)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(pts)):
        for j in range(i + 1, len(pts)):
            if hav_km(pts[i], pts[j]) <= EPS_KM:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    comps = {}
    for i in range(len(pts)):
        comps.setdefault(root(i), []).append(i)
    best = max(sorted(comps.values(), key=lambda c: c[0]), key=len)  # first max = lowest first rank
    v = np.zeros(3)
    for i in best:
        v += np.array(to_unit(*pts[i]))
    v /= len(best)
    return from_unit(*v), [idxs[order[i]] for i in best]


def min_eps_margin(points):
    """min over pairs of |d - eps| (km): how far every pair is from the DBSCAN boundary."""
    m = math.inf
    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            m = min(m, abs(hav_km(points[i], points[j]) - EPS_KM))
    return m


def ascending_set(idx):
    s = pickle.loads(pickle.dumps(set(idx), protocol=4))
    return list(s) == sorted(s)


def offset(base, east_km, north_km):
    lat = base[0] + north_km / KM_PER_DEG
    lon = base[1] + east_km / (KM_PER_DEG * math.cos(math.radians(lat)))
    lon = (lon + 180.0) % 360.0 - 180.0
    return (lat, lon)


# ---------------------------------------------------------------- model part


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def model_part():
    bb, head = build_visloc("efficientnet-b0", N_CELLS)
    rrm = fill_deterministic(RetrievalHead(D, HIDDEN), "rrm_head.").eval()
    x = torch.from_numpy(detweights.input_tensor((1, 3, 67, 45)))
    feats = F.adaptive_avg_pool2d(bb.extract_features(x), 1).flatten(1)
    probs = torch.softmax(head(feats), dim=1)[0]
    emb = rrm(feats)[0]
    top = int(torch.argmax(probs))

    ref = load_file(os.path.join(HERE, "b0_visloc.safetensors"))
    assert np.array_equal(ref["input"], f32(x[0]))
    print(f"   features vs b0_visloc.safetensors: max |diff| {np.abs(ref['features'] - f32(feats[0])).max():.2e}")
    assert int(np.argmax(ref["probs"])) == top

    import copy

    bbd, headd, rrmd = copy.deepcopy(bb).double(), copy.deepcopy(head).double(), copy.deepcopy(rrm).double()
    featsd = F.adaptive_avg_pool2d(bbd.extract_features(x.double()), 1).flatten(1)
    embd = rrmd(featsd)[0]
    emb_f64_same_feats = rrmd(feats.double())[0]
    print(f"   embedding: norm {emb.norm().item():.7f}, max|e| {emb.abs().max().item():.4g}; "
          f"float32 vs float64 model: max |diff| {(emb.double() - embd).abs().max().item():.2e} "
          f"(head alone on the same float32 features: {(emb.double() - emb_f64_same_feats).abs().max().item():.2e})")
    sd = rrm.state_dict()
    for k in ("norm.weight", "res.norm.weight"):
        w = sd[k]
        print(f"   rrm_head.{k}: range [{w.min().item():.4f}, {w.max().item():.4f}], "
              f"{int((w < 0).sum())} of {w.numel()} negative (formula rule 10: (-0.1, 0.1))")

    # the official "Confidence" (prediction_density at 25 km): mass of the cells whose centre is
    # within 25 km of the top cell's centre (float32 probs, float64 centres)
    mus = head.mvmf.mus.detach().numpy()  # (2, N) float64
    coords = mus.T
    dist = hav_km(coords[top], coords.T)
    p = f32(probs)
    conf = {s: float(p[dist <= s].sum()) for s in (1, 25, 200, 750, 2500)}
    return {
        "x": x, "feats": f32(feats[0]), "emb": f32(emb), "probs": p, "top": top,
        "mus": mus, "conf": conf,
    }


# ---------------------------------------------------------------- background design

Q_DIMS_SEED = 13


def exact_query():
    """16 entries of +-0.25 (unit norm exactly), zeros elsewhere."""
    rng = np.random.default_rng(Q_DIMS_SEED)
    dims = np.sort(rng.choice(D, 16, replace=False))
    signs = np.where(rng.random(16) < 0.5, -1.0, 1.0)
    q = np.zeros(D, np.float32)
    q[dims] = 0.25 * signs
    return q, dims, signs


def exact_row(rng, dims, signs, s):
    """A row with q.row == s exactly: s/4 (signed) on the query dims, multiples of 2^-10 elsewhere."""
    r = np.round(rng.normal(0.0, 0.025, D) * 1024.0) / 1024.0
    r[dims] = signs * (s / 4.0)
    return r.astype(np.float32)


def model_row(rng, e, c):
    """c*e + sqrt(1-c^2)*u, u a unit vector orthogonal to e (so e.row ~= c)."""
    e = e.astype(np.float64)
    g = rng.normal(size=D)
    g -= g.dot(e) * e
    g /= np.linalg.norm(g)
    return (c * e + math.sqrt(1 - c * c) * g).astype(np.float32)


def design(m):
    """Rows (feature, (lat, lon), cell or None) and the cases."""
    rng = np.random.default_rng(2024)
    q, dims, signs = exact_query()
    e = m["emb"]
    top = m["top"]
    mus = m["mus"]
    spare = [c for c in (7, 19, 23, 42, 57, 64, 88, 123, 250, 333) if c != top]
    c_ties, c_equal, c_anti, c_pole, c_single, c_empty, c_simd = spare[:7]
    base = (float(mus[0, top]), float(mus[1, top]))

    cells = {}  # cell -> list of (feature, latlon, tag)

    # (1) the model's top cell: 16 rows, similarity rank r has c = 0.96 - 0.03 r
    #     km offsets from the cell centre; ranks 1..10 then 11..16
    layout = [
        ("B1", (-3.0, 2.0)),    # rank 1: cluster B (size 3)
        ("A1", (5.0, 5.0)),     # rank 2: cluster A, a chain of 4 (0.8 km steps, 2.4 km end to end)
        ("B2", (-3.5, 2.3)),
        ("A2", (5.8, 5.0)),
        ("near_miss", (8.6, 5.0)),  # 1.2 km from A4: not in A
        ("B3", (-3.2, 1.6)),
        ("A3", (6.6, 5.0)),
        ("far1", (20.0, -10.0)),
        ("A4", (7.4, 5.0)),
        ("far2", (-15.0, -12.0)),  # rank 10
        ("C1", (0.0, -8.0)),    # ranks 11..15: cluster C (size 5), wins when k >= 15
        ("C2", (0.3, -8.0)),
        ("C3", (0.6, -8.2)),
        ("C4", (0.2, -7.7)),
        ("C5", (0.5, -7.9)),
        ("far3", (30.0, 25.0)),  # rank 16
    ]
    rows_top = []
    for r, (tag, (ex, ny)) in enumerate(layout):
        rows_top.append((model_row(rng, e, 0.96 - 0.03 * r), offset(base, ex, ny), tag))
    perm = rng.permutation(len(rows_top))  # row order in the file != rank order
    cells[top] = [rows_top[i] for i in perm]

    # (2) ties straddling the top-k boundary (k = 4): one row at 0.75, four identical rows at 0.5
    #     (t1 < t2 < t3 < t4 in row order), two at 0.25
    p0 = (48.8566, 2.3522)
    tied = exact_row(rng, dims, signs, 0.5)
    cells[c_ties] = [
        (tied, offset(p0, 0.5, 0.0), "t1"),          # near the top row
        (tied.copy(), offset(p0, 30.0, 0.0), "t2"),  # far
        (exact_row(rng, dims, signs, 0.75), p0, "top"),
        (tied.copy(), offset(p0, 0.0, 60.0), "t3"),  # far
        (tied.copy(), offset(p0, 0.2, 0.3), "t4"),   # near the top row and t1
        (exact_row(rng, dims, signs, 0.25), offset(p0, -0.3, 0.0), "low1"),
        (exact_row(rng, dims, signs, 0.25), offset(p0, -0.3, 0.4), "low2"),
    ]

    # (3) two clusters of equal size: ranks Z(0.875) Y(0.75) X(0.6875) X(0.625) Y(0.5);
    #     X has the larger total similarity, Y the lower DBSCAN label -> Y
    p1 = (-33.8688, 151.2093)
    cells[c_equal] = [
        (exact_row(rng, dims, signs, 0.625), offset(p1, 10.0, 0.4), "X2"),
        (exact_row(rng, dims, signs, 0.75), offset(p1, -10.0, 0.0), "Y1"),
        (exact_row(rng, dims, signs, 0.5), offset(p1, -10.3, 0.5), "Y2"),
        (exact_row(rng, dims, signs, 0.875), p1, "Z"),
        (exact_row(rng, dims, signs, 0.6875), offset(p1, 10.0, 0.0), "X1"),
    ]

    # (6a) antimeridian: three points within 1 km across lon +-180 and one far point
    cells[c_anti] = [
        (exact_row(rng, dims, signs, 0.5), (-16.5, 179.996), "m1"),
        (exact_row(rng, dims, signs, 0.875), (-16.5, -179.997), "m2"),
        (exact_row(rng, dims, signs, 0.25), (-16.5, 178.0), "far"),
        (exact_row(rng, dims, signs, 0.75), (-16.5, 179.999), "m3"),
    ]

    # (6b) north pole: three points at lat 89.995 (0.56 km from the pole) at lon 10, 40, 70;
    #      the un-normalised mean gives lat 89.995, the normalised direction would give 89.99545
    cells[c_pole] = [
        (exact_row(rng, dims, signs, 0.625), (89.995, 10.0), "p1"),
        (exact_row(rng, dims, signs, 0.75), (89.995, 40.0), "p2"),
        (exact_row(rng, dims, signs, 0.875), (89.9, -100.0), "far"),
        (exact_row(rng, dims, signs, 0.5), (89.995, 70.0), "p3"),
    ]

    # (2b) ties that numpy's SIMD argsort (AVX2 / AVX-512, numpy >= 1.26) orders in reverse:
    #      np.argsort(-[0.25, 0.25, 0.5, 0.5]) gives [3, 2, 1, 0] there, the stable order [2, 3, 0, 1]
    p2 = (-22.9068, -43.1729)
    t_lo, t_hi = exact_row(rng, dims, signs, 0.25), exact_row(rng, dims, signs, 0.5)
    cells[c_simd] = [
        (t_lo, offset(p2, 0.0, 5.0), "lo1"),
        (t_lo.copy(), offset(p2, 0.0, -5.0), "lo2"),
        (t_hi, p2, "hi1"),
        (t_hi.copy(), offset(p2, 5.0, 0.0), "hi2"),
    ]

    # (5b) a cell with a single row
    cells[c_single] = [(exact_row(rng, dims, signs, 0.5), (35.6762, 139.6503), "only")]

    # rows in no cell: decoys very similar to the model embedding (a global search would pick them)
    decoys = [(model_row(rng, e, 0.99), (0.0, 0.0), "decoy1"), (model_row(rng, e, 0.985), (-45.0, -60.0), "decoy2")]

    # the CLI set: 5 rows, a cluster of 3 near Athens and two far points (order-independent result)
    pa = (37.9715, 23.7257)
    cli_rows = [
        (model_row(rng, e, 0.5), offset(pa, 0.0, 0.0), "a1"),
        (model_row(rng, e, 0.4), (40.6401, 22.9444), "far1"),
        (model_row(rng, e, 0.3), offset(pa, 0.6, 0.2), "a2"),
        (model_row(rng, e, 0.2), (35.3387, 25.1442), "far2"),
        (model_row(rng, e, 0.1), offset(pa, 0.3, -0.5), "a3"),
    ]

    # lay the rows out: cell blocks in this order, decoys in between
    order = [(top, cells[top]), (None, decoys[:1]), (c_ties, cells[c_ties]), (c_equal, cells[c_equal]),
             (None, decoys[1:]), (c_anti, cells[c_anti]), (c_pole, cells[c_pole]),
             (c_single, cells[c_single]), (c_simd, cells[c_simd]), ("cli", cli_rows)]
    feats, labels, tags = [], [], []
    assign, cli_idx = {}, []
    for cell, rows in order:
        # a cell's set must iterate in ascending row order after unpickling (CPython's set table
        # is indexed by the int's low bits): pad with unassigned filler rows until it does
        while cell is not None and not ascending_set(range(len(feats), len(feats) + len(rows))):
            feats.append(model_row(rng, e, 0.0))
            labels.append((-80.0, 10.0 * len(feats) - 180.0))
            tags.append("None:filler")
        for fe, ll, tag in rows:
            i = len(feats)
            feats.append(fe)
            labels.append(ll)
            tags.append(f"{cell}:{tag}")
            if cell == "cli":
                cli_idx.append(i)
            elif cell is not None:
                assign.setdefault(cell, set()).add(i)
    feats = np.stack(feats).astype(np.float32)
    labels = np.array(labels, dtype=np.float64)
    for cell, rows in cells.items():
        pts = [labels[i] for i in sorted(assign[cell])]
        margin = min_eps_margin(pts)
        assert margin > 0.05, (cell, margin)

    all_cells = {c: set(cli_idx) for c in range(N_CELLS)}  # distinct set objects: no memo sharing

    cases = [
        dict(name="model_top_cell_k10", query="model", cell=top, k=10, assignments="cells_assignments.pkl",
             note="the model's embedding and top cell; chain cluster A (4) beats B (3, holds rank 1); "
                  "near_miss is 1.2 km from A; ranks 11-16 (cluster C of 5) are cut by k"),
        dict(name="stored_embedding_k16", query="embedding", cell=top, k=16, assignments="cells_assignments.pkl",
             note="k = cell size: cluster C (5) wins"),
        dict(name="model_top_cell_k50", query="model", cell=top, k=50, assignments="cells_assignments.pkl",
             note="k larger than the cell (16 rows): all rows, same as k = 16"),
        dict(name="ties_at_k_boundary", query="query.exact", cell=c_ties, k=4, assignments="cells_assignments.pkl",
             note="4 identical rows (sim 0.5) for ranks 2-5, k = 4: the stable order keeps t1, t2, t3 "
                  "(row order); cluster {top, t1}"),
        dict(name="ties_all", query="query.exact", cell=c_ties, k=7, assignments="cells_assignments.pkl",
             note="same cell, every row: cluster {top, t1, t4, low1, low2}"),
        dict(name="ties_simd_reversed", query="query.exact", cell=c_simd, k=3, assignments="cells_assignments.pkl",
             note="two tied pairs, all rows > 1 km apart: stable order [hi1, hi2, lo1] -> hi1; numpy's default "
                  "argsort on AVX2/AVX-512 machines gives [hi2, hi1, lo2] -> hi2 (machine dependent, see "
                  "numpy_default_* when present)"),
        dict(name="equal_size_clusters", query="query.exact", cell=c_equal, k=5, assignments="cells_assignments.pkl",
             note="Y and X both of size 2: Y (first seen at rank 2) wins although X's similarities sum higher"),
        dict(name="antimeridian", query="query.exact", cell=c_anti, k=10, assignments="cells_assignments.pkl",
             note="cluster across lon +-180 (mean lon ~ +179.998); k > cell size"),
        dict(name="north_pole", query="query.exact", cell=c_pole, k=10, assignments="cells_assignments.pkl",
             note="mean unit vector NOT renormalised: lat = asin(mean z) = 89.995 (normalised: ~89.99545)"),
        dict(name="single_row_cell", query="query.exact", cell=c_single, k=10, assignments="cells_assignments.pkl",
             note="one row, k = 10"),
        dict(name="empty_cell", query="model", cell=c_empty, k=10, assignments="cells_assignments.pkl",
             note="cell not in the assignments: the cell centre (mvmf.mus[:, cell]) of the model's table"),
        dict(name="cli_all_cells", query="model", cell=top, k=10, assignments="all_cells.pkl",
             note="every cell -> the same 5 rows; the result does not depend on the cell or the ranking",
             any_cell=True),
    ]
    return dict(q=q, feats=feats, labels=labels, tags=tags, assign=assign, all_cells=all_cells, cases=cases)


# ---------------------------------------------------------------- files


ALLOWED_OPS = {"PROTO", "FRAME", "EMPTY_DICT", "EMPTY_SET", "MEMOIZE", "MARK", "ADDITEMS", "SETITEMS",
               "SETITEM", "BININT", "BININT1", "BININT2", "STOP"}


def write_pickle(obj, name):
    path = os.path.join(OUT, name)
    data = pickle.dumps(obj, protocol=4)
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
    with open(path, "wb") as f:
        f.write(data)
    back = pickle.loads(data)
    assert back == obj
    for cell, s in back.items():
        # iteration order after loading == ascending == pickled order (so every plausible reading agrees)
        assert list(s) == sorted(s), (name, cell, list(s))
    print(f"   wrote {path} ({len(data)} bytes; opcodes {sorted(ops)})")
    return back


def write_hdf5(feats, labels):
    path = os.path.join(OUT, "background.hdf5")
    if os.path.exists(path):
        os.remove(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=feats)  # (n, D) float32: the official code reads [:, :].T
        f.create_dataset("labels", data=labels)   # (n, 2) float64, (lat, lon) degrees
    with h5py.File(path, "r", driver=None) as f:
        fe = f["features"][:, :].T.astype(np.float32)
        la = f["labels"][:, :]
        info = []
        for k in ("features", "labels"):
            ds = f[k]
            layout = ds.id.get_create_plist().get_layout()
            info.append(f"{k} {ds.shape} {ds.dtype.str} layout={'contiguous' if layout == h5py.h5d.CONTIGUOUS else layout} "
                        f"chunks={ds.chunks} compression={ds.compression} data offset {ds.id.get_offset()}")
    with open(path, "rb") as fh:
        head = fh.read(16)
    assert head[:8] == b"\x89HDF\r\n\x1a\n"
    print(f"   wrote {path} ({os.path.getsize(path)} bytes; superblock version {head[8]}; h5py {h5py.__version__}, "
          f"HDF5 {h5py.version.hdf5_version})")
    for s in info:
        print("     " + s)
    assert np.array_equal(fe, feats.T) and np.array_equal(la, labels)
    return fe, la


def write_hdf5_f16():
    """background_f16_gzip.hdf5: the first 8 rows of background.hdf5 stored as a published
    collection might be: features float16 and labels float32, both chunked and gzip-compressed
    (the reader must convert and decompress; the test compares with the float32 file's rows
    rounded the same way)."""
    src = os.path.join(OUT, "background.hdf5")
    path = os.path.join(OUT, "background_f16_gzip.hdf5")
    with h5py.File(src, "r") as f:
        feats = f["features"][:8, :].astype(np.float16)
        labels = f["labels"][:8, :].astype(np.float32)
    if os.path.exists(path):
        os.remove(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=feats, chunks=(2, feats.shape[1]), compression="gzip", compression_opts=4)
        f.create_dataset("labels", data=labels, chunks=(4, 2), compression="gzip")
    print(f"   wrote {path} ({os.path.getsize(path)} bytes; float16 features, float32 labels, chunked, gzip)")


def write_bad_hdf5():
    """Three small files the reader must refuse in one line: no `labels`, `labels` (n, 3), and
    integer `features`."""
    bad = {
        "no_labels.hdf5": {"features": np.zeros((4, 8), np.float32)},
        "bad_labels.hdf5": {"features": np.zeros((4, 8), np.float32), "labels": np.zeros((4, 3))},
        "int_features.hdf5": {"features": np.zeros((4, 8), np.int32), "labels": np.zeros((4, 2))},
    }
    for name, sets in bad.items():
        path = os.path.join(OUT, name)
        if os.path.exists(path):
            os.remove(path)
        with h5py.File(path, "w") as f:
            for k, v in sets.items():
                f.create_dataset(k, data=v)
        print(f"   wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    if sys.argv[1:] == ["--only-f16"]:
        write_hdf5_f16()
        write_bad_hdf5()
        return
    os.makedirs(OUT, exist_ok=True)
    print("== model: efficientnet-b0 + visloc head (N = 500) + retrieval head (1280 -> 4096 -> 1280)")
    m = model_part()
    print(f"   top cell {m['top']}, p = {m['probs'][m['top']]:.6g}; confidence at 25 km {m['conf'][25]:.6g} "
          f"-> \"Confidence: {m['conf'][25] * 100:.1f}%\"")
    d = design(m)
    q = d["q"]
    assert float(np.dot(q.astype(np.float64), q.astype(np.float64))) == 1.0

    st = {"input": f32(m["x"][0]), "features": m["feats"], "embedding": m["emb"], "query.exact": q}
    meta = {
        "model": "efficientnet-b0+visloc_head+rrm_head", "height": "67", "width": "45",
        "num_classes": str(N_CELLS), "top_cell": str(m["top"]), "rrm_dims": str(D), "rrm_hidden": str(HIDDEN),
        "confidence_25km": repr(m["conf"][25]), "generator": "make_retrieval.py", "torch": torch.__version__,
        "efficientnet_pytorch": "0.7.0",
    }
    path = os.path.join(OUT, "rrm_b0.safetensors")
    save_file(st, path, metadata=meta)
    print(f"   wrote {path} ({os.path.getsize(path)} bytes)")

    feats_t, labels = write_hdf5(d["feats"], d["labels"])
    write_hdf5_f16()
    write_bad_hdf5()
    assign = write_pickle(d["assign"], "cells_assignments.pkl")
    allc = write_pickle(d["all_cells"], "all_cells.pkl")
    files = {"cells_assignments.pkl": assign, "all_cells.pkl": allc}
    queries = {"model": m["emb"], "embedding": m["emb"], "query.exact": q}

    out_cases = []
    print("== cases (eps 1 km; expected = stable top-k order)")
    for c in d["cases"]:
        a = files[c["assignments"]]
        qv = queries[c["query"]]
        centre = m["mus"][:, c["cell"]]
        r = official_search(qv, feats_t, labels, a, c["cell"], c["k"], centre, kind="stable")
        r_np = official_search(qv, feats_t, labels, a, c["cell"], c["k"], centre)
        (ilat, ilon), icl = independent_search(qv, feats_t, labels, a, c["cell"], c["k"], centre)
        assert abs(ilat - r["lat"]) < 1e-9 and abs(ilon - r["lon"]) < 1e-9, (c["name"], r, ilat, ilon)
        assert icl == r["cluster"], (c["name"], icl, r["cluster"])
        case = dict(c)
        exp = {"lat": r["lat"], "lon": r["lon"], "method": r["method"], "neighbours": r["neighbours"],
               "cluster": r["cluster"], "sims": r["sims"]}
        if r["method"] == "cell_centre":
            exp["lat"] = exp["lon"] = None
            exp["centre_of_cell"] = c["cell"]
        else:
            exp["dbscan_labels"] = r["dbscan_labels"]
            exp["printed"] = "Prediction (Lat,Lon): ({:.4f}, {:.4f})".format(r["lat"], r["lon"])
            # ranking robustness: exact ties, or gaps far above float32 rounding
            s = np.array(r["sims"], np.float64)
            gaps = [x - y for x, y in zip(s[:-1], s[1:]) if x != y]
            assert not gaps or min(gaps) > 1e-3, (c["name"], gaps)
        if r_np["neighbours"] != r["neighbours"]:
            exp["numpy_default_neighbours"] = r_np["neighbours"]
            exp["numpy_default_result"] = {"lat": r_np["lat"], "lon": r_np["lon"], "cluster": r_np["cluster"]}
        case["expected"] = exp
        out_cases.append(case)
        where = "centre of cell %d" % c["cell"] if r["method"] == "cell_centre" else "(%.6f, %.6f)" % (r["lat"], r["lon"])
        tags = [d["tags"][i].split(":")[1] for i in r["cluster"]]
        extra = "" if "numpy_default_neighbours" not in exp else \
            f"  [numpy default argsort here: {exp['numpy_default_neighbours']} -> ({r_np['lat']:.6f}, {r_np['lon']:.6f})]"
        print(f"   {c['name']:22s} cell {c['cell']:3d} k {c['k']:2d}: {r['method']:11s} {where} "
              f"neighbours {r['neighbours']} cluster {r['cluster']} {tags}{extra}")

    doc = {
        "description": "search-within-cell golden cases (make_retrieval.py); see tests/golden/README.md",
        "eps_km": EPS_KM, "earth_radius_km": R_EARTH, "num_cells": N_CELLS, "dims": D,
        "top_cell": m["top"], "confidence_25km": m["conf"][25],
        "background": "background.hdf5", "model": "rrm_b0.safetensors",
        "row_tags": d["tags"],
        "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__, "h5py": h5py.__version__,
                     "torch": torch.__version__},
        "cases": out_cases,
    }
    path = os.path.join(OUT, "retrieval_cases.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"   wrote {path} ({os.path.getsize(path)} bytes)")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"total {total} bytes in {OUT}; background n = {d['feats'].shape[0]}, D = {D}")


if __name__ == "__main__":
    main()
