"""The Bedrock hook (``providers/bedrock/hooks.py``) bounds each attempt as a whole (issue 14 leftover).

botocore's timeouts are per socket read, so a wrapped boto3 client's attempt could run as long as
the server trickled; the hook now runs each attempt with a timeout on a worker thread, as the
Bedrock adapter does for ``complete()``.
"""
from __future__ import annotations

import pytest

import flextier

def test_bedrock_hook_bounds_the_whole_attempt(emu, make_policy):
    """botocore's timeouts are per read; the wrapped client's attempt has the policy's total
    (here 0.3 s against an answer the emulator takes seconds to give): a Timeout, possibly billed."""
    from flextier.emulator import clients as C
    from flextier.errors import Timeout

    emu.set_profile("calm", latency_scale=5)
    b = flextier.wrap(C.bedrock_client(emu), make_policy(flex_timeout=0.3, fallback="never", resend_on_timeout=0,
                                                         max_retries=0))
    with pytest.raises(Timeout) as ei:
        b.converse(modelId="us.amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert ei.value.possibly_billed and [a.outcome for a in ei.value.attempts] == ["Timeout"]
