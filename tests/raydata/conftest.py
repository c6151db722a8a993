"""One local two-node Ray cluster for the module (two raylets, one CPU each, on 127.0.0.1).

Started with ``ray start --head --block`` and ``ray start --address ... --block`` as child
processes of the test (so teardown stops exactly these, never another Ray on the machine),
and torn down after the module.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# Ray resolves "127.0.0.1" to the machine's outward address (found by a UDP "connect" to
# 8.8.8.8, which the suite's network guard refuses) unless this is off; the cluster then lives
# on loopback only. Token auth is off for this throwaway cluster. Both must be set before ray
# is imported (its constants are read at import).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"
ray = pytest.importorskip("ray")
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def cluster():
    tmp = tempfile.mkdtemp(prefix="ft-ray-")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0", RAY_AUTH_MODE="disabled")
    # the head lives on loopback only; the second raylet joins it as a real second node (its
    # `ray start --address` refuses to with the flag off, and --node-ip-address keeps it on loopback)
    env2 = dict(env)
    env2.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--block", "--disable-usage-stats",
              "--object-store-memory", str(100 * 1024 * 1024)]
    ray_bin = [sys.executable, str(Path(__file__).with_name("_ray_start.py"))]
    head = subprocess.Popen(ray_bin + ["start", "--head", "--port", str(port), "--include-dashboard", "false",
                             "--temp-dir", tmp] + common, env=env2, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    procs = [head]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or head.poll() is not None:
                    raise RuntimeError("ray head did not start")
                time.sleep(0.2)
        node2 = subprocess.Popen(ray_bin + ["start", "--address", address] + common, env=env2,
                                 stdout=open(Path(tmp) / "node2.log", "w"), stderr=subprocess.STDOUT,
                                 start_new_session=True)
        procs.append(node2)
        os.environ["PYTHONPATH"] = env["PYTHONPATH"]
        ray.init(address=address, log_to_driver=False, namespace="flextier-tests", _node_ip_address="127.0.0.1")
        deadline = time.monotonic() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            if time.monotonic() > deadline or node2.poll() is not None:
                print((Path(tmp) / "node2.log").read_text()[-3000:])
                raise RuntimeError("second ray node did not join")
            time.sleep(0.2)
        yield {"address": address, "env": env}
    finally:
        try:
            ray.shutdown()
        except Exception:
            pass
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
            try:  # each `ray start` is its own session: its raylet, GCS and workers go with it
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
