"""The Ray Data stage: a worker actor that runs each batch as an ordinary flextier job.

Why a whole :class:`~flextier.jobs.runner.Runner` per batch: the decision table, the lanes,
the accounting, the send records and "commit before report" are then exactly those of
``flextier run`` (built by :func:`flextier.jobs.session.build_runner`, the one job assembly),
and the only thing that differs is where the flex window, the budget and the planner's
decisions come from: the job's controller (:mod:`flextier.ray.member`). Ray Data runs one
batch of an actor at a time; the controller splits the job's flex window and standard
concurrency among the batches running now.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from decimal import Decimal
from typing import Any

from .controller import job_clock
from .state import JobState, batch_key

__all__ = ["FlextierWorker", "job_clock", "final_rows", "row_items", "result_schema"]

def _money_type() -> Any:
    import pyarrow as pa

    return pa.decimal128(38, 18)


def result_schema() -> list[tuple[str, Any]]:
    import pyarrow as pa

    return [("response", pa.string()), ("text", pa.string()), ("served_tier", pa.string()),
            ("cost_usd", _money_type()), ("standard_cost_usd", _money_type()), ("attempts", pa.int64()),
            ("error", pa.string())]


def _q(d: Decimal | None) -> Decimal | None:
    return None if d is None else d.quantize(Decimal("1e-18"))


def row_items(rows: list[dict[str, Any]], spec: dict[str, Any]) -> list[tuple[str, Any]]:
    """(id, JobItem or InvalidLine) for each input row, by the job's input mode."""
    from ..jobs.input import InvalidLine, PromptTemplate, item_from_object

    tpl = PromptTemplate(spec["template"]) if spec.get("template") else None
    idc = spec.get("id_column")
    out: list[tuple[str, Any]] = []
    for i, row in enumerate(rows):
        if spec.get("request_column"):
            req = row.get(spec["request_column"])
            if isinstance(req, (str, bytes)):
                try:
                    req = json.loads(req)
                except ValueError:
                    req = None
            obj: Any = dict(req) if isinstance(req, dict) else {"invalid": req}
        elif spec.get("messages_column"):
            msgs = row.get(spec["messages_column"])
            if isinstance(msgs, str):
                try:
                    msgs = json.loads(msgs)
                except ValueError:
                    pass
            obj = {"messages": msgs}
        else:
            obj = {"prompt": tpl.render(row) if tpl is not None else row.get(spec["prompt_column"])}
        if idc and row.get(idc) is not None:
            cid = str(row[idc])
        elif isinstance(obj.get("custom_id"), str):
            cid = obj["custom_id"]
        else:  # a stable hash of the request: the same row always has the same id
            cid = "h-" + hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]
        if "custom_id" in obj:
            obj["custom_id"] = cid
        else:
            obj["id"] = cid
        rec = item_from_object(obj, i)
        if isinstance(rec, InvalidLine):
            rec = InvalidLine(rec.line, rec.field, rec.message, cid)
        out.append((cid, rec))
    return out


def _text_of(entry: Any, body: Any) -> str | None:
    import importlib

    if not isinstance(body, dict):
        return None
    try:
        mod = importlib.import_module(f"flextier.providers.{entry.provider}")
        return mod.text_from_body(body)
    except Exception:
        return None


def final_rows(store: Any, table: Any, entry: Any, *, id_column: str, paused: str | None = None,
               invalid: dict[str, str] | None = None, include_open: bool = False) -> tuple[Any, dict[str, Any]]:
    """The batch's output rows: its input columns plus the result columns, from the store.

    Only final items (answered or failed) are *published*; with ``include_open`` the rows of
    items not final (the job paused) and invalid rows come too, with ``error`` saying why,
    for the Dataset the caller gets back.
    """
    import pyarrow as pa

    res: dict[str, dict[str, Any]] = {}
    for r in store.iter_items():
        if r["state"] not in ("done", "failed"):
            continue
        line = json.loads(r["result"]) if r["result"] else {}
        resp = line.get("response") or {}
        body = resp.get("body") if r["state"] == "done" else None
        err = line.get("error")
        res[r["custom_id"]] = {
            "response": None if body is None else json.dumps(body, ensure_ascii=False),
            "text": _text_of(entry, body) if body is not None else None,
            "served_tier": r["served_tier"] if r["state"] == "done" else None,
            "cost_usd": _q(Decimal(r["cost"])) if r["cost"] is not None else None,
            "standard_cost_usd": _q(Decimal(r["standard_cost"])) if r["standard_cost"] is not None else None,
            "attempts": int(r["attempts"]),
            "error": None if err is None else json.dumps(err, ensure_ascii=False)}
    keep, out_rows = [], []
    ids = [str(x) for x in table.column(id_column).to_pylist()] if table is not None else []
    for i, cid in enumerate(ids):
        r = res.get(cid)
        if r is None:
            if not include_open:
                continue
            why = (invalid or {}).get(cid) or paused or "not sent"
            r = {"response": None, "text": None, "served_tier": None, "cost_usd": None, "standard_cost_usd": None,
                 "attempts": 0, "error": json.dumps({"code": "invalid" if cid in (invalid or {}) else "paused",
                                                     "message": why})}
        keep.append(i)
        out_rows.append(r)
    base = table.take(pa.array(keep, pa.int64())) if table is not None else pa.table({})
    for name, typ in result_schema():
        if name in base.column_names:
            base = base.drop_columns([name])
        base = base.append_column(pa.field(name, typ), pa.array([r[name] for r in out_rows], type=typ))
    t = store.ledger_totals()
    pb_n, pb = store.possibly_billed()
    meta = {"spent": str(t["billed_total"]), "possibly_billed": str(pb), "possibly_billed_sends": pb_n,
            "final": len(res)}
    return base, meta


class FlextierWorker:
    """A Ray Data callable class: ``ds.map_batches(FlextierWorker, fn_constructor_kwargs={"cfg": ...})``."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import ray

        from ..catalog import default_catalog
        from ..jobs.session import build_adapter
        from .controller import controller_name

        self.cfg = cfg
        self.entry = default_catalog().resolve(cfg["model"])
        self.clock = job_clock(cfg["clock"])
        self.adapter = build_adapter(self.entry, base_url=cfg.get("base_url"), api_key=cfg.get("api_key"),
                                     concurrency=cfg["concurrency"], standard_concurrency=cfg["std_concurrency"])
        self.state = JobState(cfg["state"], cfg["job"])
        self.done = set(cfg.get("done_ids") or ())
        self.controller = ray.get_actor(controller_name(cfg["job"]), namespace="flextier")
        ray.get(self.controller.register_worker.remote(ray.get_runtime_context().current_actor))

    async def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from ..errors import JobPaused
        from ..jobs.api import open_job
        from ..jobs.input import InvalidLine
        from ..jobs.session import build_runner, mark_done, mark_paused, mark_running
        from .member import Member

        cfg = self.cfg
        idc = "_flextier_id"
        rows = batch.to_pylist()
        items = row_items(rows, cfg["spec"])
        keep = [i for i, (cid, _) in enumerate(items) if cid not in self.done]
        if not keep:
            return _strip(_empty(batch, idc), idc, cfg)
        batch = batch.take(pa.array(keep, pa.int64())).append_column(idc, pa.array([items[i][0] for i in keep], pa.string()))
        items = [items[i] for i in keep]
        key = batch_key(cid for cid, _ in items)
        if self.state.published(key):  # an earlier attempt of this batch finished it (Ray retried it)
            import pyarrow.parquet as pq

            p = self.state.part_path(key)
            return pq.read_table(p) if p.exists() else _strip(_empty(batch, idc), idc, cfg)
        self.state.save_input(key, batch)
        invalid = {cid: f"{rec.field or 'line'}: {rec.message}" for cid, rec in items if isinstance(rec, InvalidLine)}
        good = [rec for _, rec in items if not isinstance(rec, InvalidLine)]
        clk = self.clock
        now = clk.now()
        opened = open_job(self.state.store_path(key), name=f"{cfg['job']}-{key}", entry=self.entry,
                          tier_mode=cfg["tier"], deadline=cfg["deadline"], deadline_spec=cfg.get("deadline_spec"),
                          clock_domain=cfg["clock"].get("kind", "wall"), now=now, input_path=None,
                          prompt_template=None, skip_invalid=True, output_path=None, ordered=False,
                          config={"ray": True}, items=good, input_label=f"batch {key}")
        st = opened.store
        paused: str | None = None
        member = None
        try:
            remaining = st.counts()
            member = Member(self.controller, f"{key}-{uuid.uuid4().hex[:6]}",
                            remaining["total"] - remaining["done"] - remaining["failed"],
                            time_scale=float(getattr(clk, "time_scale", 1.0) or 1.0))
            runner = build_runner(st, self.entry, clock=clk, tier=cfg["tier"], deadline=cfg["deadline"],
                                  concurrency=cfg["concurrency"], standard_concurrency=cfg["std_concurrency"],
                                  rpm=cfg.get("rpm"), tpm=cfg.get("tpm"),
                                  max_cost=None if cfg.get("max_cost") is None else Decimal(cfg["max_cost"]),
                                  params=cfg.get("params") or {}, adapter=self.adapter, batch_lane=False,
                                  permits=member, **(cfg.get("runner_opts") or {}))
            mark_running(st, clk)
            try:
                await runner.run()
                mark_done(st, clk)
            except JobPaused as exc:
                paused = str(exc)
                mark_paused(st, paused)
            s = runner.stats
            published, meta = final_rows(st, batch, self.entry, id_column=idc)
            self.state.publish(key, _strip(published, idc, cfg), meta)
            member.leave({"done": s.done + s.failed, "failed": s.failed, "by_tier": dict(s.by_tier),
                          "cost": str(s.spent), "standard_cost": str(s.standard_cost), "paused": paused})
            member = None
            out, _ = final_rows(st, batch, self.entry, id_column=idc, paused=paused, invalid=invalid,
                                include_open=True)
        finally:
            if member is not None:
                try:
                    member.leave({"done": 0, "failed": 0, "by_tier": {}, "cost": "0", "standard_cost": "0",
                                  "paused": "worker error"})
                except Exception:
                    pass
            st.close()
        return _strip(out, idc, cfg)


def _strip(table: Any, idc: str, cfg: dict[str, Any]) -> Any:
    """The id column the caller sees: their own (``id_column``) or ``id``."""
    import pyarrow as pa

    ids = table.column(idc)
    table = table.drop_columns([idc])
    name = (cfg.get("spec") or cfg).get("id_column") or "id"
    if name in table.column_names:
        table = table.drop_columns([name])
    return table.add_column(0, name, ids.cast(pa.string()))


def _empty(batch: Any, idc: str) -> Any:
    import pyarrow as pa

    t = batch.slice(0, 0).append_column(idc, pa.array([], pa.string()))
    for name, typ in result_schema():
        if name in t.column_names:
            t = t.drop_columns([name])
        t = t.append_column(pa.field(name, typ), pa.array([], type=typ))
    return t

