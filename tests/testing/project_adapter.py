"""An outside project's tests of its own adapter, with bicameral's fixtures only.

Copied into a temporary directory and run there by test_outside_user.py, with
no conftest.py and without trio_mode: exactly what a user of the plugin has.
"""

import pytest
import trio

from bicameral.supervisor import ChildSpec, ChildStartError, current_child


class FlakyAdapter:
    """An adapter that crashes on its first run, and serves on the next ones."""

    def __init__(self) -> None:
        self.runs = 0
        self.serving = trio.Event()
        self.stopped_gracefully = False

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs == 1:
            raise ConnectionError("upstream went away")
        self.serving.set()
        await current_child().stopping.wait()
        self.stopped_gracefully = True


@pytest.mark.trio
async def test_adapter_is_restarted_after_a_crash(bicameral_supervisor):
    adapter = FlakyAdapter()
    sup = await bicameral_supervisor([ChildSpec("flaky", adapter)])
    with trio.fail_after(10):
        await adapter.serving.wait()
    entry = sup.snapshot()["children"][0]
    assert adapter.runs == 2
    assert entry["restarts"] == 1
    assert entry["state"] == "running"
    assert entry["last_exit"]["error"] == "ConnectionError('upstream went away')"
    await sup.stop()
    assert adapter.stopped_gracefully


@pytest.mark.trio
async def test_adapter_that_never_starts(bicameral_supervisor):
    async def broken(*, task_status):
        raise OSError("no such server")

    with pytest.raises(ChildStartError):
        await bicameral_supervisor([ChildSpec("broken", broken)])


@pytest.mark.trio
async def test_adapter_crash_loop_fails_the_test(bicameral_supervisor):
    async def always_crashing() -> None:
        raise ConnectionError("refused")

    await bicameral_supervisor([ChildSpec("loop", always_crashing)], max_restarts=2)
    await trio.sleep_forever()  # the fixture cancels this when the supervisor gives up
