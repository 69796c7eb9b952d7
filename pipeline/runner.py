"""Stage 1's runner: plan, claim the output folder, stylize every incomplete shard on Ray actors,
summarise the splits. ``pipeline/stylize.py`` parses the command line and calls :func:`run_stage1`.

The plan is fixed up front; one actor call writes one whole shard. Complete shards (tar, index
and stats file all there) are skipped, so rerunning the same command finishes a run that died
half-way. A shard whose actor dies, or that raises, is retried (``stylize.ray.shard_retries``)
and a dead actor replaced (``stylize.ray.max_restarts``, see :class:`ShardRunner`); a shard that
still fails is named in ``<out>/_failures.json`` while the others complete.
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from common import storage
from common.config import RESOLVED_NAME, recorded_config, save_config, shard_differences
from common.lease import folder_lock
from common.ray_cluster import actors_that_fit, init_ray, node_resources
from common.schema import Config, StylizeRay
from pipeline.plan import Plan, ShardPlan, make_plan
from pipeline.worker import ShardWorker
from shards.manifest import read_content_manifest, read_style_manifest
from shards.reader import complete_shards, shard_stats
from shards.schema import shard_locations, shard_stem
from shards.writer import write_split_info
from stylize import configured_method, list_methods

STATE_NAME = "_stage1.json"
FAILURES_NAME = "_failures.json"   # the shards the last run gave up on


class Stage1Error(RuntimeError):
    pass


class ShardsFailed(Stage1Error):
    """Shards that still failed after their retries (main exits 1; bad input exits 2)."""


def resolve_inputs(cfg: Config) -> tuple[str, str]:
    """The content and style manifests (paths or URLs): the configured ones, or the synthetic
    world's."""
    data = cfg.data
    if data.content_manifest and data.style_manifest:
        return storage.resolve(data.content_manifest), storage.resolve(data.style_manifest)
    if data.content_manifest or data.style_manifest:
        raise Stage1Error("set both data.content_manifest and data.style_manifest, or neither "
                          "(neither: use the synthetic world)")
    from world.generate import ensure_world, world_dir
    world = ensure_world(cfg.world, cfg.seed, world_dir(cfg))
    return str(world.content_manifest), str(world.style_manifest)


def check_methods(cfg: Config) -> None:
    scfg = cfg.stylize   # the schema checked that each method used has an entry
    for name in scfg.methods_used:
        registered = configured_method(name, scfg.methods)[0]
        if registered not in list_methods():
            raise Stage1Error(f"unknown NST method '{registered}' (stylize.methods.{name}); "
                              f"registered: {', '.join(list_methods())}")


def plan_inputs(cfg: Config, say: Callable[[str], None] = lambda message: None) -> tuple[Plan, str]:
    """The plan of ``cfg`` and the content manifest it draws from; ``say`` hears what was read."""
    content_path, style_path = resolve_inputs(cfg)
    contents = read_content_manifest(content_path)
    styles = read_style_manifest(style_path)
    say(f"[stage1] {len(contents)} contents from {content_path}")
    say(f"[stage1] {len(styles)} styles from {style_path}")
    return make_plan(contents, styles, cfg, cfg.seed), content_path


def build_plan(cfg: Config) -> tuple[Plan, str]:
    plan, content_path = plan_inputs(cfg, print)
    for line in plan.describe():
        print(f"[stage1]   {line}")
    for warning in plan.warnings:
        print(f"[stage1] warning: {warning}", file=sys.stderr)
    return plan, content_path


def claim_output(out: str, plan: Plan, cfg: Config) -> None:
    """Refuse to mix shards of two different plans, or of two configs (e.g. another
    ``stylize.square`` or ``image_size``: the same plan, other pixels), in one output folder."""
    if storage.is_file(storage.join(out, RESOLVED_NAME)):
        for key, mine, theirs in shard_differences(cfg, recorded_config(out)):
            raise Stage1Error(f"{out} holds shards made with {key}={theirs!r}, not {mine!r}: "
                              "use a new --out (or the config those shards were made with)")
    state_path = storage.join(out, STATE_NAME)
    digest = plan.digest()
    if storage.is_file(state_path):
        previous = json.loads(storage.read_text(state_path)).get("plan_digest")
        if previous != digest:
            raise Stage1Error(f"{out} holds shards of a different plan ({previous}, now {digest}): "
                              "the config or inputs changed; use a new --out")
    storage.makedirs(out)
    storage.write_json(state_path, {"plan_digest": digest, "shards": len(plan.shards)})
    remove_temporaries(out)


def remove_temporaries(out: str) -> None:
    """Delete the temporary files of shard attempts that died mid-shard (never read: readers
    see only final names). Only while no attempt runs: the folder lock keeps other runs out.
    A folder on object storage has none: its writers keep their temporaries local
    (``shards.writer``)."""
    if storage.is_url(out):
        return
    for stale in Path(out).glob("*/.shard-*.tmp"):
        stale.unlink(missing_ok=True)


def start_ray(cfg: Config) -> None:
    rcfg = cfg.stylize.ray
    init_ray(rcfg.address, rcfg.num_actors * rcfg.num_cpus_per_actor, rcfg.object_store_mb)
    check_actors_fit(rcfg, node_resources())


def check_actors_fit(rcfg: StylizeRay, nodes: list[dict[str, float]]) -> None:
    """Every actor must find a node: an actor Ray cannot place waits forever, and so does the
    shard handed to it."""
    need = {"CPU": rcfg.num_cpus_per_actor, "GPU": rcfg.num_gpus_per_actor, **rcfg.actor_resources}
    fit = actors_that_fit(nodes, need)
    if fit >= rcfg.num_actors:
        return
    asked = ", ".join(f"{amount:g} {name}" for name, amount in need.items() if amount > 0)
    hint = (" The cluster has no GPUs: set stylize.ray.num_gpus_per_actor=0 to run on CPUs."
            if rcfg.num_gpus_per_actor
            and not any(node.get("GPU") for node in nodes) else "")
    raise Stage1Error(f"stylize.ray.num_actors={rcfg.num_actors} actors of {asked} each, but the "
                      f"Ray cluster's nodes hold {fit}: the others would wait forever. Lower "
                      f"stylize.ray.num_actors or the per-actor resources, or add nodes.{hint}")


def shard_name(shard: ShardPlan) -> str:
    return f"{shard.split}/{shard_stem(shard.number)}"


def _short(exc: Exception) -> str:
    """One line for a failed attempt: the shard's own exception, or the actor's death."""
    cause = getattr(exc, "cause", None)  # a RayTaskError wraps what the shard raised
    text = repr(cause) if cause is not None else str(exc)
    return next((line for line in text.splitlines() if line.strip()), type(exc).__name__)[:300]


@dataclass
class _Slot:
    """One actor of the pool: None once it died, until work needs a fresh one; ``restarts``
    counts the fresh actors that replaced dead ones."""

    actor: Any = None
    restarts: int = 0


class ShardRunner:
    """Runs shards on ``num_actors`` actors, one shard per actor at a time.

    Not Ray's ActorPool: one dead actor raises out of its map and ends the run. Here each
    result is taken with ``ray.wait``; a failed attempt (the actor died, or the shard raised)
    is resubmitted up to ``shard_retries`` times, a dead actor is replaced up to
    ``max_restarts`` times, and a shard that still fails is recorded while the others go on.
    A retry cannot duplicate samples: an attempt writes its own temporary tar and only a
    finished one is renamed into place.
    """

    def __init__(self, cfg: Config, todo: list[ShardPlan], out: str):
        import ray

        rcfg = cfg.stylize.ray
        self.cfg, self.out, self.total = cfg, out, len(todo)
        self.max_restarts, self.retries = rcfg.max_restarts, rcfg.shard_retries
        # Ray's own restarts stay off: a replaced actor is counted here, per slot.
        self.actor_cls = ray.remote(num_cpus=rcfg.num_cpus_per_actor, num_gpus=rcfg.num_gpus_per_actor,
                                    resources=rcfg.actor_resources, max_restarts=0)(ShardWorker)
        self.idle = [_Slot(self.actor_cls.remote(cfg))
                     for _ in range(min(rcfg.num_actors, len(todo)))]
        self.queue, self.attempts = deque(todo), Counter()
        self.running: dict[Any, tuple[_Slot, ShardPlan]] = {}
        self.failures: dict[str, str] = {}
        self.started, self.done, self.images, self.failed_images = time.time(), 0, 0, 0

    def run(self) -> dict[str, str]:
        """Run every shard; returns the reason of each shard that was given up, by name."""
        import ray

        while self.queue or self.running:
            self._submit()
            if not self.running:  # every actor was given up: nothing can run the rest
                for shard in self.queue:
                    self.failures[shard_name(shard)] = (
                        f"no actor left (stylize.ray.max_restarts={self.max_restarts} used up)")
                break
            [ref], _ = ray.wait(list(self.running), num_returns=1)
            self._collect(ref)
        return self.failures

    def _submit(self) -> None:
        while self.queue and self.idle:
            # A live actor first: a fresh one takes a while to start.
            slot = next((s for s in self.idle if s.actor is not None), self.idle[0])
            self.idle.remove(slot)
            shard = self.queue.popleft()
            if slot.actor is None:
                slot.actor, slot.restarts = self.actor_cls.remote(self.cfg), slot.restarts + 1
                print(f"[stage1] started a replacement for a dead actor (restart {slot.restarts} "
                      f"of stylize.ray.max_restarts={self.max_restarts})", file=sys.stderr, flush=True)
            self.attempts[shard_name(shard)] += 1
            self.running[slot.actor.write_shard.remote(shard, self.out)] = (slot, shard)

    def _collect(self, ref: Any) -> None:
        import ray

        slot, shard = self.running.pop(ref)
        try:
            stats = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            self._bury(slot)
            self._failed(shard, f"actor died: {_short(exc)}")
        except ray.exceptions.RayError as exc:
            self.idle.append(slot)
            self._failed(shard, _short(exc))
        else:
            self.idle.append(slot)
            self._done(stats)

    def _bury(self, slot: _Slot) -> None:
        """Drop a dead actor; its slot gets a fresh one (which rebuilds its models) when there
        is work for it, unless its restarts are used up."""
        import ray

        ray.kill(slot.actor, no_restart=True)  # an unreachable actor may still be running
        slot.actor = None
        if slot.restarts >= self.max_restarts:
            print(f"[stage1] warning: an actor died {slot.restarts + 1} times; "
                  "continuing without it", file=sys.stderr, flush=True)
            return
        self.idle.append(slot)

    def _failed(self, shard: ShardPlan, reason: str) -> None:
        name, attempt = shard_name(shard), self.attempts[shard_name(shard)]
        if attempt <= self.retries:
            print(f"[stage1] {name} attempt {attempt} failed ({reason}); retrying",
                  file=sys.stderr, flush=True)
            self.queue.append(shard)
            return
        print(f"[stage1] {name} failed after {attempt} attempts: {reason}", file=sys.stderr, flush=True)
        self.failures[name] = reason

    def _done(self, stats: dict) -> None:
        self.done += 1
        self.images += stats["images"]
        self.failed_images += stats["failed"]
        elapsed = time.time() - self.started
        eta = elapsed / self.done * (self.total - self.done - len(self.failures))
        print(f"[stage1] {self.done}/{self.total} shards | {stats['split']}/{stats['shard']} | "
              f"{self.images / elapsed:.1f} samples/s | failures {self.failed_images} | "
              f"eta {eta:.0f}s", flush=True)


def summarise_splits(cfg: Config, plan: Plan, out: str, content_manifest: str) -> dict:
    """Write each split's ``_info.json`` from its complete shards' stats files."""
    summary = {}
    for split in plan.splits():
        split_dir = storage.join(out, split)
        stats = [shard_stats(tar) for tar in complete_shards(split_dir)]
        methods = sorted({item.method for shard in plan.shards if shard.split == split
                          for group in shard.groups for item in group.items})
        summary[split] = write_split_info(split_dir, split, stats, {
            "methods": methods, "held_out": cfg.stylize.held_out,
            "networks": {m: configured_method(m, cfg.stylize.methods)[0] for m in methods},
            "content_manifest": str(content_manifest), "image_size": cfg.stylize.image_size,
            "seed": cfg.seed})
    return summary


def run_stage1(cfg: Config, out: str | Path) -> dict:
    """Plan, stylize every incomplete shard, summarise. Returns per-split summaries.

    ``out`` may be a URL (``common.storage``), checked before any work. The output folder is
    locked for the run (``common.lease.folder_lock``): a second run on it is refused while this
    one lives (it would delete this run's unfinished shards as stale), not after it dies.
    """
    out = storage.resolve(out)
    check_methods(cfg)
    storage.check_remote(write=[out])
    plan, content_manifest = build_plan(cfg)
    with folder_lock(out, "stage-1 run"):
        claim_output(out, plan, cfg)
        save_config(cfg, out)
        return _stylize_plan(cfg, plan, out, content_manifest)


def shards_to_do(plan: Plan, out: str) -> list[ShardPlan]:
    """The planned shards not complete in ``out`` (``shards.schema.is_complete``). One that
    lost a file (its index deleted) is redone: its stats file goes first, so that a stats file
    still means the shard's other files are final (the writer publishes it last)."""
    complete = {tar for split in plan.splits() for tar in _complete_in(storage.join(out, split))}
    todo = [s for s in plan.shards if _locations(out, s)["tar"] not in complete]
    for shard in todo:
        storage.remove(_locations(out, shard)["stats"])
    return todo


def _complete_in(split_dir: str) -> list[str]:
    """One listing per split (on object storage every check is a request)."""
    return complete_shards(split_dir) if storage.is_dir(split_dir) else []


def _locations(out: str, shard: ShardPlan) -> dict[str, str]:
    return shard_locations(storage.join(out, shard.split), shard.number)


def _stylize_plan(cfg: Config, plan: Plan, out: str, content_manifest: str) -> dict:
    todo = shards_to_do(plan, out)
    print(f"[stage1] plan: {len(plan.shards)} shards in {len(plan.splits())} splits "
          f"({sum(s.num_items for s in plan.shards)} images); {len(plan.shards) - len(todo)} "
          f"already complete, {len(todo)} to do")
    started = time.time()
    if todo:
        start_ray(cfg)
        failures = ShardRunner(cfg, todo, out).run()
        remove_temporaries(out)
        record_failures(out, failures)
    summary = summarise_splits(cfg, plan, out, content_manifest)
    elapsed = time.time() - started
    images = sum(s["images"] for s in summary.values())
    failed = sum(s["failed"] for s in summary.values())
    print(f"[stage1] done in {elapsed:.1f}s: {images} images, {failed} failed, "
          f"splits {', '.join(summary)} -> {out}")
    return summary


def record_failures(out: str, failures: dict[str, str]) -> None:
    """Name the shards given up in ``_failures.json`` and stop before the splits are summarised
    (an ``_info.json`` says a split is finished); a run without failures removes the file."""
    path = storage.join(out, FAILURES_NAME)
    if not failures:
        storage.remove(path)
        return
    storage.write_json(path, {"failed": failures})
    names = "; ".join(f"{name} ({reason})" for name, reason in sorted(failures.items()))
    raise ShardsFailed(f"{len(failures)} shard(s) failed, the others are complete: {names}. "
                       f"Listed in {path}; rerun the same command to retry them")
