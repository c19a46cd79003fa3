"""What a study rents on Modal, sized from its trials, with an estimated price per hour.

Tune runs the trials that fit at once side by side; a trial asking for a fraction of a GPU shares
a card with others (Ray packs fractions onto whole cards, never splits one trial over two). So
the demand is the trials that can run at once (all of a grid, or `max_concurrent` of them), packed
onto cards first-fit decreasing:
- up to one host's GPUs (8): one container with exactly those cards and the trials' CPUs and
  memory (the thesis grid: 6 trials, 2.5 GPUs -> 3 A100-80GB, instead of 16 on two clustered hosts);
- more: a Modal cluster of whole hosts (`modal.clustered`: each container takes a host's 8 GPUs),
  the smallest of the app's cluster sizes that holds the cards.
A search runs on one node (its Optuna database and study directory are local files), with up to
one host's GPUs; Tune queues the trials beyond that.

Prices are an ESTIMATE: Modal's list prices per second as quoted in public code dated 2026-09
(modal.com/pricing, not fetched here: no network). Check the pricing page before a long run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GPU_TYPE = "A100-80GB"
GPUS_PER_HOST = 8
HOST_CPUS = 64.0  # what a clustered container (a whole host) reserves
HOST_MEMORY_GIB = 512
CLUSTER_SIZES = (2, 4)  # the app's clustered functions (a cluster's size is fixed when it is defined)

# The driver, the Ray head and data preparation, beside the trials' own CPUs; memory per trial holds
# its 2M tokenized training pairs and the evaluation candidates (a few GiB) with room to spare.
BASE_CPUS = 2.0
BASE_MEMORY_GIB = 16
MEMORY_PER_TRIAL_GIB = 16

PRICE_SOURCE = "Modal list prices (modal.com/pricing) as quoted in public code dated 2026-09; not fetched here"
GPU_USD_PER_S = {
    "A100-40GB": 0.000583,
    "A100-80GB": 0.000694,
    "L40S": 0.000542,
    "H100": 0.001097,
    "H200": 0.001261,
    "B200": 0.001736,
}
CPU_USD_PER_CORE_S = 0.0000131
MEMORY_USD_PER_GIB_S = 0.00000222


@dataclass(frozen=True)
class Demand:
    """What the trials that run at once ask for."""

    trials: int  # running at once
    total_trials: int
    gpus: float  # the sum of their GPU fractions
    cards: int  # whole GPUs once the fractions are packed
    cpus: float


@dataclass(frozen=True)
class Rental:
    """Containers of one shape: `nodes` of them (clustered when more than one)."""

    nodes: int
    gpus_per_node: int
    cpus_per_node: float
    memory_gib_per_node: int
    gpu_type: str = GPU_TYPE

    @property
    def gpu(self) -> str | None:
        """Modal's gpu string ("A100-80GB:3"), or None for a CPU container."""
        if not self.gpus_per_node:
            return None
        return self.gpu_type if self.gpus_per_node == 1 else f"{self.gpu_type}:{self.gpus_per_node}"

    @property
    def clustered(self) -> bool:
        return self.nodes > 1

    def usd_per_hour(self) -> float:
        """Estimated: list prices (see PRICE_SOURCE) x what is reserved, per hour."""
        per_node = (
            self.gpus_per_node * GPU_USD_PER_S[self.gpu_type]
            + self.cpus_per_node * CPU_USD_PER_CORE_S
            + self.memory_gib_per_node * MEMORY_USD_PER_GIB_S
        )
        return per_node * self.nodes * 3600


def pack_cards(fractions: Iterable[float]) -> int:
    """Whole GPUs that hold trials asking for these GPU shares (first-fit decreasing, as a bound on
    what Ray's packing needs); a trial asking for 1 or more takes that many cards of its own."""
    cards: list[float] = []  # free share per card in use
    whole = 0
    for share in sorted((f for f in fractions if f > 0), reverse=True):
        if share >= 1:
            whole += math.ceil(share)
            continue
        for i, free in enumerate(cards):
            if share <= free + 1e-9:
                cards[i] = free - share
                break
        else:
            cards.append(1.0 - share)
    return whole + len(cards)


def concurrent_demand(resources: Sequence[tuple[float, float]], max_concurrent: int | None = None) -> Demand:
    """Demand of trials given as (cpus, gpus): all at once, or the `max_concurrent` largest."""
    if not resources:
        raise ValueError("expects at least one trial to size the rental for, but got none")
    running = sorted(resources, key=lambda r: (r[1], r[0]), reverse=True)[: max_concurrent or len(resources)]
    return Demand(
        trials=len(running),
        total_trials=len(resources),
        gpus=sum(g for _, g in running),
        cards=pack_cards(g for _, g in running),
        cpus=sum(c for c, _ in running),
    )


def plan_rental(demand: Demand, *, nodes: int | None = None, single_node: bool = False) -> Rental:
    """The rental for `demand`: one right-sized container while it fits one host, else a cluster.

    `nodes` (2 or 4) asks for a cluster of that size; `single_node` caps at one host (a search).
    """
    if nodes is not None and nodes > 1:
        if nodes not in CLUSTER_SIZES:
            raise ValueError(f"--nodes must be 1 or one of {list(CLUSTER_SIZES)}, but got {nodes}")
        return _cluster(nodes)
    if demand.cards <= GPUS_PER_HOST or single_node or nodes == 1:
        cards = min(demand.cards, GPUS_PER_HOST)
        running = demand.trials if demand.cards <= GPUS_PER_HOST else _trials_that_fit(demand, cards)
        return Rental(
            nodes=1,
            gpus_per_node=cards,
            cpus_per_node=min(demand.cpus, HOST_CPUS - BASE_CPUS) + BASE_CPUS,
            memory_gib_per_node=min(BASE_MEMORY_GIB + MEMORY_PER_TRIAL_GIB * running, HOST_MEMORY_GIB),
        )
    hosts = math.ceil(demand.cards / GPUS_PER_HOST)
    fitting = [size for size in CLUSTER_SIZES if size >= hosts]
    return _cluster(fitting[0] if fitting else CLUSTER_SIZES[-1])


def _cluster(nodes: int) -> Rental:
    return Rental(nodes=nodes, gpus_per_node=GPUS_PER_HOST, cpus_per_node=HOST_CPUS, memory_gib_per_node=HOST_MEMORY_GIB)


def _trials_that_fit(demand: Demand, cards: int) -> int:
    return max(1, round(demand.trials * cards / demand.cards))


def describe_rental(rental: Rental, demand: Demand) -> str:
    """What will be rented against what the trials need, with the estimated price per hour."""
    shape = f"{rental.gpu} GPUs" if rental.gpu else "no GPU"
    kind = f"a cluster of {rental.nodes} containers (whole hosts)" if rental.clustered else "1 container"
    rented_gpus = rental.nodes * rental.gpus_per_node
    at_once = (
        f"{demand.trials} of {demand.total_trials} trials at once"
        if demand.trials < demand.total_trials
        else f"{demand.trials} trials at once"
    )
    lines = [
        f"Rents:  {kind}, each {shape}, {rental.cpus_per_node:g} CPU cores, {rental.memory_gib_per_node} GiB memory",
        f"Needs:  {at_once}: {demand.gpus:g} GPUs ({demand.cards} cards once packed), {demand.cpus:g} CPU cores",
    ]
    if rented_gpus > demand.cards:
        lines.append(f"        {rented_gpus - demand.cards} of {rented_gpus} rented GPUs have no trial to run")
    elif rented_gpus < demand.cards:
        lines.append(f"        the trials need {demand.cards} GPUs at once: Tune queues those that do not fit")
    lines.append(
        f"Cost:   about ${rental.usd_per_hour():,.2f} per hour while it runs (ESTIMATE from {PRICE_SOURCE})"
    )
    return "\n".join(lines)
