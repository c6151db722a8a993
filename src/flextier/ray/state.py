"""The durable state of a Ray job: one directory, shared by every node, under ``state/<job>/``.

Why this layout: a worker actor or the driver can die at any moment, and a rerun must neither
lose a result nor pay twice. Each batch of rows is its own small flextier job:

* ``inputs/<key>.parquet`` -- the batch's input rows, written before anything is sent;
* ``stores/<key>.db`` -- an ordinary job store (:class:`~flextier.jobs.store.JobStore`): every
  send is recorded before it leaves and every answer when it arrives, exactly as in ``flextier
  run``. A batch that Ray retries (its actor was killed) reopens the same store, so its answered
  items are kept and the sends that were out count as possibly billed and go out once more;
* ``parts/<key>.parquet`` -- the batch's final rows (input columns + results), then
* ``manifest/<key>.json`` -- written last, atomically: the batch is published. A part without
  its manifest entry does not exist.

``<key>`` is a hash of the batch's ids, so a retried batch finds its own store. A store with no
manifest entry whose lock is free belongs to a dead run; before a rerun starts the driver
*salvages* it (:meth:`JobState.salvage`): its answered items are published (``salvage-<key>``),
the rest are left for the rerun, and the store is renamed ``<key>.salvaged.db``. The rerun then
skips every published id. ``flextier report`` reads all stores together
(:func:`merged_store`). The directory must be visible to every node (a local path on one
machine, a shared filesystem on a cluster): the stores are SQLite.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["JobState", "batch_key", "merged_store", "RESULT_COLUMNS"]

RESULT_COLUMNS = ("response", "text", "served_tier", "cost_usd", "standard_cost_usd", "attempts", "error")


def batch_key(ids: Iterable[str]) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:20]


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class JobState:
    """Paths and the publish / salvage steps of one job's state directory."""

    def __init__(self, root: str | os.PathLike[str], job: str) -> None:
        if "://" in str(root):
            from ..errors import UserInputError

            raise UserInputError(f"state={root!r}: the state must be a directory every node can reach (a local or "
                                 f"shared filesystem path); object stores are not supported yet", field="state")
        self.dir = Path(root) / job
        for sub in ("inputs", "stores", "parts", "manifest"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    # -- the job's own settings (the first run's deadline holds, as on resume) -------------
    def meta(self) -> dict[str, Any] | None:
        p = self.dir / "job.json"
        return json.loads(p.read_text()) if p.exists() else None

    def write_meta(self, meta: dict[str, Any]) -> None:
        _atomic_write(self.dir / "job.json", json.dumps(meta, indent=1).encode())

    # -- paths ---------------------------------------------------------------------------
    def store_path(self, key: str) -> Path:
        return self.dir / "stores" / f"{key}.db"

    def input_path(self, key: str) -> Path:
        return self.dir / "inputs" / f"{key}.parquet"

    def part_path(self, key: str) -> Path:
        return self.dir / "parts" / f"{key}.parquet"

    def published(self, key: str) -> bool:
        return (self.dir / "manifest" / f"{key}.json").exists()

    def manifests(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted((self.dir / "manifest").glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, ValueError):  # pragma: no cover - atomic writes leave no torn entry
                continue
        return out

    def part_paths(self) -> list[str]:
        return [str(self.part_path(m["key"])) for m in self.manifests() if m.get("rows")]

    # -- write -------------------------------------------------------------------------
    def save_input(self, key: str, table: Any) -> None:
        import pyarrow.parquet as pq

        p = self.input_path(key)
        if not p.exists():
            tmp = p.with_name(f".tmp-{os.getpid()}-{p.name}")
            pq.write_table(table, tmp)
            os.replace(tmp, p)

    def publish(self, key: str, table: Any, meta: dict[str, Any]) -> None:
        """Make the batch's final rows durable: the part first, then its manifest entry."""
        import pyarrow.parquet as pq

        if table.num_rows:
            p = self.part_path(key)
            tmp = p.with_name(f".tmp-{os.getpid()}-{p.name}")
            pq.write_table(table, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, p)
        _atomic_write(self.dir / "manifest" / f"{key}.json",
                      json.dumps(dict(meta, key=key, rows=table.num_rows)).encode())

    def done_ids(self, id_column: str = "id") -> set[str]:
        import pyarrow.parquet as pq

        done: set[str] = set()
        for p in self.part_paths():
            done.update(pq.read_table(p, columns=[id_column]).column(id_column).to_pylist())
        return done

    def spend(self) -> tuple[Decimal, Decimal]:
        """Spent (billed, duplicates too) and possibly billed over every published batch."""
        s = pb = Decimal(0)
        for m in self.manifests():
            s += Decimal(m.get("spent", "0"))
            pb += Decimal(m.get("possibly_billed", "0"))
        return s, pb

    # -- salvage ---------------------------------------------------------------------------
    def orphans(self) -> Iterator[Path]:
        for p in sorted((self.dir / "stores").glob("*.db")):
            if p.name.endswith(".salvaged.db"):
                continue
            if not self.published(p.stem):
                yield p

    def salvage(self, to_rows: Any) -> int:
        """Publish what stores of dead runs answered; the rest is left for this run.

        ``to_rows(store, input_table) -> (table of final rows, meta)`` builds the rows (see
        :func:`flextier.ray.worker.final_rows`). Returns how many stores were salvaged. A store
        still locked by a live process is left alone.
        """
        import pyarrow.parquet as pq

        from ..jobs.lock import JobBusy, JobLock
        from ..jobs.store import JobStore

        n = 0
        for p in list(self.orphans()):
            lock = JobLock(p)
            try:
                lock.acquire()
            except JobBusy:
                continue
            try:
                st = JobStore(p)
                try:
                    st.recover()  # sends that were out become possibly billed
                    inp = self.input_path(p.stem)
                    table = pq.read_table(inp) if inp.exists() else None
                    rows, meta = to_rows(st, table)
                finally:
                    st.close()
                self.publish(f"salvage-{p.stem}", rows, dict(meta, salvaged=p.stem))
                for suffix in ("-wal", "-shm"):
                    q = Path(str(p) + suffix)
                    if q.exists():
                        q.unlink()
                os.replace(p, p.with_name(f"{p.stem}.salvaged.db"))
                n += 1
            finally:
                lock.release()
        return n

    def stores(self) -> list[Path]:
        return sorted((self.dir / "stores").glob("*.db"))


def merged_store(state_dir: str | os.PathLike[str], into: str | os.PathLike[str],
                 order: "list[str] | None" = None) -> Any:
    """One job store holding every batch store of a Ray job (for ``flextier report``).

    Items are merged by id (an answered copy wins over a pending one left by a crash); the
    attempts, the ledger, the sends whose billing is unknown and the events of every store are
    kept, so spend, possibly billed, tiers, latency and the charts are the whole job's.
    ``order``: the ids in input order (``flextier run --ray`` writes its results file so);
    by default, sorted.
    """
    from ..jobs.input import JobItem
    from ..jobs.store import FinishedItem, JobStore

    sd = Path(state_dir)
    meta = json.loads((sd / "job.json").read_text())
    out = JobStore(into)
    out.create_job(name=meta["job"], model=meta["model"], tier_mode=meta.get("tier", "auto"),
                   created_at=meta["created_at"], config={"ray": True, **meta.get("config", {})},
                   deadline=meta.get("deadline"), deadline_spec=meta.get("deadline_spec"),
                   clock_domain=meta.get("clock_domain", "wall"), input_path=None, input_hash=None,
                   input_format="ray", prompt_template=None, output_path=None, ordered=0, runs=1)
    best: dict[str, tuple[Path, dict[str, Any]]] = {}
    srcs = sorted((sd / "stores").glob("*.db"))
    for p in srcs:
        st = JobStore(p, create=False)
        try:
            for r in st.iter_items():
                row = dict(r)
                cur = best.get(row["custom_id"])
                if cur is None or (cur[1]["state"] not in ("done", "failed") and row["state"] in ("done", "failed")):
                    best[row["custom_id"]] = (p, row)
        finally:
            st.close()
    ids = [i for i in order if i in best] if order is not None else []
    if len(ids) != len(best):
        seen = set(ids)
        ids += sorted(i for i in best if i not in seen)
    seq_of = {cid: i for i, cid in enumerate(ids)}
    out.import_items((JobItem(cid, i + 1, best[cid][1]["request"]) for i, cid in enumerate(ids)), file="ray",
                     skip_invalid=True)
    for cid in ids:
        row = best[cid][1]
        if row["state"] in ("done", "failed"):
            out.finish(FinishedItem(seq=seq_of[cid], state=row["state"], result=row["result"], tier=row["tier"],
                                    attempts=row["attempts"], served_tier=row["served_tier"],
                                    cost=None if row["cost"] is None else Decimal(row["cost"]),
                                    standard_cost=None if row["standard_cost"] is None else Decimal(row["standard_cost"]),
                                    error_class=row["error_class"], latency=row["latency"],
                                    finished_at=row["finished_at"], possibly_billed=0))  # the sends below count them
    out.flush()
    for p in srcs:
        st = JobStore(p, create=False)
        try:
            local = {r["seq"]: r["custom_id"] for r in st.iter_items()}
            for seq, tier, outcome, latency, ts, status, code, pb in st.iter_attempt_rows():
                out.add_attempt(seq_of[local[seq]], tier, outcome, latency, status, code, bool(pb), ts)
            for ts, seq, tier, cost, sc, tin, tout, kind in st.iter_ledger_rows():
                out.add_ledger(ts, seq_of[local[seq]], tier, None if cost is None else Decimal(cost),
                               None if sc is None else Decimal(sc), tin, tout, kind)
            for _sid, seq, tier, reserved, state in st.send_records():
                if state == "unknown":
                    sid = out.open_send(seq_of[local[seq]], tier, None if reserved is None else Decimal(reserved), 0.0)
                    out.commit_sends()
                    out.lose_send(sid)
            for ts, kind, detail in st.events():
                out.event(ts, kind, detail)
        finally:
            st.close()
        out.flush()
    out.update_job(state="done" if all(r[1]["state"] in ("done", "failed") for r in best.values()) else "stopped")
    return out
