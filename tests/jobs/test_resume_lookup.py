"""Resume reads back what a crash cut off: OpenAI stored chat completions (issue 19).

Real parts: the emulator over HTTP on 127.0.0.1, the OpenAI dialect's own client, and the
official SDK reading the same list endpoint. The kill-and-count figure is ``bench/resume_waste.py``;
the kill/resume tests in tests/hardening run with the store on (the default).
"""
from __future__ import annotations

import asyncio

import openai

from flextier._types import CallRequest
from flextier.catalog import default_catalog
from flextier.providers import clear_adapter_cache, get_adapter
from flextier.providers.openai import tag_for_resume


def _adapter(emu):
    clear_adapter_cache()
    return get_adapter(default_catalog().resolve("openai/gpt-5.4-mini"), base_url=emu.openai_base_url, api_key="sk-t",
                       max_connections=8)


def test_a_tagged_answer_is_found_by_job_and_item_and_only_then(emulator):
    emu = emulator("calm")
    ad = _adapter(emu)

    async def send(cid, tag):
        req = CallRequest(model=ad.entry, messages=[{"role": "user", "content": f"hi {cid}"}],
                          params={"max_tokens": 8}, custom_id=cid, resume_tag=tag)
        return await ad.asend(req, "flex", 30)

    async def go():
        return [await send("a", "job1"), await send("b", "job1"), await send("a", "job2"), await send("c", None)]

    outs = asyncio.run(go())
    found = ad.find_stored("job1", ["a", "b", "c", "zz"])
    assert sorted(found) == ["a", "b"]                       # c was not tagged; zz never sent
    assert [d["id"] for d in found["a"]] == [outs[0].body["id"]]   # job2's "a" is another job's item
    oc = ad.outcome(found["b"][0], {}, "flex")               # a stored completion is a complete answer
    assert oc.usage == outs[1].usage and oc.served_tier == "flex"
    # the SDK reads the same list (the wire shape the emulator serves is OpenAI's)
    sdk = openai.OpenAI(base_url=emu.openai_base_url, api_key="sk-t", max_retries=0)
    page = sdk.chat.completions.list(metadata={"flextier_job": "job1", "flextier_item": "b"}, model="gpt-5.4-mini")
    assert [c.id for c in page.data] == [outs[1].body["id"]]
    # listing bills nothing
    assert sum(1 for r in emu.engine.ledger.rows() if r.get("cost") not in (None, "0")) == 4


def test_tagging_respects_the_body():
    b = {"model": "m", "store": False}
    tag_for_resume(b, "job", "x")
    assert "metadata" not in b and b["store"] is False       # the user said no
    b = {"model": "m", "metadata": {f"k{i}": "v" for i in range(15)}}
    tag_for_resume(b, "job", "x")
    assert "store" not in b                                  # no room for two more pairs (16 at most)
    b = {"model": "m", "metadata": {"team": "a"}}
    tag_for_resume(b, "job", "x")
    assert b["store"] is True and b["metadata"] == {"team": "a", "flextier_job": "job", "flextier_item": "x"}
    b = {"model": "m"}
    tag_for_resume(b, "job", "x" * 600)                      # too long for a metadata value
    assert "store" not in b
