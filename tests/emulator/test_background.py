"""Responses background mode through the official ``openai`` SDK (issue 19 §4).

``responses.create(background=True)`` answers at once, ``queued`` with the response id and no
output; ``responses.retrieve(id)`` returns it until it is finished, then the full response with
usage, billed once on the ledger under that id; ``background`` needs ``store``; a flex shed
after acceptance is a ``failed`` response with the shed's code and nothing billed; a plain
(non-background) request is unchanged.
"""
from __future__ import annotations

import time

import openai
import pytest

from flextier.emulator.clients import openai_client


def _until_done(c, rid: str, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while True:
        r = c.responses.retrieve(rid)
        if r.status not in ("queued", "in_progress"):
            return r
        assert time.monotonic() < end, r.status
        time.sleep(0.01)


def test_background_answers_at_once_then_retrieve_finishes(calm):
    c = openai_client(calm)
    r = c.responses.create(model="gpt-5.4-mini", input="tell me", service_tier="flex", background=True,
                           metadata={"k": "v"}, extra_headers={"x-flextier-item": "it-1"})
    assert r.status == "queued" and r.background is True and r.output == [] and r.usage is None
    assert r.id.startswith("resp_")
    done = _until_done(c, r.id)
    assert done.status in ("completed", "incomplete") and done.background is True
    assert done.id == r.id and done.usage.output_tokens > 0 and done.output_text
    assert done.metadata == {"k": "v"} and done.service_tier == "flex"
    row, = calm.ledger()
    assert row["request_id"] == r.id and row["item"] == "it-1" and float(row["cost"]) > 0
    assert row["output_tokens"] == done.usage.output_tokens
    again = c.responses.retrieve(r.id)   # reading it back costs nothing
    assert again.id == r.id and len(calm.ledger()) == 1
    assert c.responses.cancel(r.id).status == done.status   # finished stays finished


def test_background_needs_store(calm):
    c = openai_client(calm)
    with pytest.raises(openai.BadRequestError) as ei:
        c.responses.create(model="gpt-5.4-mini", input="x", background=True, store=False)
    assert ei.value.body["param"] == "store"
    row, = calm.ledger()
    assert row["cost"] in (None, "0")


def test_background_flex_shed_is_a_failed_response_not_billed(emulator):
    emu = emulator("outage")
    c = openai_client(emu)
    r = c.responses.create(model="gpt-5.4-mini", input="x", service_tier="flex", background=True)
    assert r.status == "queued"
    done = _until_done(c, r.id)
    assert done.status == "failed" and done.error is not None
    assert done.error.code in ("resource_unavailable", "flex_unavailable")
    assert all(row["cost"] in (None, "0") for row in emu.ledger())


def test_plain_responses_are_not_background(calm):
    r = openai_client(calm).responses.create(model="gpt-5.4-mini", input="x", service_tier="flex")
    assert r.status in ("completed", "incomplete") and r.background is False and r.usage is not None
