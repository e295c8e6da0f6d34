"""Our XML-RPC namespace inside a real supervisord (bot_runtime/host/supervisor_rpc.py): programs are added from
their file alone, and supervisord's own parse agrees with ours (a reloadConfig afterwards finds nothing to change)."""

from __future__ import annotations

import os
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from supervisor.xmlrpc import Faults

from bot_runtime.host.supervisor import Supervisord, program_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisord]:
    instance = Supervisord(
        tmp_path / "host",
        identifier=f"test-rpc-{os.getpid()}",
        python=sys.executable,
        project_root=ROOT,
        environment={**os.environ, "RUNTIME_SECRET_KEY": "unused"},
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.shutdown()


def _sleeper(supervisor: Supervisord, tenant_id: str) -> Path:
    """A program file like the agent's (same name, logs and options) running ``sleep`` instead of a runtime."""
    supervisor.write_program(tenant_id, {"TENANT": tenant_id, "RUNTIME_LEASE_TOKEN": "7"})
    path = supervisor.program_file(tenant_id)
    text = path.read_text().splitlines()
    text = [line if not line.startswith("command=") else "command=/bin/sleep 60" for line in text]
    path.write_text("\n".join(text) + "\n")
    return path


def _unchanged(supervisor: Supervisord) -> bool:
    added, changed, removed = supervisor.rpc("reloadConfig")[0]
    return added == changed == removed == []


def test_the_namespace_is_loaded(supervisor: Supervisord) -> None:
    assert supervisor.rpc("getAPIVersion", namespace="botfactory") == "1"


def test_a_program_is_added_started_and_forgotten_without_reload(supervisor: Supervisord) -> None:
    for index in range(3):
        _sleeper(supervisor, f"tenant{index}")
        supervisor.add_program(f"tenant{index}")
    # supervisord's own parse of conf.d finds exactly what we added: same programs, same settings.
    assert _unchanged(supervisor)
    name = program_name("tenant1")
    supervisor.start_process(name)
    info = supervisor.all_info()
    assert set(info) == {program_name(f"tenant{index}") for index in range(3)}
    assert info[name]["statename"] in ("STARTING", "RUNNING") and info[name]["pid"] > 0
    # A running program is not forgotten; once stopped it is, file and config alike.
    assert supervisor.remove_program("tenant1") is False
    supervisor.rpc("stopProcess", name, True)
    assert supervisor.remove_program("tenant1") is True
    assert not supervisor.program_file("tenant1").exists()
    assert name not in supervisor.all_info()
    assert _unchanged(supervisor)


def test_adding_again_replaces_a_stopped_program(supervisor: Supervisord) -> None:
    path = _sleeper(supervisor, "again")
    supervisor.add_program("again")
    before = path.read_text()
    path.write_text(before.replace('RUNTIME_LEASE_TOKEN="7"', 'RUNTIME_LEASE_TOKEN="8"'))
    assert path.read_text() != before
    supervisor.add_program("again")
    assert _unchanged(supervisor)  # the new token is what supervisord would read too
    supervisor.start_process(program_name("again"))
    pid = supervisor.all_info()[program_name("again")]["pid"]
    environ = b""
    deadline = time.monotonic() + 5
    while b"RUNTIME_LEASE_TOKEN=" not in environ and time.monotonic() < deadline:  # until the exec happened
        time.sleep(0.05)
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"RUNTIME_LEASE_TOKEN=8" in environ
    with pytest.raises(xmlrpc.client.Fault) as running:
        supervisor.rpc("addProgramFile", str(path), namespace="botfactory")
    assert running.value.faultCode == Faults.ALREADY_ADDED


def test_a_bad_file_is_refused_and_adds_nothing(supervisor: Supervisord) -> None:
    bad = supervisor.conf_dir / "bad.conf"
    bad.write_text("[inet_http_server]\nport=127.0.0.1:1\n")
    with pytest.raises(xmlrpc.client.Fault) as refused:
        supervisor.rpc("addProgramFile", str(bad), namespace="botfactory")
    assert refused.value.faultCode == Faults.INCORRECT_PARAMETERS
    bad.write_text("[program:broken]\nautostart=false\n")  # no command
    with pytest.raises(xmlrpc.client.Fault) as no_command:
        supervisor.rpc("addProgramFile", str(bad), namespace="botfactory")
    assert no_command.value.faultCode == Faults.INCORRECT_PARAMETERS
    bad.unlink()
    with pytest.raises(xmlrpc.client.Fault) as missing:
        supervisor.rpc("addProgramFile", str(bad), namespace="botfactory")
    assert missing.value.faultCode == Faults.BAD_NAME
    assert supervisor.all_info() == {}
