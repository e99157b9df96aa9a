"""How the ranks of a distributed trace finish together: a protocol over the launcher's store, and
the run's verdict.

The ranks coordinate through the key-value store torchrun already runs (`Coordinator`), never
through a collective, so a rank that fails cannot hang the others:
1. rank 0 prepares the run directory, writes the run record (`running`) and publishes the run id;
2. each rank announces itself (host, pid, device) and, however it ends (an exception is caught and
   recorded as `failed`), reports `done/K` with its status once its rows are on disk;
3. rank 0, its own part done, waits for every report. A rank whose process is gone (same host), or
   that has not reported when rank 0 is stopped (torchrun stops every rank when one dies), is
   recorded as `lost`. Rank 0 writes the final run record and publishes `final` (`judge`);
4. every rank waits for `final`, and for rank 0 to release it (and, on rank 0's host, to exit),
   before it exits itself, so no early exit code (which makes torchrun stop the others) cuts a rank
   short.
Each rank exits 0 when its own part is `complete`, 128 + the signal when it was interrupted (as a
1-rank trace does), else 3, even for an oom/error point (a 1-rank trace exits 0 there): the
launcher's exit code is non-zero whenever any rank is not complete, and rank 0 prints one
`error:` line per such rank.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist

from mambaprof.distributed.ranks import TIMEOUT_ENV, DistributedError, RankInfo
from mambaprof.run.sweep import RunInterrupted, SweepResult
from mambaprof.storage.rundir import process_alive, read_table

#: How often waiting ranks look at the store (seconds).
POLL_S = 0.1
#: After rank 0 is stopped, how long it still collects reports of the others (seconds).
GRACE_S = 3.0
#: Exit code of a rank that failed or has a failed point.
EXIT_FAILED = 3


class Coordinator:
    """The completion protocol over the launcher's store (see the module docstring). Values are JSON."""

    def __init__(self, store: dist.Store, info: RankInfo, scope: str = "") -> None:
        """scope: a name that keeps this protocol's keys apart from another one in the same launch (a
        study traces one run per model, each with its own protocol)."""
        self.raw_store = store  # what the process group is initialised with
        self.store = dist.PrefixStore(f"mambaprof/attempt{info.attempt}" + (f"/{scope}" if scope else ""), store)
        self.info = info
        self.hostname = socket.gethostname()

    def _set(self, key: str, value: Mapping[str, Any]) -> None:
        self.store.set(key, json.dumps(value, default=str))

    def _get(self, key: str) -> dict[str, Any]:
        return json.loads(self.store.get(key))

    def _has(self, key: str) -> bool:
        return bool(self.store.check([key]))

    def gone(self, rank: int) -> bool:
        """True when `rank` announced a process on this host that no longer runs."""
        if not self._has(f"start/{rank}"):
            return False
        start = self._get(f"start/{rank}")
        return start.get("hostname") == self.hostname and not process_alive(int(start["pid"]))

    def wait_for(self, key: str, setter: int, within_s: float | None = None) -> dict[str, Any]:
        """Poll until `key` exists; DistributedError if rank `setter` is gone first or `within_s` passes."""
        deadline = None if within_s is None else time.monotonic() + within_s
        while not self._has(key):
            if self.gone(setter) and not self._has(key):
                raise DistributedError(f"rank {setter} stopped before it published {key!r}",
                                       f"see rank {setter}'s output above")
            if deadline is not None and time.monotonic() > deadline:
                raise DistributedError(f"rank {self.info.rank} gave up waiting {within_s:.0f} s for {key!r} "
                                       f"from rank {setter}", f"raise {TIMEOUT_ENV} if rank {setter} is just slow")
            time.sleep(POLL_S)
        return self._get(key)

    def publish_setup(self, value: Mapping[str, Any]) -> None:
        """Rank 0: where the run is (`out`, `run_id`), or `error` when it could not be prepared."""
        self._set("setup", value)

    def announce(self, value: Mapping[str, Any]) -> None:
        """This rank's host, pid, device and start time (lets rank 0 notice its death on the same host)."""
        self._set(f"start/{self.info.rank}", {"hostname": self.hostname, "pid": os.getpid(), **value})

    def started(self, rank: int) -> dict[str, Any]:
        """What `rank` announced ({} if it never did)."""
        return self._get(f"start/{rank}") if self._has(f"start/{rank}") else {}

    def report_done(self, report: Mapping[str, Any]) -> None:
        """This rank has finished and its rows are on disk."""
        self._set(f"done/{self.info.rank}", report)

    def collect(self, deadline: float | None = None) -> dict[int, dict[str, Any] | None]:
        """Rank 0: the report of every other rank, None for a rank that is lost (its process is gone,
        or it has not reported within GRACE_S after this rank was stopped, or by the deadline)."""
        reports: dict[int, dict[str, Any] | None] = {}
        pending = set(range(1, self.info.world_size))
        grace: float | None = None
        while pending:
            try:
                for k in sorted(pending):
                    if self._has(f"done/{k}"):
                        reports[k] = self._get(f"done/{k}")
                    elif self.gone(k):
                        reports[k] = self._get(f"done/{k}") if self._has(f"done/{k}") else None
                    else:
                        continue
                    pending.discard(k)
                now = time.monotonic()
                if pending and ((grace is not None and now > grace) or (deadline is not None and now > deadline)):
                    break
                time.sleep(POLL_S)
            except RunInterrupted:  # torchrun stops every rank when one dies: collect what is there
                grace = grace or time.monotonic() + GRACE_S
        reports.update({k: None for k in pending})
        return reports

    def publish_final(self, value: Mapping[str, Any]) -> None:
        """Rank 0: the run record is written; `value` holds the run's status and failures."""
        self._set("final", value)

    def release(self) -> None:
        """Rank 0: it has reported the run; the other ranks may exit."""
        self._set("released", {"at": time.time()})


@dataclass
class RankReport:
    """How one rank ended: what it reports to rank 0 (`done/K`). `error`: what stopped a failed rank,
    or the first failed point of an incomplete one."""

    status: str
    reason: str | None = None
    error: str | None = None
    points: dict[int, str] = field(default_factory=dict)  # point_id -> status
    interrupted_by: str | None = None  # SIGINT / SIGTERM

    @classmethod
    def from_sweep(cls, result: SweepResult) -> RankReport:
        """The report of a finished sweep (its status and `points` rows)."""
        rows = result.point_rows
        bad = next((r for r in rows if r.get("status") != "ok"), None)
        error = (f"point {bad['point_id']} (b={bad['batch']} L={bad['seqlen']}): {bad.get('error')}"
                 if bad is not None else None)
        return cls(result.status, result.reason, error, {int(r["point_id"]): str(r["status"]) for r in rows},
                   result.interrupted_by)

    @property
    def exit_code(self) -> int:
        """What this rank exits with: 0 complete, 128 + signal when interrupted, else 3."""
        if self.interrupted_by is not None:
            return 128 + int(signal.Signals[self.interrupted_by])
        return 0 if self.status == "complete" else EXIT_FAILED

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (point ids as strings)."""
        return {"status": self.status, "reason": self.reason, "error": self.error,
                "points": {str(k): v for k, v in self.points.items()}, "interrupted_by": self.interrupted_by}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> RankReport:
        """Inverse of as_json."""
        return cls(status=value["status"], reason=value.get("reason"), error=value.get("error"),
                   points={int(k): v for k, v in (value.get("points") or {}).items()},
                   interrupted_by=value.get("interrupted_by"))


@dataclass
class RunVerdict:
    """The run's status over all ranks, its point counts, and one line per rank that is not complete."""

    status: str
    reason: str | None
    counts: dict[str, int]
    failures: list[str]


def judge(reports: Mapping[int, RankReport | None], assignment: Mapping[int, Sequence[int]],
          on_disk: Mapping[int, Mapping[int, str]] | None = None) -> RunVerdict:
    """Combine the ranks' reports (None: lost) into the run's status. `on_disk`: rank -> {point_id:
    status} of the points a lost rank finished before it stopped (their rows are whole on disk).

    A point is ok when every rank that had it reports it ok (oom / error when any reports that). The
    run is `complete` when every rank is, `failed` when no point is ok, else `incomplete`.
    """
    failures: list[str] = []
    for k in sorted(assignment):
        rep = reports.get(k)
        if rep is None:
            failures.append(f"rank {k} lost: it stopped without reporting (killed, crashed or timed out)")
        elif rep.status == "failed":
            failures.append(f"rank {k} failed: {rep.error or rep.reason}")
        elif rep.status != "complete":
            first = f"; first: {rep.error}" if rep.error else ""
            failures.append(f"rank {k} {rep.status}: {rep.reason}{first}")
    per_point: dict[int, list[str]] = {}
    for k, pids in assignment.items():
        rep = reports.get(k)
        done = rep.points if rep is not None else (on_disk or {}).get(k, {})
        for pid in pids:
            per_point.setdefault(pid, []).append(done.get(pid, "missing"))
    counts = {"ok": 0, "oom": 0, "error": 0}
    for statuses in per_point.values():
        if "oom" in statuses:
            counts["oom"] += 1
        elif "error" in statuses:
            counts["error"] += 1
        elif all(s == "ok" for s in statuses):
            counts["ok"] += 1
    if not failures:
        return RunVerdict("complete", None, counts, [])
    return RunVerdict("failed" if counts["ok"] == 0 else "incomplete", "; ".join(failures), counts, failures)


def finished_points(run_dir: Path, ranks: Sequence[int]) -> dict[int, dict[int, str]]:
    """rank -> {point_id: status} of the `points` rows those ranks wrote (a row means a whole point)."""
    if not ranks:
        return {}
    table = read_table(run_dir, "points", columns=["rank", "point_id", "status"]).to_pylist()
    out: dict[int, dict[int, str]] = {k: {} for k in ranks}
    for row in table:
        if row["rank"] in out:
            out[row["rank"]][int(row["point_id"])] = row["status"]
    return out


def tally(points: Mapping[int, str]) -> dict[str, int]:
    """Counts of point statuses: {"ok": n, "oom": n, "error": n}."""
    return {k: sum(1 for v in points.values() if v == k) for k in ("ok", "oom", "error")}
