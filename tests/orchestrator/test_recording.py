"""Finding the required streams: outlets in other processes, as on a rig."""

import subprocess
import sys
import time
import uuid

import pytest

from stimtrain.orchestrator.session.recording import StreamsMissing, wait_for_streams

_OUTLET = """
import sys, pylsl
name = sys.argv[1]
outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 2, 100, "float32", name))
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def outlets():
    """Three outlets, each in its own process, opened one after another."""
    names = [f"rec-test-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    procs = []
    try:
        for name in names:
            proc = subprocess.Popen(
                [sys.executable, "-c", _OUTLET, name],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            assert proc.stdout.readline().strip() == "ready"
        yield names
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(10)


def test_every_outlet_of_other_processes_is_found(outlets):
    # On one machine liblsl's multicast wave reaches only the outlet bound last
    # to the shared port; the others answer the unicast wave, which comes
    # later. All three must be found, in the order asked.
    t0 = time.monotonic()
    infos = wait_for_streams(list(reversed(outlets)), timeout=5.0)
    assert [i.name() for i in infos] == list(reversed(outlets))
    assert time.monotonic() - t0 < 5.0


def test_a_missing_stream_is_named_with_what_is_visible(outlets):
    with pytest.raises(StreamsMissing) as err:
        wait_for_streams([outlets[0], "rec-test-nobody"], timeout=1.5)
    message = str(err.value)
    assert "rec-test-nobody" in message.split(";")[0]
    assert outlets[0] not in message.split(";")[0]
    for name in outlets:
        assert f"{name} (EEG)" in message
