"""Choose each job's limit so that every power budget holds, with the least weighted loss of work.

The problem, with ``k`` indexing each GPU's candidate limits (ascending, the last one its
default limit) and a job (a *unit*) taking one candidate for all its GPUs::

    minimise   Σ_u loss[u, k_u]
    subject to Σ_{g ∈ s} limit[g, k_unit(g)] ≤ room[s]    for every scope s of every level

Scopes nest (racks in zones in the site), so the constraints form a tree. It is solved by
prices: each scope charges ``λ_s`` per watt of limit its GPUs hold, each unit picks the
candidate with the least loss plus charge, and each level's prices are found by bisection —
all scopes of a level at once, bottom-up, so that a raised price above only lowers the
limits below and every constraint met stays met. A second pass lets a rack's price fall
back where its zone or the site now does the work. Loss curves need not be convex: a
price finds points on each curve's lower hull, which is where the least loss lies for a
given total. Scopes whose minimum limits cannot fit are reported, their units at minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.telemetry import Floats, Ints

BISECTION_STEPS = 40
PRICE_RANGE = (1e-12, 1e9)
"""Loss per watt: a GPU's whole work over a 5 W step at a protected weight is under 1e6."""
ROUNDS = 2
FILL_PASSES = 3


@dataclass(frozen=True)
class Problem:
    """Arrays of one planning problem."""

    limits_w: Floats
    """(G, K): each GPU's candidate limits, ascending."""
    unit_of_gpu: Ints
    """(G,): which unit (job) each GPU belongs to, 0..U−1."""
    loss: Floats
    """(U, K): weighted loss of work of each unit at each candidate."""
    scope_of_gpu: tuple[Ints, ...]
    """Per level, bottom-up: (G,) the scope of each GPU at that level, −1 for none."""
    room_w: tuple[Floats, ...]
    """Per level: (S,) the most its GPUs' draws may add up to (inf: unconstrained)."""
    draw_w: Floats | None = None
    """(G, K): what each GPU counts against its scopes at each candidate; None: the limit
    itself (the GPU may draw up to its limit)."""

    @property
    def counted_w(self) -> Floats:
        return self.limits_w if self.draw_w is None else self.draw_w


@dataclass(frozen=True)
class Solution:
    choice: Ints
    """(U,): the chosen candidate of each unit."""
    limit_w: Floats
    """(G,): each GPU's chosen limit."""
    feasible: tuple[np.ndarray, ...]
    """Per level: (S,) whether the scope's room holds its GPUs at their minimum limits."""


class _Pricer:
    """Units' choices under per-GPU prices, computed with the GPUs grouped by unit."""

    def __init__(self, p: Problem) -> None:
        self.p = p
        self.order = np.argsort(p.unit_of_gpu, kind="stable")
        units = p.unit_of_gpu[self.order]
        self.starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
        self.sorted_draw = p.counted_w[self.order]
        self.rows = np.arange(len(p.unit_of_gpu))
        # Ties go to the highest limit: reversing the columns makes argmin pick it.
        self.reversed_loss = p.loss[:, ::-1]
        self.k = p.loss.shape[1]

    def choose(self, price: Floats) -> Ints:
        charge = np.add.reduceat(self.sorted_draw * price[self.order, None], self.starts, axis=0)
        cost = self.reversed_loss + charge[:, ::-1]
        return np.asarray(self.k - 1 - np.argmin(cost, axis=1), dtype=np.int64)

    def limits(self, choice: Ints) -> Floats:
        return np.asarray(self.p.limits_w[self.rows, choice[self.p.unit_of_gpu]], dtype=np.float64)

    def draws(self, choice: Ints) -> Floats:
        return np.asarray(self.p.counted_w[self.rows, choice[self.p.unit_of_gpu]], dtype=np.float64)


def solve(p: Problem) -> Solution:
    """The least-loss choice that fits every scope's room (at minimum where nothing fits)."""
    pricer = _Pricer(p)
    levels = len(p.room_w)
    prices = [np.zeros(len(room)) for room in p.room_w]
    feasible = tuple(_fits_at_minimum(p, level) for level in range(levels))
    for _ in range(ROUNDS):
        for level in range(levels):
            prices[level] = _bisect_level(p, pricer, prices, level, feasible[level])
    choice = _fill(p, pricer, pricer.choose(_gpu_price(p, prices)))
    return Solution(choice, pricer.limits(choice), feasible)


def _fill(p: Problem, pricer: _Pricer, choice: Ints) -> Ints:
    """Spend what room the prices left: step units up one candidate at a time, the most loss
    saved per watt first, while every scope they are in still fits. Prices move whole
    groups of alike units together and can leave a step's worth of room in each scope."""
    slack = [room - _sums(p, level, pricer.draws(choice)) for level, room in enumerate(p.room_w)]
    members = np.split(pricer.order, pricer.starts[1:])
    choice = choice.copy()
    for _ in range(FILL_PASSES):
        up = np.minimum(choice + 1, p.loss.shape[1] - 1)
        rows = np.arange(len(choice))
        gain = p.loss[rows, choice] - p.loss[rows, up]
        moved = False
        for u in np.argsort(-gain / np.maximum(_step_w(p, members, choice, up), 1e-9)).tolist():
            if gain[u] <= 0 or up[u] == choice[u]:
                continue
            gpus = members[u]
            extra = p.counted_w[gpus, up[u]] - p.counted_w[gpus, choice[u]]
            need = [np.bincount(sc[gpus][sc[gpus] >= 0], extra[sc[gpus] >= 0], len(sl))
                    for sc, sl in zip(p.scope_of_gpu, slack, strict=True)]  # fmt: skip
            if all(np.all(n <= sl + 1e-6) for n, sl in zip(need, slack, strict=True)):
                for n, sl in zip(need, slack, strict=True):
                    sl -= n
                choice[u] = up[u]
                moved = True
        if not moved:
            break
    return choice


def _step_w(p: Problem, members: list[Ints], choice: Ints, up: Ints) -> Floats:
    return np.array(
        [
            float((p.limits_w[m, up[u]] - p.limits_w[m, choice[u]]).sum())
            for u, m in enumerate(members)
        ]
    )


def _gpu_price(p: Problem, prices: list[Floats]) -> Floats:
    total = np.zeros(len(p.unit_of_gpu))
    for scope, price in zip(p.scope_of_gpu, prices, strict=True):
        inside = scope >= 0
        total[inside] += price[scope[inside]]
    return total


def _sums(p: Problem, level: int, limits: Floats) -> Floats:
    scope = p.scope_of_gpu[level]
    inside = scope >= 0
    sums = np.bincount(scope[inside], weights=limits[inside], minlength=len(p.room_w[level]))
    return np.asarray(sums, dtype=np.float64)


def _fits_at_minimum(p: Problem, level: int) -> np.ndarray:
    return np.asarray(_sums(p, level, p.counted_w[:, 0]) <= p.room_w[level] + 1e-6)


def _bisect_level(
    p: Problem, pricer: _Pricer, prices: list[Floats], level: int, feasible: np.ndarray
) -> Floats:
    """The least price of every scope of ``level`` at which it fits, the other levels' prices
    held (infeasible scopes get the top price: their units at minimum)."""
    room = p.room_w[level]
    mine = prices[level].copy()
    mine[:] = 0.0
    trial = [*prices[:level], mine, *prices[level + 1 :]]
    over = _sums(p, level, pricer.draws(pricer.choose(_gpu_price(p, trial)))) > room + 1e-6
    if not over.any():
        return mine
    low = np.where(over, np.log(PRICE_RANGE[0]), -np.inf)
    high = np.where(over, np.log(PRICE_RANGE[1]), -np.inf)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        trial[level] = np.where(over, np.exp(mid), 0.0)
        sums = _sums(p, level, pricer.draws(pricer.choose(_gpu_price(p, trial))))
        fits = sums <= room + 1e-6
        high = np.where(over & fits, mid, high)
        low = np.where(over & ~fits, mid, low)
    top = np.where(feasible, np.exp(high), PRICE_RANGE[1])
    return np.asarray(np.where(over, top, 0.0), dtype=np.float64)
