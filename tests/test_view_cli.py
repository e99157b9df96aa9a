"""`mambaprof view`: TensorBoard with the PyTorch profiler plugin, started on a free loopback port, lists
the run's trace; SIGTERM stops it. A TensorBoard that never answers is the test's pytest-timeout."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from mambaprof.cli.view import free_port
from mambaprof.storage.rundir import read_run_record

pytest.importorskip("torch_tb_profiler")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, forked_cli):
    out = tmp_path_factory.mktemp("view") / "run"
    res = forked_cli("trace", "--out", str(out), "--seqlens", "16", "--repeats", "1", "--warmup", "0",
                  "--profile-repeats", "1", "--quiet")
    assert res.returncode == 0, res.stderr
    return out


def _plugin_runs(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/pytorch_profiler/runs", timeout=5) as resp:
        return json.loads(resp.read())


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@pytest.mark.slow
def test_view_serves_the_run_on_loopback_and_stops(tiny_run):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mambaprof", "view", str(tiny_run), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "KINETO_LOG_LEVEL": "5"})
    try:
        runs = None
        while True:  # until the plugin lists a run (a TensorBoard that never does: the pytest-timeout)
            assert proc.poll() is None, proc.communicate()
            try:
                answer = _plugin_runs(port)
            except OSError:
                answer = None
            if answer and answer["runs"]:
                runs = answer["runs"]
                break
            time.sleep(1)
        assert runs == [read_run_record(tiny_run)["run_id"]], f"plugin listed {runs}"
        # loopback only: another address of this host does not answer
        try:
            other = socket.gethostbyname(socket.gethostname())
        except OSError:
            other = "127.0.0.1"
        if not other.startswith("127."):
            assert not _accepts(other, port)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}/#pytorch_profiler" in stdout and "stopped TensorBoard" in stdout
    assert not _accepts("127.0.0.1", port)  # TensorBoard went with it


def test_view_errors(tiny_run, tmp_path, cli):
    res = cli("view", str(tmp_path))
    assert res.returncode == 2 and "has no profiler trace" in res.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = cli("view", str(tiny_run), "--port", str(port))
    assert res.returncode == 2 and f"--port {port} is already in use" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
