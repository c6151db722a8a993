"""A driver process for the crash test: runs a Ray job until the test SIGKILLs it."""
import os
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"
import ray  # noqa: E402
import ray.data

import flextier.ray
from flextier.emulator.clock import remote_clock

address, url, state, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ray.init(address=address, log_to_driver=False, _node_ip_address="127.0.0.1")
ds = ray.data.from_items([{"id": f"r{i}", "text": f"review {i}"} for i in range(n)], override_num_blocks=8)
out = flextier.ray.process(ds, model="openai/gpt-5.4-mini", prompt_column="text", template="Classify: {text}",
                           deadline="2h", job="crash", state=state, base_url=url, api_key="emulator",
                           clock=remote_clock(url), workers=2, batch_size=40, max_tokens=16,
                           progress_every=None)
out.take_all()
