"""Windows Job Objects: the structures' layout and the kernel32 call sequence, through a fake."""

from __future__ import annotations

import ctypes
import struct
from typing import Any

import pytest

from bicameral.platform import _winjob
from bicameral.platform._winjob import (
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    THREADENTRY32,
    JobObject,
)

POINTER_64 = struct.calcsize("P") == 8


@pytest.mark.skipif(not POINTER_64, reason="the sizes pinned are the 64-bit ABI's")
def test_structures_have_the_windows_sdk_layout() -> None:
    # winnt.h on x64: BASIC 64 bytes, IO_COUNTERS 48, EXTENDED 144; tlhelp32.h: 28.
    assert ctypes.sizeof(_winjob.JOBOBJECT_BASIC_LIMIT_INFORMATION) == 64
    assert ctypes.sizeof(_winjob.IO_COUNTERS) == 48
    assert ctypes.sizeof(JOBOBJECT_EXTENDED_LIMIT_INFORMATION) == 144
    assert JOBOBJECT_EXTENDED_LIMIT_INFORMATION.IoInfo.offset == 64
    assert ctypes.sizeof(THREADENTRY32) == 28
    assert JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE == 0x2000


class FakeKernel32:
    """Records the calls; one process (pid 42) with two threads, another with one."""

    def __init__(self, *, assign_ok: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.assign_ok = assign_ok
        self.limit_flags: int | None = None
        self.threads = [(7, 42), (8, 99), (9, 42)]  # (thread id, owner pid)
        self._cursor = 0
        self.open_handles: set[str] = set()

    def _handle(self, name: str) -> str:
        self.open_handles.add(name)
        return name

    def CreateJobObjectW(self, attributes: Any, name: Any) -> Any:
        self.calls.append(("CreateJobObjectW",))
        return self._handle("job")

    def SetInformationJobObject(self, job: Any, kind: int, info: Any, size: int) -> Any:
        extended = ctypes.cast(info, ctypes.POINTER(JOBOBJECT_EXTENDED_LIMIT_INFORMATION))
        self.limit_flags = extended.contents.BasicLimitInformation.LimitFlags
        self.calls.append(("SetInformationJobObject", job, kind, size))
        return 1

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> Any:
        self.calls.append(("OpenProcess", access, pid))
        return self._handle(f"process{pid}")

    def AssignProcessToJobObject(self, job: Any, process: Any) -> Any:
        self.calls.append(("AssignProcessToJobObject", job, process))
        return 1 if self.assign_ok else 0

    def TerminateJobObject(self, job: Any, code: int) -> Any:
        self.calls.append(("TerminateJobObject", job, code))
        return 1

    def CloseHandle(self, handle: Any) -> Any:
        self.calls.append(("CloseHandle", handle))
        self.open_handles.discard(handle)
        return 1

    def CreateToolhelp32Snapshot(self, flags: int, pid: int) -> Any:
        self.calls.append(("CreateToolhelp32Snapshot", flags))
        self._cursor = 0
        return self._handle("snapshot")

    def _fill(self, entry: Any) -> int:
        if self._cursor >= len(self.threads):
            return 0
        record = ctypes.cast(entry, ctypes.POINTER(THREADENTRY32)).contents
        assert record.dwSize == ctypes.sizeof(THREADENTRY32)
        record.th32ThreadID, record.th32OwnerProcessID = self.threads[self._cursor]
        self._cursor += 1
        return 1

    def Thread32First(self, snapshot: Any, entry: Any) -> Any:
        return self._fill(entry)

    def Thread32Next(self, snapshot: Any, entry: Any) -> Any:
        return self._fill(entry)

    def OpenThread(self, access: int, inherit: bool, tid: int) -> Any:
        self.calls.append(("OpenThread", access, tid))
        return self._handle(f"thread{tid}")

    def ResumeThread(self, thread: Any) -> Any:
        self.calls.append(("ResumeThread", thread))
        return 1  # the previous suspend count


def test_a_job_kills_on_close_adopts_the_suspended_child_then_resumes_its_threads() -> None:
    k = FakeKernel32()
    job = JobObject(k)
    assert k.limit_flags == JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    assert k.calls[1][2] == 9  # JobObjectExtendedLimitInformation
    assert k.calls[1][3] == ctypes.sizeof(JOBOBJECT_EXTENDED_LIMIT_INFORMATION)
    job.adopt_suspended(42)
    names = [c[0] for c in k.calls]
    # Assigned before anything runs; only pid 42's threads are resumed.
    assert names.index("AssignProcessToJobObject") < names.index("ResumeThread")
    assert [c[1] for c in k.calls if c[0] == "ResumeThread"] == ["thread7", "thread9"]
    assert ("OpenProcess", 0x0100 | 0x0001, 42) in k.calls  # SET_QUOTA | TERMINATE
    assert k.open_handles == {"job"}  # every other handle was closed
    job.terminate()
    assert ("TerminateJobObject", "job", 1) in k.calls
    job.close()
    job.close()  # once only
    assert k.open_handles == set()
    assert [c for c in k.calls if c == ("CloseHandle", "job")] == [("CloseHandle", "job")]


def test_a_failed_assignment_raises_before_resuming_and_leaks_no_handle() -> None:
    k = FakeKernel32(assign_ok=False)
    job = JobObject(k)
    with pytest.raises(OSError, match="AssignProcessToJobObject"):
        job.adopt_suspended(42)
    assert "ResumeThread" not in [c[0] for c in k.calls]  # the caller kills it, suspended
    job.close()
    assert k.open_handles == set()


def test_a_process_without_threads_to_resume_is_an_error() -> None:
    k = FakeKernel32()
    k.threads = [(8, 99)]
    with pytest.raises(OSError, match="could not resume process 42"):
        JobObject(k).adopt_suspended(42)
