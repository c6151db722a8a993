"""Model listings, token counting, and unknown routes in each provider's error shape
(issue 13 items 4 and 5), through the official SDKs where they have a call for it."""
from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from google.genai import errors as genai_errors

from emu_tokens import o200k
from flextier.catalog import default_catalog
from flextier.emulator.clients import anthropic_client, gemini_client, openai_client


def _ids(provider: str) -> set[str]:
    return {e.model_id for e in default_catalog().models(provider)}


def test_openai_models_list_and_retrieve_from_the_catalog(calm):
    c = openai_client(calm)
    listed = {m.id for m in c.models.list()}
    assert listed == _ids("openai") and "text-embedding-3-small" in listed
    m = c.models.retrieve("gpt-5.4")
    assert (m.id, m.object, m.owned_by) == ("gpt-5.4", "model", "openai")
    with pytest.raises(openai.NotFoundError) as ei:
        c.models.retrieve("gpt-0")
    assert ei.value.body["code"] == "model_not_found"


def test_anthropic_models_list_same_path_other_dialect(calm):
    c = anthropic_client(calm)
    page = c.models.list()
    assert {m.id for m in page.data} == _ids("anthropic") and all(m.type == "model" for m in page.data)
    assert c.models.retrieve("claude-sonnet-4-6").display_name
    with pytest.raises(anthropic.NotFoundError):
        c.models.retrieve("claude-0")


def test_gemini_models_list_get_and_paging(calm):
    g = gemini_client(calm)
    names = {m.name for m in g.models.list(config={"page_size": 2})}     # walks nextPageToken
    assert names == {f"models/{i}" for i in _ids("gemini")}
    m = g.models.get(model="gemini-2.5-flash")
    assert m.name == "models/gemini-2.5-flash" and "generateContent" in m.supported_actions
    assert "embedContent" in g.models.get(model="gemini-embedding-001").supported_actions
    with pytest.raises(genai_errors.ClientError) as ei:
        g.models.get(model="gemini-0")
    assert ei.value.code == 404


def test_gemini_count_tokens_equals_the_billed_prompt(calm):
    g = gemini_client(calm)
    text = "Count me: flex tiers halve the price of patient work."
    n = g.models.count_tokens(model="gemini-2.5-flash", contents=text).total_tokens
    billed = g.models.generate_content(model="gemini-2.5-flash", contents=text).usage_metadata.prompt_token_count
    assert n == billed == o200k(text)
    assert len(calm.ledger()) == 1          # the count is free and not a ledger row


def test_anthropic_count_tokens_equals_the_billed_prompt_with_tools(calm):
    c = anthropic_client(calm)
    tools = [{"name": "get_weather", "description": "Weather for a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    bare = c.messages.count_tokens(model="claude-sonnet-4-6", messages=msgs).input_tokens
    with_tools = c.messages.count_tokens(model="claude-sonnet-4-6", messages=msgs, tools=tools).input_tokens
    assert bare == o200k("Weather in Paris?")
    assert with_tools - bare >= 346            # Anthropic's documented tool-use system prompt, plus the schema
    billed = c.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=msgs, tools=tools)
    assert billed.usage.input_tokens == with_tools


@pytest.mark.parametrize("method,path,headers", [
    ("GET", "/v1/nothing-here", {}),
    ("PUT", "/v1/chat/completions", {}),                    # known path, wrong method (GET lists stored chats)
    ("DELETE", "/v1/embeddings", {"authorization": "Bearer k"}),
])
def test_openai_unknown_routes_and_methods_are_openai_errors(calm, method, path, headers):
    r = httpx.request(method, calm.url + path, headers=headers)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert path in err["message"]


def test_openai_sdk_sees_unknown_route_as_not_found_error(calm):
    with pytest.raises(openai.NotFoundError) as ei:
        openai_client(calm).get("/no/such/thing", cast_to=object)
    assert "Invalid URL" in ei.value.body["message"]


@pytest.mark.parametrize("method,path", [("GET", "/v1beta/nothing"), ("GET", "/v1beta/models/gemini-2.5-flash:"
                                                                             "generateContent"),
                                         ("POST", "/v1beta/files:nope")])
def test_google_unknown_routes_are_google_rpc_errors(calm, method, path):
    r = httpx.request(method, calm.url + path, headers={"x-goog-api-key": "k"})
    assert r.status_code == 404
    assert r.json()["error"]["status"] == "NOT_FOUND" and r.json()["error"]["code"] == 404


@pytest.mark.parametrize("method,path", [("GET", "/model/us.amazon.nova-pro-v1:0/converse"),
                                         ("POST", "/model/us.amazon.nova-pro-v1:0/not-an-operation"),
                                         ("GET", "/guardrail/x")])
def test_aws_unknown_operations_carry_x_amzn_errortype(calm, method, path):
    auth = ("AWS4-HMAC-SHA256 Credential=AKID/20261202/us-east-1/bedrock/aws4_request, "
            "SignedHeaders=host, Signature=0")
    r = httpx.request(method, calm.url + path, headers={"authorization": auth})
    assert r.status_code == 404
    assert r.headers["x-amzn-errortype"].split(":")[0] == "UnknownOperationException"
    assert isinstance(r.json()["message"], str)


def test_anthropic_unknown_route_is_anthropic_error(calm):
    r = httpx.get(calm.url + "/v1/nothing", headers={"anthropic-version": "2023-06-01", "x-api-key": "k"})
    assert r.status_code == 404
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "not_found_error"


def test_control_plane_unknown_route_is_json(calm):
    r = httpx.get(calm.url + "/_emulator/nothing")
    assert r.status_code == 404 and "error" in r.json()
