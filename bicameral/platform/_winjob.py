"""Windows Job Objects, through ctypes: a server's whole tree, ended as one.

Every server runs in its own job with ``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE``:
the processes it starts join the job at creation, and when the last handle
to the job closes (the daemon's; the kernel closes it however the daemon
dies, TerminateProcess and crashes included) Windows ends every process in
it. A stop ends the job explicitly (``TerminateJobObject``).

The child is created suspended (``CREATE_SUSPENDED``), assigned to the job,
and only then resumed, so not even its first grandchild can start outside
the job. ``subprocess.Popen`` keeps no thread handle, so the resume finds
the child's threads with a Toolhelp snapshot (``CreateToolhelp32Snapshot``,
``Thread32First``/``Thread32Next``, ``OpenThread``, ``ResumeThread``), all
documented kernel32 calls.

The structures are plain ``ctypes.Structure`` and the calls go through a
`Kernel32` object, so the tests check the layout and the call sequence on any
platform with a fake one.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any, Protocol

__all__ = [
    "JOBOBJECT_EXTENDED_LIMIT_INFORMATION",
    "JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE",
    "THREADENTRY32",
    "JobObject",
    "Kernel32",
]

JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9
PROCESS_SET_QUOTA = 0x0100
PROCESS_TERMINATE = 0x0001
THREAD_SUSPEND_RESUME = 0x0002
TH32CS_SNAPTHREAD = 0x00000004
INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value

_DWORD = ctypes.c_uint32
_LARGE_INTEGER = ctypes.c_int64
_SIZE_T = ctypes.c_size_t  # also ULONG_PTR


class IO_COUNTERS(ctypes.Structure):
    _fields_ = [
        ("ReadOperationCount", ctypes.c_uint64),
        ("WriteOperationCount", ctypes.c_uint64),
        ("OtherOperationCount", ctypes.c_uint64),
        ("ReadTransferCount", ctypes.c_uint64),
        ("WriteTransferCount", ctypes.c_uint64),
        ("OtherTransferCount", ctypes.c_uint64),
    ]


class JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", _LARGE_INTEGER),
        ("PerJobUserTimeLimit", _LARGE_INTEGER),
        ("LimitFlags", _DWORD),
        ("MinimumWorkingSetSize", _SIZE_T),
        ("MaximumWorkingSetSize", _SIZE_T),
        ("ActiveProcessLimit", _DWORD),
        ("Affinity", _SIZE_T),
        ("PriorityClass", _DWORD),
        ("SchedulingClass", _DWORD),
    ]


class JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", JOBOBJECT_BASIC_LIMIT_INFORMATION),
        ("IoInfo", IO_COUNTERS),
        ("ProcessMemoryLimit", _SIZE_T),
        ("JobMemoryLimit", _SIZE_T),
        ("PeakProcessMemoryUsed", _SIZE_T),
        ("PeakJobMemoryUsed", _SIZE_T),
    ]


class THREADENTRY32(ctypes.Structure):
    _fields_ = [
        ("dwSize", _DWORD),
        ("cntUsage", _DWORD),
        ("th32ThreadID", _DWORD),
        ("th32OwnerProcessID", _DWORD),
        ("tpBasePri", ctypes.c_int32),  # LONG: 32 bits on Windows
        ("tpDeltaPri", ctypes.c_int32),
        ("dwFlags", _DWORD),
    ]


class Kernel32(Protocol):
    """The kernel32 functions used here (``ctypes.WinDLL("kernel32")`` has them all)."""

    def CreateJobObjectW(self, attributes: Any, name: Any) -> Any: ...
    def SetInformationJobObject(self, job: Any, kind: int, info: Any, size: int) -> Any: ...
    def OpenProcess(self, access: int, inherit: bool, pid: int) -> Any: ...
    def AssignProcessToJobObject(self, job: Any, process: Any) -> Any: ...
    def TerminateJobObject(self, job: Any, code: int) -> Any: ...
    def CloseHandle(self, handle: Any) -> Any: ...
    def CreateToolhelp32Snapshot(self, flags: int, pid: int) -> Any: ...
    def Thread32First(self, snapshot: Any, entry: Any) -> Any: ...
    def Thread32Next(self, snapshot: Any, entry: Any) -> Any: ...
    def OpenThread(self, access: int, inherit: bool, tid: int) -> Any: ...
    def ResumeThread(self, thread: Any) -> Any: ...


def _kernel32() -> Kernel32:
    if sys.platform != "win32":
        raise OSError("Job Objects exist only on Windows")
    from ctypes import wintypes

    k = ctypes.WinDLL("kernel32", use_last_error=True)
    k.CreateJobObjectW.restype = wintypes.HANDLE
    k.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
    k.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, _DWORD]
    k.OpenProcess.restype = wintypes.HANDLE
    k.OpenProcess.argtypes = [_DWORD, wintypes.BOOL, _DWORD]
    k.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
    k.TerminateJobObject.argtypes = [wintypes.HANDLE, ctypes.c_uint]
    k.CloseHandle.argtypes = [wintypes.HANDLE]
    k.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
    k.CreateToolhelp32Snapshot.argtypes = [_DWORD, _DWORD]
    k.Thread32First.argtypes = [wintypes.HANDLE, ctypes.POINTER(THREADENTRY32)]
    k.Thread32Next.argtypes = [wintypes.HANDLE, ctypes.POINTER(THREADENTRY32)]
    k.OpenThread.restype = wintypes.HANDLE
    k.OpenThread.argtypes = [_DWORD, wintypes.BOOL, _DWORD]
    k.ResumeThread.restype = _DWORD
    k.ResumeThread.argtypes = [wintypes.HANDLE]
    return k


def _fail(what: str) -> OSError:
    if sys.platform == "win32":
        err = ctypes.get_last_error()
        return OSError(err, f"{what} failed: {ctypes.FormatError(err)}")
    return OSError(f"{what} failed")


class JobObject:
    """One job with ``KILL_ON_JOB_CLOSE``; `close` (or the daemon's death) ends its processes."""

    def __init__(self, kernel32: Kernel32 | None = None) -> None:
        self._k = kernel32 if kernel32 is not None else _kernel32()
        handle = self._k.CreateJobObjectW(None, None)
        if not handle:
            raise _fail("CreateJobObject")
        self._handle: Any = handle
        info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION()
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        ok = self._k.SetInformationJobObject(
            handle,
            JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS,
            ctypes.byref(info),
            ctypes.sizeof(info),
        )
        if not ok:
            error = _fail("SetInformationJobObject")
            self.close()
            raise error

    def adopt_suspended(self, pid: int) -> None:
        """Put the suspended process ``pid`` in the job, then resume its threads.

        On failure the process is left suspended: the caller kills it.
        """
        process = self._k.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, pid)
        if not process:
            raise _fail("OpenProcess")
        try:
            if not self._k.AssignProcessToJobObject(self._handle, process):
                raise _fail("AssignProcessToJobObject")
        finally:
            self._k.CloseHandle(process)
        self._resume(pid)

    def _resume(self, pid: int) -> None:
        snapshot = self._k.CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0)
        if not snapshot or snapshot == INVALID_HANDLE_VALUE:
            raise _fail("CreateToolhelp32Snapshot")
        resumed = 0
        try:
            entry = THREADENTRY32()
            entry.dwSize = ctypes.sizeof(THREADENTRY32)
            more = self._k.Thread32First(snapshot, ctypes.byref(entry))
            while more:
                if entry.th32OwnerProcessID == pid:
                    thread = self._k.OpenThread(THREAD_SUSPEND_RESUME, False, entry.th32ThreadID)
                    if thread:
                        try:
                            if self._k.ResumeThread(thread) != 0xFFFFFFFF:
                                resumed += 1
                        finally:
                            self._k.CloseHandle(thread)
                more = self._k.Thread32Next(snapshot, ctypes.byref(entry))
        finally:
            self._k.CloseHandle(snapshot)
        if not resumed:
            raise OSError(f"could not resume process {pid} after putting it in its job")

    def terminate(self, code: int = 1) -> None:
        """End every process in the job now."""
        if self._handle is not None:
            self._k.TerminateJobObject(self._handle, code)

    def close(self) -> None:
        """Close the handle: with ``KILL_ON_JOB_CLOSE``, whatever still runs in it ends."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self._k.CloseHandle(handle)
