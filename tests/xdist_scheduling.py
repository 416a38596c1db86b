"""`--dist loadgroup` that survives a crashed worker.

pytest-xdist 3.8.0 (the newest on the registry) can hang for ever once a worker dies under
`--dist loadgroup` or `loadscope` (pytest-xdist issues #1323, #1327, #1378): the dead worker's
whole workload goes back on the queue, completed groups included; a completed group is later
sent as an empty batch that never reports back, and a replacement worker given a single test
waits for a second one that never comes. CI then sits until its time limit with no failure
named. Here a crash fails the test it happened in (as xdist reports it), the test is not run
again, the rest of its group is, and the session ends.
"""

from __future__ import annotations

from xdist.scheduler import LoadGroupScheduling


class CrashSafeLoadGroupScheduling(LoadGroupScheduling):
    def remove_node(self, node):  # type: ignore[no-untyped-def]
        workload = self.assigned_work.pop(node)
        pending = {scope: unit for scope, unit in workload.items() if not all(unit.values())}
        if not pending:
            return None
        # xdist runs a test once the next one is known, so the first unfinished test of the
        # first unfinished group is the one the worker died in: it is reported failed, not rerun.
        crashitem = next(
            nodeid for unit in pending.values() for nodeid, done in unit.items() if not done
        )
        for unit in pending.values():
            if crashitem in unit:
                unit[crashitem] = True
        self.workqueue.update(
            (scope, unit) for scope, unit in pending.items() if not all(unit.values())
        )
        for other in self.assigned_work:
            self._reschedule(other)
        return crashitem

    def _assign_work_unit(self, node):  # type: ignore[no-untyped-def]
        while self.workqueue:
            scope, unit = self.workqueue.popitem(last=False)
            if all(unit.values()):
                continue  # nothing left to run in it: sending it would be an empty batch
            self.assigned_work.setdefault(node, {})[scope] = unit
            collection = self.registered_collections[node]
            node.send_runtest_some([collection.index(n) for n, done in unit.items() if not done])
            return

    def _reschedule(self, node):  # type: ignore[no-untyped-def]
        if node.shutting_down or node not in self.assigned_work:
            return
        # A worker holds its last test until it knows the next one or is told to stop, so keep
        # more than two queued, and say stop as soon as the queue is empty.
        while self.workqueue and self._pending_of(self.assigned_work[node]) <= 2:
            self._assign_work_unit(node)
        if not self.workqueue:
            node.shutdown()
