"""Files under ``state_dir``: the last-known-good Snapshot and the drains.

Every write goes to a temporary file in the same directory, is fsynced and
then renamed over the target, so a crash leaves the old or the new file,
never half of one. A file that cannot be parsed is reported (logged and
remembered in ``problems``) and ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from typing import Any

from healthwatch.errors import StateError
from healthwatch.snapshot import Snapshot

log = logging.getLogger("healthwatch.state")

SNAPSHOT_FILE = "snapshot.json"
DRAINS_FILE = "drains.json"


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via write-then-rename; raises StateError."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise StateError(path=path, why=str(exc)) from exc


def read_json(path: str) -> Any:
    """The parsed JSON in ``path``; None if the file does not exist.

    Raises StateError when the file exists but cannot be read or parsed.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(path=path, why=str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise StateError(path=path, why=f"corrupt (not UTF-8): {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StateError(path=path, why=f"corrupt JSON: {exc}") from exc


class StateStore:
    """The state directory, or nothing at all when ``state_dir`` is None."""

    def __init__(self, state_dir: str | None) -> None:
        self.state_dir = state_dir
        self.problems: list[str] = []  # human-readable load/save problems

    def path(self, name: str) -> str | None:
        return None if self.state_dir is None else os.path.join(self.state_dir, name)

    def load(self, name: str) -> Any:
        """Parsed JSON of ``name``; None when absent, disabled or corrupt."""
        path = self.path(name)
        if path is None:
            return None
        try:
            return read_json(path)
        except StateError as exc:
            self.report(exc)
            return None

    def save(self, name: str, obj: Any) -> bool:
        """Persist ``obj`` as JSON; False (and reported) on failure."""
        path = self.path(name)
        if path is None:
            return True
        try:
            atomic_write(path, json.dumps(obj, separators=(",", ":"), sort_keys=True))
        except StateError as exc:
            self.report(exc)
            return False
        return True

    def report(self, exc: StateError) -> None:
        log.warning("state_problem path=%s why=%s", exc.path, exc.why)
        self.problems.append(str(exc))
        del self.problems[:-10]

    def load_snapshot(self, zone: str) -> Snapshot | None:
        """The persisted snapshot for ``zone``, marked stale; None if unusable."""
        data = self.load(SNAPSHOT_FILE)
        if data is None:
            return None
        try:
            snap = Snapshot.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.report(StateError(path=str(self.path(SNAPSHOT_FILE)),
                                   why=f"not a snapshot: {exc!r}"))
            return None
        if snap.zone != zone:
            log.info("state_snapshot_ignored reason=zone_changed old=%s new=%s", snap.zone, zone)
            return None
        return Snapshot(
            serial=snap.serial, generated_at=snap.generated_at, zone=snap.zone, ttl=snap.ttl,
            records=snap.records, geo=snap.geo, localities=snap.localities,
            shards=snap.shards, clusters=snap.clusters, stale=True, failovers=snap.failovers,
        )

    def save_snapshot(self, snapshot: Snapshot) -> bool:
        return self.save(SNAPSHOT_FILE, snapshot.to_dict())
