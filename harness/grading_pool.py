"""`GradingPool`: graders in worker processes, with a hard per-item time limit, memoised and gold-sharded.

math-verify's own timeout uses SIGALRM, which only works in a main thread and only interrupts Python code,
not a long call into C, while sympy can work for minutes on one answer (`9^{9^{9^9}}`). The parent enforces
a hard per-item limit by killing the worker. A verdict must not depend on how loaded the machine was, so an
item that hits the limit is graded again once with a longer one (`retry_timeout_s`) before it is final; a
final timeout is graded wrong but recorded as a timeout, not memoised as a verdict. Answers whose shape alone
says they are not the gold and would cost minutes (`harness.grading.screen`) never reach a worker.

It stands on harness.grading (the graders, looked up by name in the workers); grading knows nothing of the pool.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import wait

from harness.grading import (
    ABSOLUTE_REASONS,
    grade_safely,
    load_parsers,
    resolve_grader,
    screen,
    speed_up_parsing,
)

logger = logging.getLogger("harness.grading")  # one logger for all of grading, as before the split

GradeRequest = tuple[str, Sequence[str], "str | None"]  # (grader name, golds, extracted answer or None)

_READY = "ready"
# Address space a worker may use. An innocent-looking answer can ask sympy for gigabytes ((x+1)^{1000000}
# took 1.17 GB); under the cap it fails with MemoryError and is graded wrong in well under its time limit.
WORKER_MEMORY_CAP_BYTES = 1 << 30


def _worker_limits(die_with_parent: bool) -> None:
    """Cap the worker's memory, and have the kernel kill it when its parent dies (a SIGKILLed evaluation
    must not leave graders running at 100% CPU). Linux; elsewhere the pool's own shutdown is all there is."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_CAP_BYTES, WORKER_MEMORY_CAP_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    if not die_with_parent:
        return
    try:
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
        os._exit(1)


def _worker_main(conn, die_with_parent: bool = True) -> None:
    """Grade chunks of (index, grader, golds, answer) items, reporting each verdict as soon as it is known,
    so the parent can time every item separately while paying one round trip per chunk. The parse caches
    in harness.grading live as long as the worker, i.e. across batches."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _worker_limits(die_with_parent)
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # the pool reports timeouts itself
    speed_up_parsing()
    load_parsers()
    conn.send(_READY)
    while True:
        try:
            chunk = conn.recv()
        except EOFError:
            return
        if chunk is None:
            return
        for index, grader, golds, answer in chunk:
            conn.send((index, grade_safely(grader, golds, answer)))


class _Worker:
    def __init__(self, context):
        self.conn, child_conn = context.Pipe()
        # PR_SET_PDEATHSIG fires when the creating *thread* ends: only the main thread lives as long as the
        # process, so a pool made elsewhere relies on its own shutdown.
        on_main_thread = threading.current_thread() is threading.main_thread()
        self.process = context.Process(target=_worker_main, args=(child_conn, on_main_thread), daemon=True,
                                       name="harness-grader")
        self.process.start()
        child_conn.close()
        self.ready = False
        self.started = time.monotonic()
        self.inflight: deque = deque()  # (index, key) in the order the worker grades them
        self.item_started = 0.0

    def stop(self, kill: bool) -> None:
        if not kill:
            try:
                self.conn.send(None)
            except OSError:
                kill = True
        if kill:
            self.process.kill()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class GradingPool:
    """Grades batches of (grader, golds, answer) in worker processes with a hard per-item time limit.

    Throughput comes from not grading: verdicts are memoised by (grader, golds, answer) for the pool's
    lifetime (sampled models repeat answers), a batch is deduplicated before dispatch, and None answers
    are wrong without dispatch. What is left is sharded by golds: every request for one golds tuple goes
    to the same worker slot, this batch and later ones, so each gold is parsed (and its sympy work cached)
    in one worker rather than in all; only an idle worker with nothing of its own left takes work from
    another's queue, so the last items of a batch do not wait on one busy worker. Each worker reports
    every item, and the parent kills a worker whose current item has run past `timeout_s`, sets that item
    aside for one retry at `retry_timeout_s` (after which it is wrong for this call, recorded as a timeout,
    not memoised), and resubmits the rest of its chunk to a fresh worker in the same slot. Answers whose last
    grading timed out (`timed_out_answers`) are not tried again by clustering.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0, chunk_size: int = 32,
                 start_method: str = "spawn", startup_timeout_s: float = 120.0, retry_timeout_s: float | None = None):
        self.num_workers = workers or min(2, os.cpu_count() or 1)
        self.timeout_s = timeout_s
        self.retry_timeout_s = retry_timeout_s if retry_timeout_s is not None else 4 * timeout_s
        self._limit_s = timeout_s  # the limit of the pass under way: timeout_s, or retry_timeout_s on a retry
        self._retrying = False
        self._to_retry: list[tuple] = []
        self.chunk_size = chunk_size
        self.startup_timeout_s = startup_timeout_s
        # spawn, not fork: the parent may hold torch threads and CUDA state a forked child must not touch.
        self._context = multiprocessing.get_context(start_method)
        self._workers: list[_Worker] = []  # slot i's current worker; a replacement takes over the slot
        self._slot_of_golds: dict[tuple[str, ...], int] = {}  # the shard, kept for the pool's lifetime
        self._memo: dict[tuple, bool] = {}
        # Requests whose last grading failed, retry included: hit the limit, or the worker died. Not verdicts:
        # they are not memoised, so a later batch grades them again.
        self.timed_out: set[tuple] = set()
        self.failed: set[tuple] = set()
        self.rejected_answers: dict[str, str] = {}  # screened out before dispatch -> why (harness.grading.screen)
        self._failed_starts = 0
        self.stats = {"requests": 0, "no_answer": 0, "dispatched": 0, "screened": 0, "retried": 0, "timeouts": 0,
                      "errors": 0, "worker_restarts": 0, "stolen": 0}

    @property
    def timed_out_answers(self) -> set[str]:
        return {key[2] for key in self.timed_out}

    @property
    def unusable_answers(self) -> set[str]:
        """Answers not worth comparing again: they timed out or were screened out."""
        return self.timed_out_answers | {a for a, why in self.rejected_answers.items() if why in ABSOLUTE_REASONS}

    def is_timeout(self, grader: str, golds, answer: str | None) -> bool:
        """Whether this request's verdict (wrong) comes from hitting the time limit, not from the grader."""
        return self.grading_failure(grader, golds, answer) == "timeout"

    def grading_failure(self, grader: str, golds, answer: str | None) -> str | None:
        """"timeout" or "error" (the worker died) where this request's last grading failed, else None."""
        if answer is None:
            return None
        key = (grader, tuple(golds), answer)
        return "timeout" if key in self.timed_out else "error" if key in self.failed else None

    def start(self) -> None:
        """Start every worker now (each imports sympy and math-verify, seconds), so later timings hold only
        grading."""
        self.grade([("math", ("2",), "\\sqrt{4}")])

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            worker.stop(kill=False)
        self._workers = []

    def grade(self, requests: Sequence[GradeRequest], retry: bool = True) -> list[bool]:
        """Verdicts in request order. `retry`: an item that hits the limit is graded once more with the longer
        limit before it is final (clustering, which only asks whether two answers are one, passes False)."""
        keys: list[tuple | None] = []
        todo: dict[tuple, None] = {}
        for grader, golds, answer in requests:
            if answer is None:
                keys.append(None)
                continue
            key = (grader, tuple(golds), answer)
            keys.append(key)
            if key in self._memo or key in todo:
                continue
            why = screen(grader, key[1], answer)
            if why is not None:
                self._memo[key] = False
                self.rejected_answers[answer] = why
                self.stats["screened"] += 1
                continue
            todo[key] = None
        self.stats["requests"] += len(keys)
        self.stats["no_answer"] += keys.count(None)
        for grader in {key[0] for key in todo}:
            resolve_grader(grader)  # a misspelt grader fails here, not as an all-wrong run
        final: dict[tuple, bool] = {}  # this call's failed requests: wrong here, not memoised
        if todo:
            self.stats["dispatched"] += len(todo)
            self._dispatch(list(todo))
            failures, self._to_retry = self._to_retry, []
            if failures and retry:
                self.stats["retried"] += len(failures)
                self._limit_s, self._retrying = self.retry_timeout_s, True
                try:
                    self._dispatch([key for key, _ in failures])
                finally:
                    self._limit_s, self._retrying = self.timeout_s, False
                failures, self._to_retry = self._to_retry, []
            for key, why in failures:
                final[key] = False
                if why == "timed out":
                    self.timed_out.add(key)
                    self.stats["timeouts"] += 1
                else:
                    self.failed.add(key)
                    self.stats["errors"] += 1
        return [key is not None and final.get(key, self._memo.get(key, False)) for key in keys]

    def _shard(self, keys: list[tuple]) -> list[deque]:
        """One queue per slot. Golds seen before keep their slot; new golds go to the slot with the least
        work queued so far, which balances a batch of many golds to within a few items' cost."""
        queues = [deque() for _ in range(self.num_workers)]
        for index, key in enumerate(keys):
            slot = self._slot_of_golds.get(key[1])
            if slot is None:
                slot = min(range(self.num_workers), key=lambda s: len(queues[s]))
                self._slot_of_golds[key[1]] = slot
            queues[slot].append((index, key))
        return queues

    def _dispatch(self, keys: list[tuple]) -> None:
        queues = self._shard(keys)
        while any(queues) or any(w.inflight for w in self._workers):
            while len(self._workers) < self.num_workers:
                self._workers.append(_Worker(self._context))
            now = time.monotonic()
            for slot, worker in enumerate(self._workers):
                if worker.ready and not worker.inflight and any(queues):
                    queue = queues[slot]
                    if not queue:  # its shard is done: take the back half of the longest queue
                        longest = max(queues, key=len)
                        queue.extendleft(longest.pop() for _ in range(max(1, len(longest) // 2)))
                        self.stats["stolen"] += len(queue)
                    # Small chunks near the end keep both workers busy until the batch is done.
                    remaining = sum(map(len, queues))
                    size = max(1, min(self.chunk_size, -(-remaining // self.num_workers)))
                    chunk = [queue.popleft() for _ in range(min(size, len(queue)))]
                    worker.conn.send([(index, *key) for index, key in chunk])
                    worker.inflight.extend(chunk)
                    worker.item_started = now
            waiting = [w for w in self._workers if w.inflight or not w.ready]
            deadline = min(self._deadline(w) for w in waiting)
            for conn in wait([w.conn for w in waiting], timeout=max(0.0, deadline - time.monotonic())):
                self._receive(next(w for w in waiting if w.conn is conn), queues)
            now = time.monotonic()
            for worker in [w for w in self._workers if (w.inflight or not w.ready) and now > self._deadline(w)]:
                if worker.conn.poll():  # its answer arrived after the wait: read it rather than kill it
                    self._receive(worker, queues)
                    if worker not in self._workers or time.monotonic() <= self._deadline(worker):
                        continue
                self._replace(worker, queues, "timed out")

    def _deadline(self, worker: _Worker) -> float:
        if not worker.ready:
            return worker.started + self.startup_timeout_s
        return worker.item_started + self._limit_s

    def _receive(self, worker: _Worker, queues: list[deque]) -> None:
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message == _READY:
                    worker.ready = True
                    self._failed_starts = 0
                    continue
                index, verdict = message
                expected, key = worker.inflight.popleft()
                assert index == expected, "grading worker answered out of order"
                self._memo[key] = verdict
                self.timed_out.discard(key)
                self.failed.discard(key)
                worker.item_started = time.monotonic()
        except (EOFError, OSError):
            self._replace(worker, queues, "died")

    def _replace(self, worker: _Worker, queues: list[deque], why: str) -> None:
        """Kill the worker and start a fresh one in its slot; its current item is graded wrong, the rest of
        its chunk goes back to the front of the slot's queue."""
        slot = self._workers.index(worker)
        worker.stop(kill=True)
        self.stats["worker_restarts"] += 1
        if not worker.ready:
            self._failed_starts += 1
            if self._failed_starts >= 3:
                del self._workers[slot]
                raise RuntimeError(f"grading workers keep failing to start ({why}); check that math-verify "
                                   "imports in a fresh interpreter")
        self._workers[slot] = _Worker(self._context)
        if worker.inflight:
            _, key = worker.inflight.popleft()
            self._to_retry.append((key, why))  # not a verdict: `grade` retries it, then records the failure
            logger.warning("grader %r %s on answer %.200r (gold %.100r) after %.1f s limit%s",
                           key[0], why, key[2], key[1], self._limit_s,
                           "; graded wrong" if self._retrying else "; it will be graded again with a longer limit")
            queues[slot].extendleft(reversed(worker.inflight))
