"""Embeddings through the official SDKs: OpenAI ``embeddings.create`` and google-genai
``models.embed_content`` (issue 13 item 4), billed from the catalog's embedding entries."""
from __future__ import annotations

import base64
import math
import struct
from decimal import Decimal

import httpx
import openai
import pytest
from google.genai import errors as genai_errors
from google.genai import types

from emu_tokens import o200k
from flextier.catalog import default_catalog
from flextier.emulator.clients import gemini_client, openai_client


def _price(name: str) -> Decimal:
    p = default_catalog().resolve(name).tier_prices("standard")
    assert p is not None and p.input is not None
    return p.input


def test_openai_sdk_embeddings_default_base64_native_dimension_and_ledger(calm):
    c = openai_client(calm)
    texts = ["the quick brown fox", "jumps over the lazy dog, twice"]
    r = c.embeddings.create(model="text-embedding-3-small", input=texts)   # the SDK asks for base64
    assert [d.index for d in r.data] == [0, 1]
    assert all(len(d.embedding) == 1536 for d in r.data)
    assert all(abs(math.sqrt(sum(v * v for v in d.embedding)) - 1) < 1e-4 for d in r.data)
    n = o200k(texts[0]) + o200k(texts[1])
    assert r.usage.prompt_tokens == n == r.usage.total_tokens
    row, = calm.ledger()
    assert (row["model"], row["served_tier"], row["outcome"]) == ("openai/text-embedding-3-small", "standard", "ok")
    assert (row["input_tokens"], row["output_tokens"]) == (n, 0)
    assert Decimal(row["cost"]) == Decimal(n) * _price("openai/text-embedding-3-small") / 1_000_000
    # deterministic: the same text gives the same vector, a different text another
    again = c.embeddings.create(model="text-embedding-3-small", input=texts[0])
    assert again.data[0].embedding == r.data[0].embedding and r.data[0].embedding != r.data[1].embedding


def test_openai_float_and_base64_agree_and_dimensions_truncate(calm):
    raw = httpx.post(calm.url + "/v1/embeddings", json={"model": "text-embedding-3-large", "input": "abc",
                                                         "encoding_format": "base64"}).json()
    b = base64.b64decode(raw["data"][0]["embedding"])
    as_b64 = list(struct.unpack(f"<{len(b) // 4}f", b))
    flt = openai_client(calm).embeddings.create(model="text-embedding-3-large", input="abc",
                                                encoding_format="float").data[0].embedding
    assert len(as_b64) == len(flt) == 3072
    assert max(abs(x - y) for x, y in zip(as_b64, flt)) < 1e-6
    small = openai_client(calm).embeddings.create(model="text-embedding-3-large", input="abc", dimensions=256,
                                                  encoding_format="float").data[0].embedding
    assert len(small) == 256 and abs(math.sqrt(sum(v * v for v in small)) - 1) < 1e-4
    # the leading components point the same way (a Matryoshka prefix, renormalised)
    scale = small[0] / flt[0]
    assert all(abs(s - f * scale) < 1e-5 for s, f in zip(small, flt[:256]))


def test_token_array_inputs_count_their_ids(calm):
    r = openai_client(calm).embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert r.usage.prompt_tokens == 5 and len(r.data) == 2


@pytest.mark.parametrize("kw,status,param", [
    ({"model": "text-embedding-ada-002", "input": "x", "dimensions": 64}, 400, "dimensions"),
    ({"model": "text-embedding-3-small", "input": "x", "dimensions": 5000}, 400, "dimensions"),
    ({"model": "gpt-5.4", "input": "x"}, 400, "model"),
    ({"model": "no-such-embedder", "input": "x"}, 404, "model"),
    ({"model": "text-embedding-3-small", "input": []}, 400, "input"),
])
def test_openai_embedding_validation_errors_in_openai_shape_and_unbilled(calm, kw, status, param):
    with pytest.raises(openai.APIStatusError) as ei:
        openai_client(calm).embeddings.create(**kw)
    assert ei.value.status_code == status
    assert ei.value.body["param"] == param and ei.value.body["type"] == "invalid_request_error"
    row, = calm.ledger()
    assert row["served_tier"] is None and row["cost"] == "0"


def test_embeddings_go_through_faults_like_chat(emulator):
    emu = emulator("calm", fault_500_p=1.0)
    with pytest.raises(openai.InternalServerError):
        openai_client(emu).embeddings.create(model="text-embedding-3-small", input="x")
    assert emu.ledger()[0]["outcome"] == "fault:500" and emu.ledger()[0]["cost"] == "0"


def test_gemini_sdk_embed_content_batch_and_dimensionality(calm):
    g = gemini_client(calm)
    r = g.models.embed_content(model="gemini-embedding-001", contents=["alpha beta", "gamma"])
    assert [len(e.values) for e in r.embeddings] == [3072, 3072]
    assert r.embeddings[0].values != r.embeddings[1].values
    r2 = g.models.embed_content(model="gemini-embedding-001", contents="alpha beta",
                                config=types.EmbedContentConfig(output_dimensionality=768))
    assert len(r2.embeddings[0].values) == 768 and r2.embeddings[0].values == r.embeddings[0].values[:768]
    rows = calm.ledger()
    n = o200k("alpha beta") + o200k("gamma")
    assert [(x["model"], x["input_tokens"], x["output_tokens"]) for x in rows] == \
        [("gemini/gemini-embedding-001", n, 0), ("gemini/gemini-embedding-001", o200k("alpha beta"), 0)]
    assert Decimal(rows[0]["cost"]) == Decimal(n) * _price("gemini/gemini-embedding-001") / 1_000_000


def test_gemini_rest_embed_content_single(calm):
    r = httpx.post(calm.url + "/v1beta/models/gemini-embedding-001:embedContent",
                   json={"content": {"parts": [{"text": "alpha beta"}]}}, headers={"x-goog-api-key": "k"})
    assert r.status_code == 200 and len(r.json()["embedding"]["values"]) == 3072


def test_gemini_embed_with_a_chat_model_is_google_404(calm):
    g = gemini_client(calm)
    with pytest.raises(genai_errors.ClientError) as ei:
        g.models.embed_content(model="gemini-2.5-flash", contents="x")
    assert ei.value.code == 404 and ei.value.status == "NOT_FOUND"
