"""The journal of an evaluation in progress: each attack run's rows, kept as it finishes.

An evaluation of a defence under the adaptive suite can run for hours (Square's 5,000
queries on every survivor); killed near its end, it would otherwise start again from the
clean row. :func:`~pipeline.evaluate.table.evaluate_to_table` keeps a journal beside the
results table, ``<out>.journal-<key>.jsonl``: its first line names the evaluation (model,
split, preset and its attack runs, images, seed, sources, views), and every later line one
finished attack run, with the state the runs after it read (the running worst case per
budget and the examples broken in earlier views). A rerun of the same evaluation restores
those runs instead of attacking again and goes on from the first unfinished one. Every
attack run draws from streams seeded by its own label, budget and view
(:func:`~pipeline.evaluate.robust.run_seed`), so the resumed table equals an uninterrupted
run's, apart from the wall-clock columns. The journal is removed once the table is written.

A line is appended and fsynced whole; a kill mid-line leaves a last line that does not
parse, which is dropped on the next read. A journal whose first line names another
evaluation is never used (its name holds a digest of the key, so that only happens to a
damaged file); it is replaced, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from pipeline.core.io import atomic_write_bytes
from pipeline.core.outcomes import decode_outcome, encode_outcome

log = logging.getLogger(__name__)

FORMAT = 1


def journal_path(out: str | Path, key: dict) -> Path:
    """Where the journal of the evaluation ``key`` into the table ``out`` lives."""
    out = Path(out)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return out.with_name(f"{out.name}.journal-{digest}.jsonl")


class Journal:
    """The finished attack runs of one evaluation (``key``: JSON-able, names it)."""

    def __init__(self, path: str | Path, key: dict):
        self.path, self.key = Path(path), key
        self.entries: dict[str, dict] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_bytes().split(b"\n")
        try:
            head = json.loads(lines[0])
        except ValueError:
            head = None
        if not isinstance(head, dict) or head.get("key") != self.key or \
                head.get("journal") != FORMAT:
            log.warning("journal %s names another evaluation or is damaged: not used, "
                        "replaced", self.path)
            self.path.unlink()
            return
        good = [lines[0]]
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self.entries[entry["id"]] = entry
                good.append(line)
            except (ValueError, KeyError, TypeError):
                log.warning("journal %s: dropped a damaged line (a kill mid-write)",
                            self.path)
        if len(good) < len([ln for ln in lines if ln.strip()]):
            atomic_write_bytes(self.path, b"\n".join(good) + b"\n")
        if self.entries:
            log.info("journal %s: %d finished attack run(s) restored, not run again",
                     self.path, len(self.entries))

    def discard(self) -> None:
        """Forget every finished run (``force``: evaluate afresh)."""
        self.entries = {}
        self.path.unlink(missing_ok=True)

    def remove(self) -> None:
        """The evaluation is in the table: the journal is no longer needed."""
        self.path.unlink(missing_ok=True)

    def section(self, name: str) -> JournalSection:
        """The runs of one pass of the evaluation (a view of a defence; "" for a model)."""
        return JournalSection(self, name)

    def _append(self, entry: dict) -> None:
        if not self.path.exists():
            head = json.dumps({"journal": FORMAT, "key": self.key}).encode() + b"\n"
            atomic_write_bytes(self.path, head)
        with open(self.path, "ab") as f:
            f.write(json.dumps(entry).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries[entry["id"]] = entry


class JournalSection:
    """One pass's runs: restores a finished run's rows and state, keeps a new one's."""

    def __init__(self, journal: Journal, name: str):
        self.journal, self.name = journal, name

    def _id(self, position: int, run) -> str:
        eps = "none" if run.eps is None else f"{float(run.eps):.17g}"
        return f"{self.name}|{position}|{run.label}|{eps}|{getattr(run, 'view', '')}"

    def restore(self, position: int, run, worst: dict, worst_of: dict, n: int):
        """The rows of the finished run (None if it did not finish); ``worst`` and
        ``worst_of`` (and the run's record of earlier views) are set as it left them."""
        entry = self.journal.entries.get(self._id(position, run))
        if entry is None:
            return None
        worst.clear()
        worst.update({float(e): torch.from_numpy(decode_outcome(h, n))
                      for e, h in entry["worst"].items()})
        worst_of.clear()
        worst_of.update({float(e): list(v) for e, v in entry["worst_of"].items()})
        record = getattr(run, "record", None)
        if record is not None and entry.get("record") is not None:
            record.robust = {float(e): {int(i): False for i in broken}
                             for e, broken in entry["record"].items()}
        return entry["rows"]

    def keep(self, position: int, run, rows: list[dict], worst: dict,
             worst_of: dict) -> None:
        """Append the finished run: its rows and the state after it."""
        record = getattr(run, "record", None)
        snapshot: dict[str, Any] | None = None
        if record is not None:
            # unseen examples count as robust: the broken ones are the whole record
            snapshot = {repr(float(e)): sorted(i for i, ok in seen.items() if not ok)
                        for e, seen in record.robust.items()}
        self.journal._append({
            "id": self._id(position, run), "rows": rows,
            "worst": {repr(float(e)): encode_outcome(t) for e, t in worst.items()},
            "worst_of": {repr(float(e)): list(v) for e, v in worst_of.items()},
            "record": snapshot,
        })
