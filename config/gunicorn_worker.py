"""The site's gunicorn worker: gthread with least-connections accepting (config/gunicorn.py names
it as worker_class and releases a dead worker's slot in its child_exit hook).

gunicorn's threaded worker accepts whenever it holds fewer than worker_connections connections, so
the process that happens to be awake when a burst of clients connects takes most of them and keeps
them for as long as they stay alive: 50 keep-alive clients against 3 workers split 40 / 7 / 3
(ss -tnp during bench/load_bench.py --only votes), and the clients of the crowded process queued
behind its 4 threads while the other two idled (votes p50 95 ms but p99 730 ms, against 373 ms for
the same load without keep-alive, where every request is a new connection). Here every worker
publishes how many client connections it holds in a table shared by the master and its workers
(anonymous shared memory made before the fork), and a worker listens for new connections only while
it holds no more than the least loaded of the others, as a least-connections balancer would. The
least loaded worker always listens, so nothing waits in the backlog while any worker is below
worker_connections. A worker joins the table once its application is loaded and leaves it as soon
as it starts to stop (SIGTERM, max_requests); the master frees the slot of one that was killed.
"""

from __future__ import annotations

import multiprocessing
import os

from gunicorn.workers.gthread import ThreadWorker

# How often (s) a worker that stopped listening because others held fewer connections looks again
# when nothing else wakes it: the least loaded worker may be one that stopped earlier and has been
# waiting on its poller since, while the others have stopped too.
RECHECK = 0.05
# Slots of the shared table: more than any worker count the site runs (GALCAT_WEB_WORKERS), since
# a replaced worker may start before the master has released its predecessor's slot.
SLOTS = 64
_table = multiprocessing.RawArray("q", 2 * SLOTS)  # per slot: worker pid (0: free), its connections
_claims = multiprocessing.Lock()


def claim_slot(pid: int) -> int | None:
    """Slot of the table for worker `pid`; None when the table is full (it then accepts freely)."""
    if not _claims.acquire(timeout=1.0):
        return None
    try:
        for slot in range(SLOTS):
            if _table[2 * slot] == 0:
                _table[2 * slot] = pid
                _table[2 * slot + 1] = 0
                return slot
        return None
    finally:
        _claims.release()


def release_slot(pid: int) -> None:
    """Free the slot of worker `pid` (the master calls this when the worker has exited)."""
    with _claims:
        for slot in range(SLOTS):
            if _table[2 * slot] == pid:
                _table[2 * slot + 1] = 0
                _table[2 * slot] = 0


def fewest_connections(own_slot: int) -> int | None:
    """Connections of the least loaded worker other than `own_slot` (None when it is alone)."""
    values = _table[:]
    others = [values[2 * s + 1] for s in range(SLOTS) if values[2 * s] and s != own_slot]
    return min(others) if others else None


class BalancedThreadWorker(ThreadWorker):
    """gthread worker that accepts only while it is among the least loaded (module docstring)."""

    slot: int | None = None

    def run(self) -> None:
        # Only now, with the application loaded, does the worker join the table: a worker still
        # booting would otherwise count as the least loaded one and the others would stop
        # listening until it is ready.
        self.slot = claim_slot(os.getpid())
        super().run()

    def leave_table(self) -> None:
        if self.slot is not None:
            release_slot(os.getpid())
            self.slot = None

    def publish(self) -> None:
        if self.slot is not None:
            _table[2 * self.slot + 1] = self.nr_conns

    def is_least_loaded(self) -> bool:
        if self.slot is None:
            return True
        least = fewest_connections(self.slot)
        return least is None or self.nr_conns <= least

    def notify(self) -> None:
        # Called at the top of every pass of the main loop, which then turns accepting on or off
        # through set_accept_enabled.
        super().notify()
        self.publish()

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if not self._accepting and self.nr_conns < self.worker_connections:
            timeout = min(timeout, RECHECK)  # stopped by the balance, not by the cap
        super().wait_for_and_dispatch_events(timeout)

    def accept(self, listener) -> None:
        super().accept(listener)
        self.publish()
        if not self.is_least_loaded():
            super().set_accept_enabled(False)

    def set_accept_enabled(self, enabled: bool) -> None:
        if not self.alive:
            # Stopping (SIGTERM, or max_requests reached): out of the table at once, or its
            # dwindling count would make the others stop listening while it no longer does.
            self.leave_table()
        super().set_accept_enabled(enabled and self.is_least_loaded())
