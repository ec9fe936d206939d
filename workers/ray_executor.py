"""Runs trials on Ray: long-lived actors, each epoch's result streamed back as it finishes.

Short learning-rate trials are dominated by per-trial overhead, so actors live across trials
and jobs (data loaded once per actor and workload), and each trial is one actor call whose
epochs come back through a Ray streaming generator.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import ray
from ray.exceptions import ActorDiedError, RayActorError, WorkerCrashedError

from lrsearch.workers.executor import RangeTestRun, TrialResources, TrialRun, WorkerLost
from lrsearch.workers.ray_cluster import JoinedNode, RayUnavailable, reach_cluster
from lrsearch.workers.trial_worker import TrialWorker

log = logging.getLogger(__name__)


class RayTrialWorker(TrialWorker):
    """A TrialWorker as a Ray actor: it knows its node, and where its peers reach it."""

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())

    def host(self) -> str:
        return str(ray.util.get_node_ip_address())


TrialActor = ray.remote(RayTrialWorker)


# How long a trial's workers may take to wind down once it has ended (or was stopped) before they
# are killed and replaced: a worker that does not end must never hold its trial's slot for good.
DRAIN_SECONDS = 120.0


class _Drain:
    """A thread reading streams to their end (results dropped): a dead actor is simply not reused."""

    def __init__(self, streams: list[Any]) -> None:
        self._outcome: list[bool] = []
        self._reader = threading.Thread(target=self._read, args=(streams,), name="drain-trial", daemon=True)
        self._reader.start()

    def _read(self, streams: list[Any]) -> None:
        try:
            for stream in streams:
                for ref in stream:
                    ray.get(ref)
            self._outcome.append(True)
        except Exception:  # noqa: BLE001 - read as a failure: the actors are replaced
            self._outcome.append(False)

    def ended(self, timeout: float) -> bool:
        """True once every stream ended well; False when one failed or did not end in ``timeout`` s."""
        self._reader.join(timeout)
        if self._reader.is_alive():
            log.warning("a trial's workers did not end within %.0f s of it; replacing them", DRAIN_SECONDS)
            return False
        return self._outcome == [True]


class RayExecutor:
    """Owns the connection to Ray and a pool of idle actors per resource shape."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 object_store_bytes: int | None = None, runtime_env: dict[str, Any] | None = None,
                 wait_seconds: float = 30.0) -> None:
        self.address = address
        self.wait_seconds = wait_seconds  # for a cluster's head to answer, and to join it
        self.runtime_env = runtime_env  # every worker's: e.g. workload packages shipped to the cluster
        self.num_cpus = num_cpus
        self.object_store_bytes = object_store_bytes
        self._owns_ray = False
        self._joined: JoinedNode | None = None  # this machine's zero-CPU node, when it was not one
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)  # an actor became idle or was killed
        self._idle: dict[TrialResources, list[Any]] = {}
        self._live: dict[TrialResources, int] = {}  # actors alive per shape, busy or idle
        self._running: dict[str, Any] = {}
        self._stopped: set[str] = set()  # trials asked to stop before they got an actor
        self._resources: dict[str, float] = {}
        self._resources_at = -1e9

    def start(self) -> None:
        """Connect to Ray (a cluster's, or a new local one). Raises RayUnavailable naming the fix."""
        if ray.is_initialized():
            return
        # ray.init replaces the SIGTERM handler with one that exits at once; the service's own
        # (uvicorn's graceful shutdown: stop trials, hand leases back) must stay in charge.
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if in_main else None
        try:
            self._init()
        finally:
            if in_main and previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _init(self) -> None:
        if self.address:
            if self.num_cpus is not None:
                log.warning("--num-cpus is ignored when joining a Ray cluster at %s", self.address)
            self._joined = reach_cluster(self.address, self.wait_seconds)
            try:
                ray.init(address=self.address, log_to_driver=False, runtime_env=self.runtime_env)
            except BaseException as exc:
                self._stop_joined()
                if not isinstance(exc, Exception):
                    raise  # interrupted: nothing to explain
                raise RayUnavailable(f"cannot connect to the Ray cluster at {self.address}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        else:
            # address="local": always a new Ray, never a `ray start` cluster that happens to run here.
            ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False,
                     object_store_memory=self.object_store_bytes, runtime_env=self.runtime_env)
        self._owns_ray = True

    def describe(self) -> str:
        if not ray.is_initialized():
            return "not connected"
        cpus = ray.cluster_resources().get("CPU", 0)
        alive = sum(1 for node in ray.nodes() if node.get("Alive"))  # Ray keeps the dead ones listed
        return f"connected ({alive} node(s), {cpus:g} CPU)"

    def unplaceable(self, resources: TrialResources, workers: int = 1) -> tuple[str, str] | None:
        """("cpu" | "gpu" | "workers", why) when the cluster, as it is now, could never hold one
        trial of this shape (``workers`` actors of it at once): it would wait forever. None when it
        could, or while Ray is not connected (nothing to ask yet)."""
        if not ray.is_initialized():
            return None
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        fits = sum(min(int(n.get("CPU", 0) // resources.cpu) if resources.cpu > 0 else workers,
                       int(n.get("GPU", 0) // resources.gpu) if resources.gpu > 0 else workers) for n in nodes)
        if workers > 1 and any(n.get("CPU", 0) + 1e-9 >= resources.cpu for n in nodes) and fits < workers:
            return "workers", (f"a trial asks for {workers} workers of {resources.cpu:g} CPU and {resources.gpu:g} "
                               f"GPU each, but the Ray cluster holds at most {fits} at once; its trials would "
                               "never start (ask for fewer, or add nodes)")
        if any(n.get("CPU", 0) + 1e-9 >= resources.cpu and n.get("GPU", 0) + 1e-9 >= resources.gpu for n in nodes):
            return None
        never = "; its trials would never start (ask for less, or add a node that has it)"
        most_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
        if resources.gpu > most_gpu + 1e-9:
            return "gpu", (f"a trial asks for {resources.gpu:g} GPU but no node of the Ray cluster has more "
                           f"than {most_gpu:g}{never}")
        most_cpu = max((n.get("CPU", 0) for n in nodes if n.get("GPU", 0) + 1e-9 >= resources.gpu), default=0)
        beside = " with the GPUs asked for" if resources.gpu else ""
        return "cpu", (f"a trial asks for {resources.cpu:g} CPU but no node of the Ray cluster{beside} has "
                       f"more than {most_cpu:g}{never}")

    def prewarm(self, count: int, resources: TrialResources = TrialResources()) -> None:  # noqa: B008 - frozen
        """Start actors ahead of the first job, so it does not wait for torch to import."""
        with self._lock:
            count = min(count, self._capacity(resources) - self._live.get(resources, 0))
            self._live[resources] = self._live.get(resources, 0) + max(0, count)
        actors = [self._new_actor(resources) for _ in range(max(0, count))]
        ray.get([a.info.remote() for a in actors])
        with self._lock:
            self._idle.setdefault(resources, []).extend(actors)
            self._freed.notify_all()

    def shutdown(self) -> None:
        with self._lock:
            self._evict_idle()
            self._idle.clear()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False
        self._stop_joined()

    def _stop_joined(self) -> None:
        if self._joined is not None:
            self._joined.stop()
            self._joined = None

    def _new_actor(self, resources: TrialResources) -> Any:
        return TrialActor.options(num_cpus=resources.cpu, num_gpus=resources.gpu,
                                  max_concurrency=2).remote(resources.cpu, resources.gpu)

    def _capacity(self, resources: TrialResources) -> int:
        """How many actors of this shape the cluster can hold at once (re-read every few seconds:
        clusters grow and shrink)."""
        now = time.monotonic()
        if now - self._resources_at > 5.0:
            self._resources, self._resources_at = ray.cluster_resources(), now
        total = self._resources
        fits = int(total.get("CPU", 0) // resources.cpu) if resources.cpu > 0 else 1_000_000
        if resources.gpu > 0:
            fits = min(fits, int(total.get("GPU", 0) // resources.gpu))
        return max(1, fits)

    def _acquire(self, key: str, resources: TrialResources, count: int = 1) -> list[Any] | None:
        """``count`` actors of this shape at once (a data-parallel trial's workers; one otherwise):
        idle ones first, new ones while the cluster has room, or else wait until all of them can be
        had. All or none: two trials each holding a part of what they need would wait on each other
        for good. Never more actors than fit: an actor that cannot be placed would wait forever
        while idle ones hold the resources. None if the trial was stopped while waiting."""
        with self._lock:
            while True:
                if key in self._stopped:
                    self._stopped.discard(key)
                    return None
                pool = self._idle.setdefault(resources, [])
                new = count - min(len(pool), count)
                if new == 0 or (self._live.get(resources, 0) + new <= self._capacity(resources)
                                and self._fits_beside_live(resources, new)):
                    taken = [pool.pop() for _ in range(count - new)]
                    self._live[resources] = self._live.get(resources, 0) + new
                    break
                # Idle actors of another shape hold resources this one needs (a GPU job's actors
                # keep their CPUs while they wait for the next GPU trial).
                if self._evict_idle(keep=resources):
                    continue
                self._freed.wait(timeout=1.0)
        return taken + [self._new_actor(resources) for _ in range(new)]

    def _fits_beside_live(self, resources: TrialResources, count: int = 1) -> bool:
        """Whether ``count`` more actors of this shape fit in the cluster beside every live actor, of
        any shape, busy or idle (called under the lock, right after _capacity refreshed totals).
        With no live actor there is nothing to wait for: Ray places it, or an autoscaler adds a node."""
        if not any(self._live.values()):
            return True
        total = self._resources
        cpu = count * resources.cpu + sum(n * shape.cpu for shape, n in self._live.items())
        gpu = count * resources.gpu + sum(n * shape.gpu for shape, n in self._live.items())
        return cpu <= total.get("CPU", 0) + 1e-9 and gpu <= total.get("GPU", 0) + 1e-9

    def _evict_idle(self, keep: TrialResources | None = None) -> bool:
        """Kill the idle actors of every shape but ``keep`` (under the lock); True if there were any."""
        evicted = False
        for shape, actors in self._idle.items():
            if shape == keep or not actors:
                continue
            for a in actors:
                ray.kill(a)
            self._live[shape] = self._live.get(shape, 0) - len(actors)
            actors.clear()
            evicted = True
        return evicted

    def _release(self, resources: TrialResources, actor: Any) -> None:
        with self._lock:
            self._idle.setdefault(resources, []).append(actor)
            self._freed.notify_all()

    def _discard(self, resources: TrialResources, actor: Any) -> None:
        try:
            ray.kill(actor)
        except Exception:  # noqa: BLE001 - already dead
            pass
        with self._lock:
            self._live[resources] = self._live.get(resources, 0) - 1
            self._freed.notify_all()

    def run_trial(self, key: str, run: TrialRun) -> Iterator[dict]:
        """Yield each round's result dict (an epoch, or ``eval_every`` steps of a ``steps`` job)
        as the worker finishes it. With ``run.workers`` > 1 the trial is a data-parallel training
        over that many actors (one process group; rank 0's results are yielded, each carrying
        ``workers``: where every rank runs). Raises WorkerLost when any of them dies."""
        resources, workers = run.resources, run.workers
        actors = self._acquire(key, resources, workers)
        if actors is None:
            return
        with self._lock:
            self._running[key] = actors
        healthy, ended = True, False
        streams: list[Any] = []
        others: _Drain | None = None
        try:
            ranks: list[dict[str, Any]] = []
            rendezvous = None
            if workers > 1:
                ranks = ray.get([a.info.remote() for a in actors])
                rendezvous = ray.get(actors[0].rendezvous.remote())
            streams = [actor.run_batches.options(num_returns="streaming").remote(key, run, rank, rendezvous)
                       for rank, actor in enumerate(actors)]
            # The other ranks' results are not needed, but their streams are read as they come: a
            # rank's stream left unread until the trial ended was seen to never end.
            others = _Drain(streams[1:]) if len(streams) > 1 else None
            for ref in streams[0]:
                for result in ray.get(ref):
                    if ranks:
                        result["workers"] = [{"rank": i, "node": r["node"], "pid": r["pid"]}
                                             for i, r in enumerate(ranks)]
                    yield result
            ended = True  # read to its end: the worker is done with this trial
        except (ActorDiedError, RayActorError, WorkerCrashedError) as exc:
            healthy = False
            raise WorkerLost.of(exc) from exc
        except Exception as exc:
            # A data-parallel rank that died breaks its peers' collectives: that is a lost worker.
            if workers > 1 and (lost := self._lost_rank(actors)) is not None:
                healthy = False
                raise WorkerLost(f"a data-parallel worker died: {lost}") from exc
            raise
        finally:
            with self._lock:
                self._running.pop(key, None)
            if healthy and not (ended and others is None):
                # The caller may have stopped reading early (pruned, cancelled): let the actors
                # finish this trial before they take another.
                for actor in actors:
                    actor.stop.remote(key)
                deadline = time.monotonic() + DRAIN_SECONDS
                healthy = all(d.ended(max(0.0, deadline - time.monotonic()))
                              for d in (None if ended else _Drain(streams[:1]), others) if d is not None)
            for actor in actors:
                if healthy:
                    self._release(resources, actor)
                else:
                    self._discard(resources, actor)

    @staticmethod
    def _lost_rank(actors: list[Any]) -> str | None:
        """Why one of the actors is gone, or None when all of them answer."""
        for actor in actors:
            try:
                ray.get(actor.info.remote(), timeout=30)
            except (ActorDiedError, RayActorError, WorkerCrashedError, ray.exceptions.GetTimeoutError) as exc:
                return WorkerLost.of(exc).args[0] if str(exc) else type(exc).__name__
        return None

    def run_range_test(self, key: str, run: RangeTestRun) -> dict | None:
        """A range test on a pooled actor: the RangeTestResult as a dict (with ``node``), or None
        if the trial was stopped before it got an actor. Raises WorkerLost. A range test is short
        (``num_steps`` batches): it is not streamed, stopped or checkpointed midway."""
        resources = run.resources
        acquired = self._acquire(key, resources)
        if acquired is None:
            return None
        actor, healthy = acquired[0], True
        try:
            return ray.get(actor.range_test.remote(run))
        except (ActorDiedError, RayActorError, WorkerCrashedError) as exc:
            healthy = False
            raise WorkerLost.of(exc) from exc
        finally:
            if healthy:
                self._release(resources, actor)
            else:
                self._discard(resources, actor)

    def resume(self, key: str) -> None:
        """Let trial ``key``, paused at a decision epoch, go on (every worker of it)."""
        with self._lock:
            actors = self._running.get(key, [])
        for actor in actors:
            actor.resume.remote(key)

    def stop(self, key: str) -> None:
        """Ask the workers running trial ``key`` to stop at their next epoch boundary."""
        with self._lock:
            actors = self._running.get(key)
            if actors is None:
                self._stopped.add(key)  # still waiting for an actor: it will not start
                self._freed.notify_all()
        for actor in actors or []:
            actor.stop.remote(key)
