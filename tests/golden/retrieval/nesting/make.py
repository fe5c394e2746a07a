"""Pickles of known container nesting, written by CPython's own pickle at every protocol, for
the nesting walk (src/model/pickle_depth.rs) that runs before serde-pickle.

Regenerate: cd tests/golden/retrieval/nesting && python3 make.py (CPython 3.11).
Each file is nest<depth>_p<protocol>.pkl; the depth counts containers (a scalar is 0).
"""
import pickle

shared = [1, 2]
values = {
    # dict -> set -> (nothing deeper): a cells table, depth 2
    2: {0: {1, 2, 3}, 7: {4}, 9: set()},
    # list -> tuple -> dict -> list -> frozenset -> tuple -> list (shared twice, memoised), depth 7
    7: [1, (2, {"a": [frozenset({(3, 4)}), ((shared, shared),)]}), "s", b"b", 1.5, None, True],
    # 40 nested lists
    40: None,
}
v = 0
for _ in range(40):
    v = [v]
values[40] = v

for depth, value in values.items():
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
        with open(f"nest{depth}_p{proto}.pkl", "wb") as f:
            pickle.dump(value, f, protocol=proto)
