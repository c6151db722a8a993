"""`ray start` with every address on loopback: Ray otherwise swaps 127.0.0.1 for the machine's
outward address (found by a UDP "connect" to 8.8.8.8); tests stay on 127.0.0.1."""
import sys

import ray._private.services as services

services.node_ip_address_from_perspective = lambda *a, **k: "127.0.0.1"
from ray.scripts.scripts import main  # noqa: E402

sys.argv = ["ray"] + sys.argv[1:]
main()
