"""Joining Ray the way the project's Ray stages do: a cluster when one is named, else a local
Ray bounded for a shared machine."""
from __future__ import annotations

import math
import os
from typing import Iterable, Mapping

from common.config import REPO_ROOT


def init_ray(address: str | None, num_cpus: int, object_store_mb: int) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``); otherwise start a local Ray with at least
    ``num_cpus`` logical CPUs (every actor must fit, even on a small machine) and an object
    store of ``object_store_mb`` (Ray's default takes 30% of RAM). Local workers import the
    project from the repository root, wherever the driver was started."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    # The driver's own PYTHONPATH follows the root: a runtime env's variable replaces it.
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=max(os.cpu_count() or 1, num_cpus),
             object_store_memory=object_store_mb * 1024 * 1024, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": python_path}})


def cluster_gpus() -> float:
    """GPUs the connected Ray cluster has (0 when none)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def actors_that_fit(nodes: Iterable[Mapping[str, float]], need: Mapping[str, float]) -> int:
    """How many actors each needing ``need`` (resource -> amount; zero amounts ignored) the
    nodes, given by their total resources, can hold at once: an actor lives on one node."""
    wanted = {name: amount for name, amount in need.items() if amount > 0}
    # A hair of slack: Ray stores fractional resources in fixed point, so 1/0.1 must give 10.
    return sum(min((math.floor(node.get(name, 0) / amount + 1e-9) for name, amount in wanted.items()),
                   default=0) for node in nodes)


def node_resources() -> list[dict[str, float]]:
    """The total resources of each live node of the connected Ray cluster."""
    import ray

    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]
