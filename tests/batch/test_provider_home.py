"""A provider's batch backend lives with its dialect (issue 12 item 2); the old import paths still work.

Anthropic and OpenAI are the providers moved into a package so far (``providers/anthropic/``: the dialect in
``__init__``, the Message Batches backend in ``batch.py``). The batch interface moved below the
providers (``providers/batch_base.py``) so that ``providers`` never imports ``batch``
(``tests/test_import_cycles.py`` checks the package layering).
"""
from __future__ import annotations

import flextier.batch.anthropic as old_anthropic
import flextier.batch.base as old_base
import flextier.batch.openai as old_openai
import flextier.providers.anthropic as anthropic_pkg
import flextier.providers.anthropic.batch as new_anthropic
import flextier.providers.batch_base as new_base
import flextier.providers.openai as openai_pkg
import flextier.providers.openai.batch as new_openai
from flextier.batch import backend_class, get_backend
from flextier.catalog import default_catalog
from flextier.providers import adapter_class


def test_old_and_new_paths_are_the_same_objects() -> None:
    assert old_anthropic.AnthropicBatch is new_anthropic.AnthropicBatch
    assert backend_class("anthropic") is new_anthropic.AnthropicBatch
    for name in old_base.__all__:
        assert getattr(old_base, name) is getattr(new_base, name), name
    assert adapter_class("anthropic") is anthropic_pkg.AnthropicAdapter
    assert old_openai.OpenAIBatch is new_openai.OpenAIBatch
    assert backend_class("openai") is new_openai.OpenAIBatch
    assert adapter_class("openai") is openai_pkg.OpenAIAdapter


def test_backend_from_the_registry_builds_its_client_with_the_factory() -> None:
    e = default_catalog().resolve("anthropic/claude-haiku-4-5")
    b = get_backend(e, base_url="http://127.0.0.1:9", api_key="k")
    assert isinstance(b, new_base.BatchBackend)
    assert b.client.max_retries == 0
