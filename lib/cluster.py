"""Sweeps sharded over a pool of Ray actors, each holding its own replica of the model.

    pool = Pool.start("local:2")        # 2 actors on this machine; or a cluster's address, device="cuda"
    with cluster.use(pool):
        table = head_out_sweep(model, tokens, metric)   # any sweep: its chunks run on the pool
    pool.close()

Under pytest, `--ray local:N` or `--ray ADDRESS` starts one pool for the session (fixtures/cluster.py).

What runs where. `run_variants` plans a sweep in this process, as it always does: the variants, their
order, the chunks and how every chunk runs (`sweep.Plan`). The prompts, the variants, the metric and
the plan are put in Ray's object store once per sweep; each actor fetches them at its first chunk of
that sweep, builds the sweep on its replica (the prefix's KV cache once per actor), and runs the chunks
it is given, one at a time, up to two queued. Values come back to this process, which puts them in
variant order. A chunk runs the same forward on an actor as in one process, so the result is the same;
on the CPU in float32 it is identical (tests/test_cluster.py).

Replicas. A model loaded by `attnclaims.models.load_model` or `attnclaims.toy.load_toy` carries its
recipe (`Replica`: the loader, its arguments and a fingerprint of the weights); an actor loads it once,
on the device of its own. A model without a recipe, or whose weights changed since it was loaded, runs
in this process, with one warning saying so.

Faults. An actor that dies mid-sweep has its chunks re-run on the others (and is replaced at the next
sweep); when all have died the sweep fails with PoolError. An error of the sweep itself (a metric that
returns NaN) is raised here as it would be in one process. A replica that cannot be loaded fails with
PoolError naming the worker and the model; `Pool.warm` does that at start-up.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import uuid
import warnings
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from attnclaims.progress import progress

REPLICA = "attnclaims_replica"  # the attribute of a model that holds its recipe
QUEUED = 2  # chunks given to an actor at once: one running, one waiting
_ACTIVE: list[Pool] = []
_WARNED: set[int] = set()


class PoolError(RuntimeError):
    """The pool cannot run a sweep: a worker cannot load the model, or every worker died."""


@dataclass(frozen=True)
class Replica:
    """How a worker loads the same model: `loader` ("module:function") called with `args`. `weights`
    is the fingerprint of the weights it must give (`fingerprint`)."""

    loader: str
    args: tuple
    name: str  # the model as a person names it
    weights: int

    def load(self):
        module, function = self.loader.split(":")
        model = getattr(importlib.import_module(module), function)(*self.args)
        if fingerprint(model) != self.weights:
            raise PoolError(f"{self.name} loaded with other weights than the model it replicates")
        return model


def fingerprint(model) -> int:
    """An exact, order-free fingerprint of a model's weights: the sum of their bit patterns as integers
    (weights offloaded to the disk by a device map are on torch's meta device here, and left out)."""
    total = 0
    for parameter in model.parameters():
        if parameter.device.type == "meta":
            continue
        bits = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}[parameter.element_size()]
        total += int(parameter.detach().contiguous().view(bits).sum(dtype=torch.int64))
    return total


def remember(model, loader: str, args: tuple, name: str):
    """`model`, carrying the recipe a worker loads its replica from (the loaders call this)."""
    setattr(model, REPLICA, Replica(loader, tuple(args), name, fingerprint(model)))
    return model


@contextmanager
def use(pool: Pool):
    """Every sweep within runs on `pool` (unless it is given another)."""
    activate(pool)
    try:
        yield pool
    finally:
        deactivate(pool)


def activate(pool: Pool) -> None:
    """Every sweep from now on runs on `pool`, until `deactivate(pool)` (pytest's `--ray` session)."""
    _ACTIVE.append(pool)


def deactivate(pool: Pool) -> None:
    _ACTIVE.remove(pool)


def active() -> Pool | None:
    return _ACTIVE[-1] if _ACTIVE else None


def pool_for(model, pool: Pool | None = None) -> Pool | None:
    """The pool a sweep of `model` runs on: `pool`, else the active one; None (this process) when there
    is none, or when the model cannot be replicated (with one warning per model)."""
    pool = pool or active()
    if pool is None:
        return None
    replica = getattr(model, REPLICA, None)
    why = None
    if replica is None:
        why = (
            "it was not loaded by attnclaims.models.load_model or attnclaims.toy.load_toy, so no worker "
            "can load a replica"
        )
    elif fingerprint(model) != replica.weights:
        why = f"its weights changed since {replica.name} was loaded, so a replica would differ"
    if why is None:
        return pool
    if id(model) not in _WARNED:
        _WARNED.add(id(model))
        warnings.warn(f"the sweeps of this model run in this process, not on the pool: {why}", stacklevel=3)
    return None


class _Worker:
    """A Ray actor: replicas of the models it is asked for, and the sweep it is running."""

    def __init__(self, index: int, threads: int):
        torch.set_num_threads(threads)
        self.index, self.models, self.sweep = index, {}, (None, None)

    def where(self) -> str:
        return f"worker {self.index} (pid {os.getpid()} on {socket.gethostname()})"

    def model(self, replica: Replica):
        if replica not in self.models:
            try:
                self.models[replica] = replica.load()
            except Exception as error:
                raise PoolError(f"{self.where()} could not load {replica.name}: {error}") from error
        return self.models[replica]

    def warm(self, replica: Replica) -> None:
        self.model(replica)

    def run(self, replica: Replica, sweep_id: str, payload: list, group: list[int]) -> list[torch.Tensor]:
        import ray

        from attnclaims.sweep import Sweep

        if self.sweep[0] != sweep_id:
            self.sweep = (None, None)  # the previous sweep's caches go before this one's are built
            tokens, *rest = ray.get(payload[0])  # keys, specs, metric, plan
            model = self.model(replica)
            self.sweep = (sweep_id, Sweep(model, tokens.to(model.cfg.device), *rest))
        return self.sweep[1].run(group)


class Pool:
    """Ray actors that run sweeps' chunks (module docstring). `Pool.start` makes one."""

    def __init__(self, address: str, actors: list, threads: int, device: str, worker, owns_ray: bool):
        self.address, self.actors, self.threads, self.device = address, actors, threads, device
        self._worker, self._owns_ray = worker, owns_ray  # the actor class, and whether close ends Ray
        self.chunks_run: Counter[int] = Counter()  # chunks each worker has returned

    @classmethod
    def start(cls, address: str = "local:2", actors: int | None = None, threads: int = 1, device="cpu"):
        """A pool on `address`: "local:N" (a Ray cluster on this machine, N actors) or the address of a
        running cluster (ray.init(address=...)), with `actors` actors (default: one per GPU of the
        cluster when `device` is cuda, else its CPUs // threads), each with `threads` torch threads."""
        import ray

        local = address.startswith("local:")
        if local:
            try:
                actors = actors or int(address.removeprefix("local:"))
            except ValueError:
                actors = 0
            if actors < 1:
                raise ValueError(f"--ray {address}: give local:N with N >= 1 actors, e.g. local:2")
        gpu = torch.device(device).type == "cuda"
        owns_ray = not ray.is_initialized()
        if owns_ray:
            # The workers import what this process imports (hypothesis modules that define hooks, too).
            runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
            resources = {"num_cpus": actors * threads} if local and not gpu else {}
            try:
                ray.init(
                    address=None if local else address,
                    include_dashboard=False,
                    runtime_env=runtime_env,
                    log_to_driver=False,
                    **resources,
                )
            except ConnectionError as error:
                raise PoolError(f"--ray {address}: no Ray cluster answers there ({error})") from error
        if actors is None:
            resources = ray.cluster_resources()
            actors = int(resources.get("GPU", 0)) if gpu else int(resources.get("CPU", 1)) // threads
            if actors < 1:
                raise PoolError(f"the Ray cluster at {address} has no {'GPU' if gpu else 'CPU'} for an actor")
        options = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": threads}
        pool = cls(address, [], threads, device, ray.remote(max_restarts=0, **options)(_Worker), owns_ray)
        pool.actors = [pool._actor(i) for i in range(actors)]
        pool.where = ray.get([actor.where.remote() for actor in pool.actors])
        return pool

    def _actor(self, index: int):
        return self._worker.remote(index, self.threads)

    def settings(self) -> dict:
        """What the ledger records of the pool."""
        return {"address": self.address, "actors": len(self.actors), "threads": self.threads}

    def warm(self, replicas: list[Replica]) -> None:
        """Load every replica on every actor now, so that one that cannot fails before any sweep."""
        import ray

        ray.get([actor.warm.remote(replica) for actor in self.actors for replica in replicas])

    def run(self, model, payload: tuple, groups: list[list[int]], desc: str, quiet: bool) -> dict:
        """{variant index: value} of a sweep's chunks `groups`, run on the actors (module docstring)."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        replica = getattr(model, REPLICA)
        tokens, *rest = payload  # keys, specs, metric, plan
        ref = ray.put((tokens.cpu(), *rest))
        sweep_id, todo, running, out = uuid.uuid4().hex, deque(range(len(groups))), {}, {}
        live = set(range(len(self.actors)))

        def finished():
            while todo or running:
                for i in sorted(live):
                    while todo and sum(where == i for where, _ in running.values()) < QUEUED:
                        chunk = todo.popleft()
                        task = self.actors[i].run.remote(replica, sweep_id, [ref], groups[chunk])
                        running[task] = (i, chunk)
                if not running:
                    raise PoolError(f"every worker of the pool ({len(self.actors)}) died during the sweep")
                [task], _ = ray.wait(list(running), num_returns=1)
                i, chunk = running.pop(task)
                try:
                    out.update(zip(groups[chunk], ray.get(task)))
                    self.chunks_run[i] += 1
                except (RayActorError, ActorUnavailableError):  # the worker died: its chunks go to the others
                    live.discard(i)
                    todo.appendleft(chunk)
                    continue
                yield chunk

        for _ in progress(finished(), desc, total=len(groups), quiet=quiet):
            pass
        self._replace(set(range(len(self.actors))) - live)
        return out

    def _replace(self, dead: set[int]) -> None:
        for i in dead:
            self.actors[i] = self._actor(i)

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._owns_ray:
            ray.shutdown()
