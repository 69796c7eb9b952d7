"""Test-only fault injection for the processes a test starts: stage 1's driver and its Ray
actors, torchrun's ranks. Nothing in the project's own code knows about it.

Python imports ``sitecustomize`` at start-up in every process whose ``sys.path`` holds it, so a
test puts this folder first on ``PYTHONPATH`` (:func:`fault_env` builds that environment; local
Ray workers and torchrun ranks inherit it) and names a fault in ``NSTSTYLE_FAULT``::

    exit-mid-shard:<split>/<shard stem>     the process writing that shard exits abruptly once
                                            the shard's first group is in its temporary tar
    exit-before-tar:<split>/<shard stem>    it exits between publishing the shard's index and
                                            its tar
    exit-before-stats:<split>/<shard stem>  it exits between publishing the shard's tar (and
                                            index) and writing its stats file
    nan-batch:<step>                        training's batch of that step (1-based) is all NaN,
                                            so its loss is not finite

Several faults may be named at once, separated by commas. An exit fires on every occasion, or only on the first one when ``NSTSTYLE_FAULT_ONCE`` names a
folder: the process that exits writes its pid to ``<folder>/fired`` first. With
``NSTSTYLE_FAULT_LOG`` naming a folder, every stage-1 worker process writes a file
``<folder>/<pid>`` that lists the shards it wrote, one a line, so a test can tell which actor
wrote what. The exits are ``os._exit(1)``: no cleanup, no ``finally``, as if the process were
killed.

The patches are applied the moment their module is first imported (an import hook below), so
they hold wherever the module's functions are used, including names imported from it.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

FAULT_ENV = "NSTSTYLE_FAULT"
ONCE_ENV = "NSTSTYLE_FAULT_ONCE"
LOG_ENV = "NSTSTYLE_FAULT_LOG"


def fault_env(base: dict[str, str], fault: str | None = None, once: Path | None = None,
              log: Path | None = None) -> dict[str, str]:
    """``base`` with this folder first on PYTHONPATH and the fault settings given."""
    paths = [str(Path(__file__).parent), base.get("PYTHONPATH", "")]
    env = {**base, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    for name, value in ((FAULT_ENV, fault), (ONCE_ENV, once), (LOG_ENV, log)):
        if value is not None:
            env[name] = str(value)
    return env


def _fire() -> None:
    """Exit now, unless the exit is to happen once and already has."""
    once = os.environ.get(ONCE_ENV)
    if once:
        marker = Path(once) / "fired"
        try:
            with open(marker, "x") as fh:   # exclusive: one process wins, even in parallel
                fh.write(str(os.getpid()))
        except FileExistsError:
            return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _shard_name(shard) -> str:
    """``<split>/<shard stem>`` of a shard plan or a shard writer."""
    from shards.schema import shard_stem

    return f"{shard.split}/{shard_stem(shard.number)}"


def _exit_mid_shard(target: str) -> Callable[[ModuleType], None]:
    def patch(worker: ModuleType) -> None:
        write_group = worker.ShardWorker._write_group

        def faulty(self, writer, group) -> None:
            write_group(self, writer, group)
            if _shard_name(writer) == target:
                _fire()
        worker.ShardWorker._write_group = faulty
    return patch


def _exit_before(function: str, target_arg: int,
                 suffix: str) -> Callable[[str], Callable[[ModuleType], None]]:
    """An exit before ``shards.writer``'s ``function`` (one of the functions ShardWriter.close()
    publishes a shard's files with; its argument ``target_arg`` is the file's final location,
    a path or a URL) publishes the target shard's ``<stem><suffix>``."""
    def make(target: str) -> Callable[[ModuleType], None]:
        def patch(writer: ModuleType) -> None:
            publish = getattr(writer, function)

            def faulty(*args) -> None:
                if "/".join(str(args[target_arg]).split("/")[-2:]) == target + suffix:
                    _fire()
                publish(*args)
            setattr(writer, function, faulty)
        return patch
    return make


def _nan_batch(step: str) -> Callable[[ModuleType], None]:
    def patch(data: ModuleType) -> None:
        import torch

        batch_stream = data.batch_stream

        def faulty(urls, train_cfg, seed, rank, world_size, start_batch=0, pin_memory=False):
            stream = batch_stream(urls, train_cfg, seed, rank, world_size, start_batch, pin_memory)
            for number, batch in enumerate(stream, start_batch + 1):   # the step it is for
                if number == int(step):
                    batch = {**batch, "images": torch.full_like(batch["images"], float("nan"))}
                yield batch
        data.batch_stream = faulty
    return patch


def _log_shards(folder: str) -> Callable[[ModuleType], None]:
    def patch(worker: ModuleType) -> None:
        write_shard = worker.ShardWorker.write_shard

        def logged(self, shard, out_dir) -> dict:
            stats = write_shard(self, shard, out_dir)
            with open(Path(folder) / str(os.getpid()), "a") as fh:
                fh.write(_shard_name(shard) + "\n")
            return stats
        worker.ShardWorker.write_shard = logged
    return patch


FAULTS = {"exit-mid-shard": ("pipeline.worker", _exit_mid_shard),
          "exit-before-tar": ("shards.writer", _exit_before("publish_file", 1, ".tar")),
          "exit-before-stats": ("shards.writer", _exit_before("write_json", 0, ".stats.json")),
          "nan-batch": ("train.data", _nan_batch)}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs ``patches[name](module)`` right after module ``name`` is first executed."""

    def __init__(self, patches: dict[str, list[Callable[[ModuleType], None]]]):
        self.patches = patches

    def find_spec(self, name, path, target=None):
        if name not in self.patches:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _ThenPatch(spec.loader, self.patches[name])
        return spec


class _ThenPatch(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, patches: list[Callable[[ModuleType], None]]):
        self.loader, self.patches = loader, patches

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        for patch in self.patches:
            patch(module)

    def __getattr__(self, name: str):   # get_source, get_filename, ... of the real loader
        return getattr(self.loader, name)


def _install() -> None:
    patches: dict[str, list[Callable[[ModuleType], None]]] = {}
    for fault in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        kind, _, argument = fault.partition(":")
        if kind not in FAULTS:
            raise SystemExit(f"{FAULT_ENV}={fault!r}: unknown fault (known: {', '.join(FAULTS)})")
        module, make = FAULTS[kind]
        patches.setdefault(module, []).append(make(argument))
    if os.environ.get(LOG_ENV):
        patches.setdefault("pipeline.worker", []).append(_log_shards(os.environ[LOG_ENV]))
    if patches:
        sys.meta_path.insert(0, _PatchOnImport(patches))


_install()
