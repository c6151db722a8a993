"""Splitting a job into provider batches within each provider's limits."""
from __future__ import annotations

from flextier._types import CallRequest
from flextier.batch import BatchItem, get_backend
from flextier.batch.base import wire_id

from .conftest import entry, make_items


def test_split_by_count_and_by_endpoint(monkeypatch):
    e = entry("openai")
    be = get_backend(e, base_url="http://127.0.0.1:9/v1", api_key="k")
    monkeypatch.setattr(type(be), "max_items", 4)
    chat = make_items(e, 10)
    resp = [BatchItem(f"r{i}", CallRequest(model=e, messages=[{"role": "user", "content": "x"}], endpoint="responses"))
            for i in range(3)]
    chunks = list(be.split(chat[:5] + resp + chat[5:]))
    assert [len(c) for c in chunks] == [4, 4, 2, 3]
    assert all(len({be.group(i) for i in c}) == 1 for c in chunks)
    assert sorted(i.item_id for c in chunks for i in c) == sorted(i.item_id for i in chat + resp)


def test_split_by_bytes(monkeypatch):
    e = entry("gemini")
    be = get_backend(e, base_url="http://127.0.0.1:9", api_key="k")
    big = "word " * 300_000                                         # ~1.5 MB per request
    items = [BatchItem(f"b{i}", CallRequest(model=e, messages=[{"role": "user", "content": big}])) for i in range(20)]
    sizes = {i.item_id: be.line_size(i) for i in items}
    chunks = list(be.split(items))
    assert len(chunks) == 2
    for c in chunks:
        assert sum(sizes[i.item_id] for i in c) <= be.max_bytes - be.envelope_bytes
    assert sum(len(c) for c in chunks) == 20


def test_limits_match_the_providers():
    assert get_backend(entry("openai"), base_url="http://127.0.0.1:9/v1", api_key="k").max_items == 50_000
    a = get_backend(entry("anthropic"), base_url="http://127.0.0.1:9", api_key="k")
    assert (a.max_items, a.max_bytes) == (100_000, 256 * 1024 * 1024)
    assert get_backend(entry("gemini"), base_url="http://127.0.0.1:9", api_key="k").max_bytes == 20 * 1024 * 1024


def test_wire_ids_are_safe_and_stable():
    assert wire_id("item_1-a") == "item_1-a"
    odd = wire_id("line 7/ü")
    assert odd == wire_id("line 7/ü") and len(odd) == 41 and odd.isalnum()
    assert wire_id(odd) != odd           # an id that looks hashed is hashed too: no collisions
