"""Server-side dynamic batching of Predict requests (TF Serving's `--enable_batching`).

Concurrent requests for the same model version and signature whose inputs have the same
per-example shapes are queued together; a batch is executed when it holds `max_batch_size`
examples or when the oldest request has waited `batch_timeout_micros`. Inputs are concatenated
along axis 0, outputs are split back by each request's example count.

Only signatures whose inputs *and* outputs all have an unknown leading (batch) dimension are
batched; others (e.g. `svd_approximate`, which takes a scalar `rank`) run directly, as TF
Serving's batching also requires a shared 0th dimension.

If a batch fails (e.g. one request carries a string that fails the decoder's check), each
request of that batch is re-run alone so that the error reaches only the request that caused it.

Written here because TF Serving's batcher is C++ inside the model server binary; no Python
package provides it.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import Future
from typing import Callable

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """Names and meaning follow TF Serving's `batching_parameters.txt`."""
    max_batch_size: int = 32                 # examples (rows), not requests
    batch_timeout_micros: int = 2000         # max wait of the oldest queued request
    max_enqueued_batches: int = 64           # back-pressure: queue limit in batches

    def __post_init__(self):
        if self.max_batch_size < 1 or self.batch_timeout_micros < 0:
            raise ValueError("max_batch_size must be ≥ 1 and batch_timeout_micros ≥ 0")

    @classmethod
    def from_text(cls, text: str) -> "BatchingParameters":
        """Parses TF Serving's text-proto batching config (`max_batch_size { value: 32 }`);
        unknown fields (e.g. `num_batch_threads`) are accepted and ignored."""
        import re  # pylint: disable=import-outside-toplevel
        values = {}
        for field in dataclasses.fields(cls):
            match = re.search(rf"\b{field.name}\s*{{\s*value\s*:\s*(\d+)\s*}}", text)
            if match:
                values[field.name] = int(match.group(1))
        return cls(**values)


class QueueFullError(RuntimeError):
    """More work is queued than `max_enqueued_batches` allows (TF Serving: UNAVAILABLE)."""


@dataclasses.dataclass
class _Task:
    inputs: Arrays
    rows: int
    future: Future


class _Queue:
    """One batching queue (model version × signature × per-example shapes) and its thread."""

    def __init__(self, run: Callable[[Arrays], Arrays], params: BatchingParameters,
                 on_batch: Callable[[int], None]):
        self._run, self._params, self._on_batch = run, params, on_batch
        self._tasks: list[_Task] = []
        self._first_enqueued = 0.
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, inputs: Arrays, rows: int) -> Future:
        task = _Task(inputs, rows, Future())
        with self._cv:
            limit = self._params.max_enqueued_batches * self._params.max_batch_size
            if sum(t.rows for t in self._tasks) + rows > limit:
                raise QueueFullError("batching queue is full; retry later")
            if not self._tasks:
                self._first_enqueued = time.monotonic()
            self._tasks.append(task)
            self._cv.notify()
        return task.future

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _take_batch(self) -> list[_Task] | None:
        timeout = self._params.batch_timeout_micros / 1e6
        with self._cv:
            while True:
                if self._closed and not self._tasks:
                    return None
                queued = sum(t.rows for t in self._tasks)
                waited = time.monotonic() - self._first_enqueued
                if self._tasks and (queued >= self._params.max_batch_size or waited >= timeout
                                    or self._closed):
                    break
                self._cv.wait(None if not self._tasks else max(timeout - waited, 0.))
            batch, rows = [], 0
            while self._tasks and (not batch or
                                   rows + self._tasks[0].rows <= self._params.max_batch_size):
                task = self._tasks.pop(0)
                batch.append(task)
                rows += task.rows
            if self._tasks:
                self._first_enqueued = time.monotonic()
            return batch

    def _loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            self._execute(batch)

    def _execute(self, batch: list[_Task]) -> None:
        self._on_batch(sum(t.rows for t in batch))
        if len(batch) == 1:
            _run_into(self._run, batch[0])
            return
        merged = {key: np.concatenate([t.inputs[key] for t in batch])
                  for key in batch[0].inputs}
        try:
            outputs = self._run(merged)
        except Exception:  # attribute the failure to the request(s) that cause it
            for task in batch:
                _run_into(self._run, task)
            return
        start = 0
        for task in batch:
            task.future.set_result({key: value[start:start + task.rows]
                                    for key, value in outputs.items()})
            start += task.rows


def _run_into(run: Callable[[Arrays], Arrays], task: _Task) -> None:
    try:
        task.future.set_result(run(task.inputs))
    except Exception as error:  # delivered to the waiting request
        task.future.set_exception(error)


class Batcher:
    """Routes requests into per-(key, shapes) queues created on first use."""

    def __init__(self, params: BatchingParameters,
                 on_batch: Callable[[tuple, int], None] | None = None):
        self.params = params
        self._on_batch = on_batch or (lambda key, size: None)
        self._queues: dict[tuple, _Queue] = {}
        self._lock = threading.Lock()

    def run(self, key: tuple, run: Callable[[Arrays], Arrays], inputs: Arrays,
            timeout: float | None = None) -> Arrays:
        """Executes `run(inputs)` as part of a batch; `key` identifies the servable and
        signature (the function must be the same for equal keys)."""
        rows = {len(v) for v in inputs.values()}
        if len(rows) != 1:
            raise ValueError("batched inputs must share their 0th dimension; got sizes "
                             f"{sorted(rows)}")
        [n] = rows
        if n > self.params.max_batch_size:  # too big to share: run alone
            self._on_batch(key, n)
            return run(inputs)
        shapes = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(inputs.items()))
        with self._lock:
            queue = self._queues.get((key, shapes))
            if queue is None:
                queue = _Queue(run, self.params, lambda size: self._on_batch(key, size))
                self._queues[(key, shapes)] = queue
        return queue.submit(inputs, n).result(timeout)

    def drop(self, key_prefix: tuple) -> None:
        """Closes the queues of an unloaded servable (keys starting with `key_prefix`)."""
        with self._lock:
            for full_key in [k for k in self._queues if k[0][:len(key_prefix)] == key_prefix]:
                self._queues.pop(full_key).close()

    def close(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.close()
            self._queues.clear()
