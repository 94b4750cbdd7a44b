"""Run a Dataset's stages: pipelined (Ray-style streaming) or bulk (Spark-style, stage by stage).

One loop does both, in a thread of the driver: it launches work (a task per block, or a call to an actor of the
stage's pool), waits for any of it to finish (each ref reports itself: ``ObjectRef.on_done``), and hands each
finished block to the next stage or to
the consumer. The two modes differ in one rule only:

- **pipelined**: a block moves on as soon as it exists. Backpressure: a stage starts no more blocks while its
  running blocks plus its finished blocks not yet taken downstream reach ``data.max-blocks-per-operator``, or those
  finished blocks hold ``data.max-bytes-per-operator``. A slow consumer therefore stops the sources, and memory
  stays bounded by those limits, not by the dataset's size.
- **bulk**: a stage starts only when every stage before it has finished, and then starts all its blocks.

All-to-all stages and ``limit`` need what comes before them (a barrier in both modes; ``limit`` stops the stages
before it once it has its rows). Stopping the execution (the consumer broke off, raised or was interrupted)
cancels what runs and kills the stage actors: nothing keeps running.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence

import labcluster as lc
import labcluster.data.tasks as tasks

from .. import config
from ..api import feasibility, scopes
from ..api.actors import kill
from ..api.calls import call
from ..api.fetching import no_workers
from ..api.refs import ObjectRef
from ..api.runner import task_name
from ..api.start import current_session
from ..api.submit import stage as in_stage
from ..cluster.info import sum_resources
from ..exceptions import LabclusterError
from .context import check_mode
from .fitting import Workers, fit_pools, request_of, room, without_holders
from .plan import AllToAll, Limit, Stage
from .progress import WATCH_EVERY, StageStats, current_watcher
from .reports import BlockReports, block_id
from .runs import Item, _Actor, _StageRun

#: calls in flight per actor of a pool: those after the first wait at the actor, their blocks fetched already
CALLS_PER_ACTOR = 2
#: how long the loop waits for a finished block before it looks again at the consumer and at stop requests
_TICK = 0.05
#: how long without a finished block before the loop asks whether the cluster still has workers
_STALL_CHECK = 1.0


class Execution:
    """One run of a plan's stages. Iterate :meth:`outputs` for the finished blocks of the last stage."""

    def __init__(self, source_items: Sequence[Item], stages: Sequence[Stage], *, mode: str, preserve_order: bool,
                 max_blocks: int | None, max_bytes: int) -> None:
        check_mode(mode)
        self.session = current_session()
        self.id = uuid.uuid4().hex[:12]
        self.reports = self.session.part(BlockReports)
        self.topic = self.reports.topic  # what the tasks report their blocks on
        self.mode, self.preserve_order = mode, preserve_order
        self.max_blocks, self.max_bytes = max_blocks, max_bytes
        self.runs = [_StageRun(s, i, self) for i, s in enumerate(stages)]
        self.source_items = list(source_items)
        self._out: queue.Queue[Item | BaseException | None] = queue.Queue()
        self._out_blocks = 0  # in the queue or being consumed (the last stage's held blocks)
        self._stop = threading.Event()
        #: finished refs with their stage, put by each ref's on_done
        self._done: queue.SimpleQueue[tuple[_StageRun, ObjectRef]] = queue.SimpleQueue()
        self._progress_at = time.perf_counter()
        self._thread: threading.Thread | None = None
        self._emit_buffer: dict[int, Item] = {}
        self._emit_next = 0
        self.started = self.ended = 0.0
        #: how it ended, once it has: "done", "stopped" (the consumer stopped early, or was interrupted), "failed"
        self.outcome: str | None = None
        self.peak_bytes = 0
        self.live_bytes = 0
        #: the key of every task and actor call it started: its rows of the task records
        self.keys: set[str] = set()
        #: a union's parts, run before it (their blocks are its source)
        self.parts: list[Execution] = []
        #: the workers' held result bytes (scheduler's count): at start, and the peak while it ran
        self.managed_start = self.managed_peak = 0
        self.first_output: float | None = None
        self._resources = self._check_feasible()
        if self.session.part(feasibility.Feasible).simulated_gpus:  # what its stats say a GPU stage ran on
            for run in self.runs:
                if run.stage.kind == "map" and run.stage.resources.num_gpus:
                    run.stats.resources = run.stage.resources.label(simulated_gpus=True)
        self.watcher = current_watcher()
        self._watched = 0.0
        #: blocks each stage will make, where known before it runs (None: unknown, e.g. after a limit)
        self.totals: list[int | None] = self._totals()

    def _totals(self) -> list[int | None]:
        out: list[int | None] = []
        count: int | None = len(self.source_items)
        for run in self.runs:
            op = run.stage.op
            if run.stage.kind == "all_to_all" and isinstance(op, AllToAll):
                count = op.num_outputs or count
            elif run.stage.kind == "limit":
                count = None
            out.append(count)
        return out

    def _watch(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.watcher is not None and (force or now - self._watched >= WATCH_EVERY):
            self._watched = now
            with contextlib.suppress(Exception):  # a broken progress bar must not break the run
                self.watcher(self)

    # -- set-up ----------------------------------------------------------------------------------------------------
    def _check_feasible(self) -> dict[str, float]:
        """Fail before anything runs when a stage asks for what the cluster cannot ever give, or its actor pools
        cannot be held (``fitting``); returns what the cluster's workers have (one round trip for all)."""
        requests = [(request_of(run.stage), f"dataset operator {run.stage.name!r}")
                    for run in self.runs if run.stage.kind == "map"]
        workers = feasibility.check_all(self.session, requests)
        if workers is None:  # no extension: Dask's own totals, and no pool is checked
            return lc.cluster_resources()
        stages = [run.stage for run in self.runs]
        left: Workers = workers
        held: list[str] = []
        if any(stage.kind == "map" and stage.actors for stage in stages):  # what other work holds is not ours
            client = self.session.client
            left, held = without_holders(workers, call(client, "actor_list") or [], call(client, "pg_table") or {})
        # a pool no worker could ever hold was warned about already (infeasible: warn): no second warning for it
        never = {i for i, st in enumerate(stages)
                 if st.kind == "map" and st.actors and room(request_of(st), workers) == 0}
        for position, cap in fit_pools(stages, left, held, skip=never).items():
            self.runs[position].pool_cap = cap
        return sum_resources(res for _, res in workers)

    def slots_for(self, stage: Stage) -> int:
        """How many blocks of ``stage`` the cluster can run at once (its scarcest resource)."""
        r = stage.resources
        asks = {"CPU": r.num_cpus, "GPU": r.num_gpus, **dict(r.resources)}
        counts = [self._resources.get(k, 0.0) / v for k, v in asks.items() if v]
        return int(min(counts)) if counts else 1

    def _make_remote(self, run: _StageRun) -> None:
        stage = run.stage
        name = stage.name
        if stage.actors:
            attrs = {"__module__": tasks.__name__, "_labcluster_sources": tasks.step_sources(stage.steps)}
            cls = type(_class_name(name), (tasks.StageActor,), attrs)
            restarts = int(config.get("data.actor-max-restarts"))
            run.remote = lc.remote(**stage.resources.options(), max_restarts=restarts,
                                   max_task_retries=restarts)(cls)
        elif stage.kind == "map":
            run.remote = lc.remote(**stage.resources.options())(tasks.StageTask(stage.steps, self.topic, name))

    def _start_pools(self) -> None:
        """Start each actor pool's smallest size (a pool the first launch needed has one already: ``_free_actor``)."""
        for run in self.runs:
            if run.stage.actors:
                low, _ = run.stage.pool_size()
                while len(run.actors) < low:
                    self._add_actor(run)

    def _add_actor(self, run: _StageRun) -> None:
        with in_stage(run.stage.name):
            run.actors.append(_Actor(run.remote.remote(run.stage.steps, self.topic)))

    # -- the loop ------------------------------------------------------------------------------------------------
    def start(self, began: float | None = None) -> Execution:
        """Run it (in a thread); ``began``: when its run began, if before now (a union's parts ran first)."""
        self.reports.open(self.id)
        self.started = time.perf_counter() if began is None else began
        first = self.runs[0] if self.runs else None
        if first is None:  # no stage (a union of parts, as they are): its blocks are its output
            for item in self.source_items:
                self._emit(item)
            self._out.put(None)
            self.ended, self.outcome = time.perf_counter(), "done"
            return self
        if first.stage.kind == "all_to_all":  # blocks held already (materialized, a union) straight into a sort
            first.gathered.extend(self.source_items)
            self.live_bytes += sum(item.nbytes for item in self.source_items)  # it lets go of them when it runs
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        else:
            first.inputs.extend(self.source_items)
        first.upstream_done = True
        for run in self.runs:
            self._make_remote(run)
        scopes.started_execution(self)  # a notebook cell's interrupt stops it
        # the loop runs in this context: its tasks carry the scope of the cell that started it (what they print
        # goes to that cell), while a later cell runs
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._loop,), name=f"labcluster-data-{self.id}",
                                        daemon=True)
        self._thread.start()
        return self

    def _watch_memory(self, stop: bool = False) -> None:
        """The workers' held bytes: the scheduler keeps the peak since the watch began (no polling from here). It
        begins with a message sent ahead of the first task (no round trip); the end's reply says both figures."""
        if not stop:
            self.session.send("memory_watch", id=self.id)
            return
        reply = call(self.session.client, "memory_watch", id=self.id, stop=True)
        self.managed_start, self.managed_peak = int(reply.get("start", reply["now"])), int(reply["peak"])

    def _loop(self) -> None:
        try:
            self._watch_memory()
            self._launch()
            self._start_pools()  # after the first launch: the first blocks do not wait for actors to be made
            while not self._stop.is_set():
                self._watch()
                self._launch()
                self._stop_finished_actors()  # after the launch: a barrier's next stage waits for no kill
                if all(run.finished for run in self.runs):
                    break
                if any(run.running for run in self.runs):
                    done = self._next_done()
                    for run, ref in done:
                        if ref in run.running:  # not cancelled meanwhile (a limit that has its rows)
                            self._finish(run, ref)
                    self._check_progress(bool(done))
                else:
                    self._stop.wait(_TICK / 5)
                self._close_finished()
            for index in sorted(self._emit_buffer):  # what a limit left behind a gap
                self._out.put(self._emit_buffer.pop(index))
            self._out.put(None)
            self.outcome = "done" if all(run.finished for run in self.runs) else "stopped"
        except BaseException as e:  # the consumer raises it; nothing is left running
            self.outcome = "failed"
            self._out.put(e)
        finally:
            self.ended = time.perf_counter()
            self._shutdown_work()
            # after the work is stopped (a scheduler slow to answer holds nothing up); ending a watch that never
            # began is harmless
            with contextlib.suppress(Exception):  # a lost scheduler: the run's own error says so
                self._watch_memory(stop=True)
            self._watch(force=True)

    def _track(self, run: _StageRun, ref: ObjectRef, item: Item, block_id: str) -> None:
        """``ref`` runs ``item`` for ``run``; it reports itself to the loop when it is done."""
        run.running[ref] = (item, block_id)
        self.keys.add(ref.key)
        ref.on_done(lambda ref: self._done.put((run, ref)))

    def _next_done(self) -> list[tuple[_StageRun, ObjectRef]]:
        """The refs that finished since the last look (waits up to a tick for the first)."""
        try:
            out = [self._done.get(timeout=_TICK)]
        except queue.Empty:
            return []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def _check_progress(self, moved: bool) -> None:
        """Nothing finished for a while: a cluster with no workers left (and none coming) will never finish it."""
        now = time.perf_counter()
        if moved:
            self._progress_at = now
        elif now - self._progress_at > _STALL_CHECK:
            self._progress_at = now
            no_workers(self.session)

    def _launch(self) -> None:
        # downstream first: finishing blocks frees budget for the stages before
        for run in reversed(self.runs):
            if self.mode == "bulk" and not all(r.finished for r in self.runs[:run.position]):
                continue
            if run.stage.kind == "limit":
                self._pass_limit(run)
                continue
            if run.stage.kind == "all_to_all":
                if run.upstream_done and not run.launched:
                    self._launch_all_to_all(run)
                continue
            if run.stage.actors:  # a call each, to the actor with the fewest running
                while run.inputs and self._may_start(run):
                    self._start_call(run, run.inputs.popleft())
            else:  # every block that may start now, in one submission
                batch: list[Item] = []
                while run.inputs and self._may_start(run, pending=len(batch)):
                    batch.append(run.inputs.popleft())
                self._start_tasks(run, batch)

    def _may_start(self, run: _StageRun, pending: int = 0) -> bool:
        """Whether one more block of ``run`` may start, ``pending`` more of its tasks being about to start. (A
        task that goes ahead to the next stage adds one to that stage's inputs and one to ``ahead``, which cancel.)"""
        if self.mode == "bulk":
            return self._free_actor(run) is not None if run.stage.actors else True
        if run.stage.actors and self._free_actor(run) is None:
            return False
        running = len(run.running) + pending
        if run.stage.concurrency and not run.stage.actors and running >= run.slots():
            return False
        if running + self._held(run) - len(run.ahead) >= run.budget():
            return False
        return run.held_bytes < self.max_bytes

    def _held(self, run: _StageRun) -> int:
        return run.held_blocks if run is not self.runs[-1] else self._out_blocks

    def _free_actor(self, run: _StageRun) -> _Actor | None:
        free = [a for a in run.actors if a.running < CALLS_PER_ACTOR]
        if not free:
            if len(run.actors) < run.pool_cap and run.inputs:  # a backlog: one more actor, up to the range's top
                self._add_actor(run)
                return run.actors[-1]
            return None
        return min(free, key=lambda a: a.running)

    def _start_call(self, run: _StageRun, item: Item) -> None:
        block_id = self._block_id(run, item.index)
        actor = self._free_actor(run)
        assert actor is not None
        actor.running += 1
        with in_stage(run.stage.name):
            ref = actor.handle.process.remote(item.read, item.ref, item.index, block_id)
        run.running_actor[ref] = actor
        self._started(run, item, ref, block_id)

    def _start_tasks(self, run: _StageRun, items: Sequence[Item]) -> None:
        if not items:
            return
        block_ids = [self._block_id(run, item.index) for item in items]
        with in_stage(run.stage.name):
            refs = run.remote.remote_many([(item.read, item.ref, item.index, name)
                                           for item, name in zip(items, block_ids, strict=True)])
        nxt = self.runs[run.position + 1] if run.position + 1 < len(self.runs) else None
        ahead = self.mode == "pipelined" and nxt is not None and nxt.stage.kind == "map"
        for item, ref, name in zip(items, refs, block_ids, strict=True):
            self._started(run, item, ref, name, ahead)

    def _started(self, run: _StageRun, item: Item, ref: ObjectRef, block_id: str, ahead: bool = False) -> None:
        self._track(run, ref, item, block_id)
        if ahead:  # a task's block can go on before it exists (not an actor's: passing a pending call waits for it)
            early = Item(item.index, ref, parent=item if item.source or item.parent else None)
            run.ahead[ref] = early
            self._hand_on(run, early)
        stats = run.stats
        if stats.first_start is None:
            stats.first_start = time.perf_counter() - self.started
        stats.max_in_flight = max(stats.max_in_flight, len(run.running))  # submitted: Dask queues what waits
        stats.max_out = max(stats.max_out, len(run.running) + self._held(run))
        if self.mode == "pipelined" and run.stage.kind == "map":
            stats.bound = run.budget()

    def _finish(self, run: _StageRun, ref: ObjectRef) -> None:
        item, block_id = run.running.pop(ref)
        actor = run.running_actor.pop(ref, None)
        if actor is not None:
            actor.running -= 1
        if ref.state != "finished":
            try:
                lc.get(ref, timeout=30)  # raises the task's error (its type, remote traceback and operator note)
            except lc.exceptions.ObjectLostError:
                if item.source is None:
                    raise
                self._remake(run, item)
                return
            raise LabclusterError(f"dataset operator {run.stage.name!r}: block {item.index} ended {ref.state}")
        meta = self.reports.wait(self.id, block_id)
        self._release(item, run.position - 1)
        ahead = run.ahead.pop(ref, None)
        out = ahead or Item(item.index, ref, source=item if run.stage.actors else None,
                            parent=item if not run.stage.actors and (item.source or item.parent) else None)
        out.rows, out.nbytes = meta["rows"], meta["bytes"]
        stats = run.stats
        stats.blocks += 1
        stats.rows += out.rows or 0
        stats.bytes += out.nbytes
        stats.task_wall += meta["wall"]
        stats.task_cpu += meta["cpu"]
        stats.last_end = time.perf_counter() - self.started
        if ahead is None:
            self._hand_on(run, out)
        elif not ahead.released:  # handed on when it started: now its bytes are known
            self.live_bytes += out.nbytes
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            run.held_bytes += out.nbytes

    def _remake(self, run: _StageRun, item: Item) -> None:
        """``item``, an actor's block, was lost with its worker before ``run`` used it: the actor stage makes it
        again from its input (the actor restarted elsewhere or on the new worker)."""
        assert item.source is not None
        producer = self.runs[run.position - 1]
        self._release(item, producer.position)
        producer.inputs.appendleft(item.source)
        producer.finished = run.upstream_done = False  # it has one more block to make (its pool grows back)

    def _hand_on(self, run: _StageRun, out: Item) -> None:
        """A finished block of ``run``: to the next stage, or out to the consumer."""
        self.live_bytes += out.nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        if run.position + 1 < len(self.runs):
            nxt = self.runs[run.position + 1]
            if nxt.stage.kind == "all_to_all":  # a barrier holds every block anyway: no backpressure on it
                nxt.gathered.append(out)
                return
            run.held_blocks += 1
            run.held_bytes += out.nbytes
            nxt.inputs.append(out)
        else:
            self._out_blocks += 1
            self._emit(out)

    def _release(self, item: Item, producer: int) -> None:
        """The input block of a finished task is no longer needed here."""
        if item.ref is None or producer < 0:
            return
        item.released = True
        self.live_bytes -= item.nbytes
        prev = self.runs[producer]
        prev.held_blocks -= 1
        prev.held_bytes -= item.nbytes

    def _emit(self, item: Item) -> None:
        if self.first_output is None:
            self.first_output = time.perf_counter() - self.started
        if not self.preserve_order:
            self._out.put(item)
            return
        self._emit_buffer[item.index] = item
        while self._emit_next in self._emit_buffer:
            self._out.put(self._emit_buffer.pop(self._emit_next))
            self._emit_next += 1

    def _close_finished(self) -> None:
        for i, run in enumerate(self.runs):
            if run.finished or not run.upstream_done or run.inputs or run.running:
                continue
            if run.stage.kind == "all_to_all" and not run.launched:
                continue
            run.finished = True
            if i + 1 < len(self.runs):
                self.runs[i + 1].upstream_done = True

    def _stop_finished_actors(self) -> None:
        """Kill the actors of the stages that have finished (a scheduler round trip each)."""
        for run in self.runs:
            if run.finished and run.actors:
                self._stop_actors(run, "its dataset stage finished")

    # -- all-to-all and limit --------------------------------------------------------------------------------------
    def _launch_all_to_all(self, run: _StageRun) -> None:
        run.launched = True
        if not run.gathered:
            return
        op = run.stage.op
        assert isinstance(op, AllToAll)
        parts = sorted(run.gathered, key=lambda it: it.index)
        n = op.num_outputs or len(parts)
        with in_stage(run.stage.name):
            whole = lc.remote(tasks.all_to_all).options(name=_class_name(run.stage.name)).remote(
                op.fn, op.args, n, *[p.ref for p in parts])
            for i in range(n):
                block_id = self._block_id(run, i)
                ref = lc.remote(tasks.pick).options(name=_class_name(run.stage.name)).remote(
                    whole, i, block_id, self.topic)
                self._track(run, ref, Item(i), block_id)
        self.live_bytes -= sum(p.nbytes for p in parts)
        run.gathered = []
        run.stats.first_start = time.perf_counter() - self.started

    def _pass_limit(self, run: _StageRun) -> None:
        op = run.stage.op
        assert isinstance(op, Limit)
        if self.preserve_order:  # the first rows in the dataset's order: take blocks by index only
            waiting = {it.index: it for it in run.inputs}
            run.inputs.clear()
            while run.limit_next in waiting:
                run.inputs.append(waiting.pop(run.limit_next))
                run.limit_next += 1
            ready, run.inputs = list(run.inputs), deque(sorted(waiting.values(), key=lambda it: it.index))
        else:
            ready, run.inputs = list(run.inputs), deque()
        for item in ready:
            left = op.n - run.limit_rows
            if left <= 0:
                self._release(item, run.position - 1)
                continue
            rows = item.rows or 0
            if rows <= left:
                run.limit_rows += rows
                self._release(item, run.position - 1)
                run.stats.blocks += 1
                run.stats.rows += rows
                self._hand_on(run, Item(item.index, item.ref, rows=rows, nbytes=item.nbytes))
            else:
                block_id = self._block_id(run, item.index)
                with in_stage(run.stage.name):
                    ref = lc.remote(tasks.slice_block).options(name="Limit").remote(
                        item.ref, left, block_id, self.topic)
                self._track(run, ref, item, block_id)
                run.limit_rows = op.n
        if run.limit_rows >= op.n:
            for item in run.inputs:  # blocks behind the limit's rows
                self._release(item, run.position - 1)
            run.inputs.clear()
            if not run.upstream_done:
                self._cut_before(run.position)

    def _cut_before(self, position: int) -> None:
        """``limit`` has its rows: the stages before it stop, and what they run is cancelled."""
        for run in self.runs[:position]:
            run.inputs.clear()
            for ref in list(run.running):
                with contextlib.suppress(Exception):
                    lc.cancel(ref)
            run.running.clear()
            run.gathered = []
            run.launched = True
            run.upstream_done = True
        self.runs[position].upstream_done = True

    def _block_id(self, run: _StageRun, index: int) -> str:
        return block_id(self.id, run.position, index)

    # -- the consumer's side -------------------------------------------------------------------------------------
    def outputs(self, timeout: float | None = None) -> Iterator[Item]:
        """The last stage's blocks as they finish (in order with ``preserve_order``); stops the execution when
        the consumer stops early."""
        try:
            while True:
                try:
                    got = self._out.get(timeout=timeout)
                except queue.Empty:
                    raise lc.exceptions.GetTimeoutError(0, 0, timeout or 0) from None
                if got is None:
                    return
                if isinstance(got, BaseException):
                    raise got.with_traceback(None)
                try:
                    yield got
                finally:
                    self._out_blocks -= 1
                    self.live_bytes -= got.nbytes
        finally:
            self.stop()

    @property
    def running(self) -> bool:
        """Whether its loop still runs (it has not finished, failed or been stopped)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop: cancel what runs, kill the stage actors, drop its blocks' reports (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self.reports.forget(self.id)

    def _stop_actors(self, run: _StageRun, why: str) -> None:
        for actor in run.actors:
            with contextlib.suppress(Exception):
                kill(actor.handle, _reason=f"{why} ({run.stage.name})")
        run.actors = []

    def _shutdown_work(self) -> None:
        for run in self.runs:
            for ref in list(run.running):
                with contextlib.suppress(Exception):
                    lc.cancel(ref)
            run.running.clear()
            self._stop_actors(run, "its dataset execution stopped")

    @property
    def stats(self) -> list[StageStats]:
        return [run.stats for run in self.runs]


def _class_name(stage_name: str) -> str:
    return task_name(stage_name.replace("->", "_"))
