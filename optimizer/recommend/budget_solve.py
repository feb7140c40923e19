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
FILL_PASSES = 8
EXCHANGE_CANDIDATES = 32


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
    choice = _improve(p, pricer, pricer.choose(_gpu_price(p, prices)))
    return Solution(choice, pricer.limits(choice), feasible)


class _Room:
    """What each scope has left under a choice, and moves of one unit by one candidate."""

    def __init__(self, p: Problem, pricer: _Pricer, choice: Ints) -> None:
        self.p = p
        self.slack = [room - _sums(p, lv, pricer.draws(choice)) for lv, room in enumerate(p.room_w)]
        self.members = np.split(pricer.order, pricer.starts[1:])

    def delta(self, u: int, old: int, new: int) -> list[Floats]:
        """Per level, what moving unit ``u`` from candidate ``old`` to ``new`` adds to each
        scope's draw."""
        gpus = self.members[u]
        extra = self.p.counted_w[gpus, new] - self.p.counted_w[gpus, old]
        out = []
        for scope, slack in zip(self.p.scope_of_gpu, self.slack, strict=True):
            inside = scope[gpus] >= 0
            sums = np.bincount(scope[gpus][inside], extra[inside], len(slack))
            out.append(np.asarray(sums, dtype=np.float64))
        return out

    def fits(self, *deltas: list[Floats]) -> bool:
        return all(
            np.all(sum(d[level] for d in deltas) <= slack + 1e-6)
            for level, slack in enumerate(self.slack)
        )

    def take(self, *deltas: list[Floats]) -> None:
        for level, slack in enumerate(self.slack):
            slack -= sum(d[level] for d in deltas)


def _improve(p: Problem, pricer: _Pricer, choice: Ints) -> Ints:
    """Spend the room prices leave, then trade watts between jobs while that loses less.

    Prices move alike units together and can leave a step's worth of room in a scope
    (spent by stepping units up, the most loss saved per watt first), and a scope full to
    its limit can still hold a better split (one job a step down, another a step up)."""
    room = _Room(p, pricer, choice)
    choice = choice.copy()
    for _ in range(FILL_PASSES):
        if not (_fill(p, room, choice) | _exchange(p, room, choice)):
            break
    return choice


def _steps(p: Problem, choice: Ints) -> tuple[Ints, Ints, Floats, Floats]:
    """Each unit's candidates one up and one down, and the loss each step saves or costs."""
    top = p.loss.shape[1] - 1
    rows = np.arange(len(choice))
    up, down = np.minimum(choice + 1, top), np.maximum(choice - 1, 0)
    gain = np.where(up > choice, p.loss[rows, choice] - p.loss[rows, up], 0.0)
    cost = np.where(down < choice, p.loss[rows, down] - p.loss[rows, choice], np.inf)
    return up, down, gain, cost


def _fill(p: Problem, room: _Room, choice: Ints) -> bool:
    up, _, gain, _ = _steps(p, choice)
    per_w = gain / np.maximum(_step_w(p, choice, up), 1e-9)
    moved = False
    for u in np.argsort(-per_w).tolist():
        if gain[u] <= 0:
            break
        step = room.delta(u, int(choice[u]), int(up[u]))
        if room.fits(step):
            room.take(step)
            choice[u] = up[u]
            moved = True
    return moved


def _exchange(p: Problem, room: _Room, choice: Ints) -> bool:
    """One job a step down for another a step up, where that loses less and fits: among the
    :data:`EXCHANGE_CANDIDATES` best steps each way."""
    up, down, gain, cost = _steps(p, choice)
    ups = [u for u in np.argsort(-gain)[:EXCHANGE_CANDIDATES].tolist() if gain[u] > 0]
    downs = [u for u in np.argsort(cost)[:EXCHANGE_CANDIDATES].tolist() if np.isfinite(cost[u])]
    moved, used = False, set[int]()
    for b in ups:
        for a in downs:
            if cost[a] >= gain[b] - 1e-12:
                break
            if a == b or a in used or b in used:
                continue
            lower = room.delta(a, int(choice[a]), int(down[a]))
            raise_ = room.delta(b, int(choice[b]), int(up[b]))
            if room.fits(lower, raise_):
                room.take(lower, raise_)
                choice[a], choice[b] = down[a], up[b]
                used.update((a, b))
                moved = True
                break
    return moved


def _step_w(p: Problem, choice: Ints, up: Ints) -> Floats:
    """Per unit: the watts its step from ``choice`` to ``up`` adds to its scopes."""
    rows, unit = np.arange(len(p.unit_of_gpu)), p.unit_of_gpu
    extra = p.counted_w[rows, up[unit]] - p.counted_w[rows, choice[unit]]
    return np.asarray(np.bincount(unit, weights=extra, minlength=len(choice)), dtype=np.float64)


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
