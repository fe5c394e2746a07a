"""Threads: one explainer shared by several threads gives what sequential calls give; two
explainers in two threads both work."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from conftest import COFFEE, PHOTOS, assert_same_explanation, shipped_photos


def _jobs():
    photos = shipped_photos()
    assert len(photos) >= 2
    # four calls, two of each of two photos (different sizes: different plans)
    chelsea = PHOTOS / "chelsea.png"
    other = chelsea if chelsea.is_file() else next(p for p in photos if p != COFFEE)
    return [COFFEE, other, COFFEE, other]


def test_one_explainer_four_threads(builtin):
    jobs = _jobs()
    sequential = [builtin.explain(p) for p in jobs]
    start = threading.Barrier(len(jobs))

    def work(p):
        start.wait(timeout=60)
        return builtin.explain(p)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        threaded = list(pool.map(work, jobs))
    assert len(threaded) == len(jobs)
    for i, (a, b) in enumerate(zip(threaded, sequential)):
        assert_same_explanation(a, b, f"thread {i} ({jobs[i].name}) vs sequential")
    # and the two photos were told apart
    a, b = threaded[0], threaded[1]
    assert (a.input_size, a.target.index) != (b.input_size, b.target.index)


def test_two_explainers_two_threads(builtin, explainer_factory):
    jobs = _jobs()[:2]
    want = [builtin.explain(p) for p in jobs]
    ours = [explainer_factory(), explainer_factory()]
    start = threading.Barrier(2)
    results = [None, None]
    errors = []

    def work(i):
        try:
            start.wait(timeout=60)
            results[i] = [ours[i].explain(jobs[i]) for _ in range(2)]
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    for i in range(2):
        for r in results[i]:
            assert_same_explanation(r, want[i], f"explainer {i} in its thread vs the shared one")
