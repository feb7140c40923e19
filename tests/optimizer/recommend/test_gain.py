import numpy as np

from wattwise.optimizer.recommend.gain import pick, worth_it


def test_a_cap_must_save_at_least_its_slowdown() -> None:
    slowdown = np.array([0.0, 0.02, 0.04, 0.06])
    saving = np.array([0.0, 0.03, 0.035, 0.10])
    ok = worth_it(slowdown, saving, slowdown_bound=0.05, gain_ratio=1.0)
    assert ok.tolist() == [False, True, False, False]


def test_pick_keeps_the_limit_when_nothing_pays() -> None:
    slowdown = np.array([[0.0, 0.046], [0.0, 0.01]])
    saving = np.array([[0.0, 0.0009], [0.0, 0.05]])
    assert pick(slowdown, saving, slowdown_bound=0.05, gain_ratio=1.0).tolist() == [-1, 1]
