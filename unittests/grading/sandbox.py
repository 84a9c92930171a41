"""Linux namespaces for one grading kernel, and the processes a kernel leaves behind.

Where Linux allows unprivileged user namespaces, each grading kernel runs as ``unshare
--user --pid --mount --net`` would run it (about what ``bwrap`` does, in ctypes, so that the kit
needs no extra tool):

- **PID**: the kernel is process 1 of its own namespace. Every process it starts lives and dies
  with it, and none of them can see or signal a process outside: the grader, the kernel starter,
  the other learners' kernels;
- **network**: a loopback interface only, and down: no network;
- **mount**: a new root that holds, read-only, the Python installation and the libraries it
  loaded, the kit's ``helper_utils/`` and ``unittests/`` (not ``helper_utils/reference/``: its
  modules are imported before, so its source is hidden) and the dataset; writable, only one
  size-limited tmpfs (the scratch copy of the submission, ``/tmp``, ``/dev/shm``) and the folder
  of the kernel's own connection sockets. The submissions, the other scratch copies, the
  gradebook and your home folder are not there;
- **user**: the kernel is root of its namespace with every capability dropped, so it can undo
  none of the above.

``python -m unittests.grading.sandbox`` says whether this machine allows it, and why not.
The other half of this module is the process tree: the children of a process, their private
memory, and killing every descendant (for a grader without namespaces, or as a last sweep).
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["View", "probe", "enter_user_namespace", "enter_pid_namespace", "enter_view", "drop_privileges", "harden",
           "undumpable", "become_subreaper", "descendants", "private_mb", "kill_descendants", "tree_disk_mb"]

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
SYSCALLS = {"x86_64": {"pivot_root": 155, "capset": 126}, "aarch64": {"pivot_root": 41, "capset": 91}}
DEVICES = ("null", "zero", "full", "random", "urandom")
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
          "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd",
          "/etc/group", "/etc/nsswitch.conf", "/etc/fonts")  # what Python, torch and matplotlib read


class _SandboxError(OSError):
    """A step of the sandbox failed (the message names it)."""


@dataclass
class View:
    """What one kernel sees of the file system.

    Attributes:
        newroot: an empty folder on the host where the new root is assembled (it stays empty there).
        scratch: the scratch copy of the submission; it reappears at the same path inside, on the tmpfs.
        readonly: bound read-only (missing paths are skipped).
        hidden: folders inside ``readonly`` ones replaced by an empty read-only folder.
        writable: bound read-write (the kernel's connection sockets).
        disk_mb: size of the one tmpfs behind the scratch copy, ``/tmp`` and ``/dev/shm``.
    """

    newroot: Path
    scratch: Path
    readonly: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)
    writable: list[Path] = field(default_factory=list)
    disk_mb: int = 512


# ---------------------------------------------------------------------------------------
# System calls
# ---------------------------------------------------------------------------------------

def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise _SandboxError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda text: None if text is None else os.fsencode(text)  # noqa: E731
    _check(_libc().mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {target}")


def _syscall(name: str, *args) -> None:
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        raise _SandboxError(0, f"no {name} system call number for a {platform.machine()} machine")
    _check(_libc().syscall(numbers[name], *args), name)


def _prctl(option: int, value: int) -> None:
    _check(_libc().prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


# ---------------------------------------------------------------------------------------
# Entering the namespaces
# ---------------------------------------------------------------------------------------

def enter_user_namespace() -> None:
    """Make this process root of a new user namespace (it must have one thread: call it before imports)."""
    uid, gid = os.getuid(), os.getgid()
    _check(_libc().unshare(CLONE_NEWUSER), "unshare (user namespace)")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")


def enter_pid_namespace() -> None:
    """Make the next child of this process the first process of a new PID namespace.

    This process stays in the one it was in, so it can watch and kill the kernel from outside.
    Call it right before that fork: a child forked before (an import running a program) would
    become process 1 instead, and its end would end the namespace.
    """
    _check(_libc().unshare(CLONE_NEWPID), "unshare (PID namespace)")


def _bind(source: str, target: str, readonly: bool) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    _mount(source, target, None, MS_BIND)  # not recursive: no cgroup or other mounts below it
    if readonly:  # a remount keeps the flags the source mount has (the kernel refuses to drop them)
        kept = os.statvfs(target).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC | 1024 | 2048)  # + noatime, nodiratime
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)


def _place(path: Path, root: str, readonly: bool = True) -> None:
    """Bind ``path`` at the same place under ``root``; a symbolic link (``/lib -> usr/lib``) is copied as one."""
    target = root + str(path)
    if os.path.islink(path):
        if not os.path.lexists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(path), target)
        return
    if os.path.exists(path):
        _bind(str(path), target, readonly)


def _covered(path: Path, bound: list[Path]) -> bool:
    return any(path == b or b in path.parents for b in bound)


def enter_view(view: View) -> None:
    """In process 1 of the new PID namespace: new mount, network, IPC and UTS namespaces, then the new root.

    Ends with the process in ``/`` of the new root, the old root gone, and the root read-only.
    """
    _check(_libc().unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare (mount, network)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    root = str(view.newroot)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")

    workspace = root + "/.workspace"  # one tmpfs bounds the scratch copy, /tmp and /dev/shm together
    os.makedirs(workspace)
    _mount("tmpfs", workspace, "tmpfs", MS_NOSUID | MS_NODEV, f"size={view.disk_mb}m,mode=755")
    for sub in ("scratch", "tmp", "shm"):
        os.makedirs(f"{workspace}/{sub}", mode=0o1777 if sub != "scratch" else 0o755)
    shutil.copytree(view.scratch, workspace + "/scratch", symlinks=True, dirs_exist_ok=True)

    os.makedirs(root + "/dev")  # first /dev and /tmp: later binds (the scratch copy...) may lie below /tmp
    _mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID, "size=64k,mode=755")
    for device in DEVICES:
        _bind(f"/dev/{device}", f"{root}/dev/{device}", readonly=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    _bind(workspace + "/shm", root + "/dev/shm", readonly=False)
    _bind(workspace + "/tmp", root + "/tmp", readonly=False)

    bound: list[Path] = []
    for path in sorted({Path(p) for p in (*SYSTEM, *view.readonly)}, key=lambda p: len(p.parts)):
        if not _covered(path, bound):
            _place(path, root)
            bound.append(path)
    for path in view.hidden:
        if os.path.isdir(root + str(path)):
            _mount("tmpfs", root + str(path), "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=555")
    for path in view.writable:
        _bind(str(path), root + str(path), readonly=False)
    _bind(workspace + "/scratch", root + str(view.scratch), readonly=False)
    _check(_libc().umount2(os.fsencode(workspace), MNT_DETACH), "umount the workspace")
    os.rmdir(workspace)

    os.makedirs(root + "/proc")  # a new procfs: it shows this PID namespace only
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(root + "/sys")  # a new sysfs (CPU topology for OpenMP), read-only, without the cgroup mounts
    _mount("sysfs", root + "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(root + "/.old")
    _syscall("pivot_root", os.fsencode(root), os.fsencode(root + "/.old"))
    os.chdir("/")
    _check(_libc().umount2(b"/.old", MNT_DETACH), "umount the old root")
    os.rmdir("/.old")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_privileges() -> None:
    """Drop every capability (the namespace's root keeps none) and forbid gaining any back."""
    for capability in range(64):
        _libc().prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)  # past the last one it fails: fine
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3, all zero
    _syscall("capset", ctypes.byref(header), data)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def harden(disk_mb: int) -> None:
    """Limits every kernel gets on Linux, with or without namespaces.

    Dies with its parent (the warden), cannot be read by its own children (``ptrace``,
    ``/proc/1/mem``), writes no core file and no single file over ``disk_mb``. (How many
    processes it starts is the warden's to count: ``RLIMIT_NPROC`` does not hold for root.)
    """
    import resource

    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_DUMPABLE, 0)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    size = disk_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def undumpable() -> None:
    """No other process of this user may read this one's memory (``ptrace``, ``/proc/PID/mem``)."""
    _prctl(PR_SET_DUMPABLE, 0)


def become_subreaper(on: bool = True) -> None:
    """Orphans of this process's descendants come back to it (instead of init), so it can kill them."""
    _prctl(PR_SET_CHILD_SUBREAPER, int(on))


# ---------------------------------------------------------------------------------------
# Does this machine allow it?
# ---------------------------------------------------------------------------------------

def probe() -> str:
    """``""`` when a kernel can be sandboxed here, else why not (one line).

    Runs the real steps in a throw-away child (``fork``: Linux only), so it answers for this
    machine, container and kernel settings.
    """
    if not sys.platform.startswith("linux"):
        return f"{platform.system()} has no Linux namespaces"
    if platform.machine() not in SYSCALLS:
        return f"no system call numbers for a {platform.machine()} machine"
    with tempfile.TemporaryDirectory(prefix="fashion-sandbox-") as tmp:
        view = View(newroot=Path(tmp, "root"), scratch=Path(tmp, "scratch"), disk_mb=4)
        view.newroot.mkdir()
        view.scratch.mkdir()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read)
            code = 0
            try:
                enter_user_namespace()
                enter_pid_namespace()
                grandchild = os.fork()
                if grandchild == 0:
                    try:
                        enter_view(view)
                        drop_privileges()
                        os._exit(0)
                    except BaseException as e:
                        os.write(write, f"{e}".encode()[:500])
                        os._exit(1)
                code = os.waitstatus_to_exitcode(os.waitpid(grandchild, 0)[1])
            except BaseException as e:
                os.write(write, f"{e}".encode()[:500])
                code = 1
            os._exit(code)
        os.close(write)
        reason = b""
        while chunk := os.read(read, 1000):
            reason += chunk
        os.close(read)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status == 0:
        return ""
    return reason.decode(errors="replace").strip() or f"the sandbox test ended with status {status}"


# ---------------------------------------------------------------------------------------
# Process trees
# ---------------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (of every thread of it); empty when it is gone."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first."""
    out: list[int] = []
    todo = _children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += _children(child)
    return out


def private_mb(pid: int) -> float:
    """Memory only ``pid`` holds (private pages: what it allocated or wrote after a fork); 0 when gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    kb = sum(int(line.split()[1]) for line in text.splitlines() if line.startswith(("Private_Clean:", "Private_Dirty:")))
    return kb / 1024


def kill_descendants(pid: int, spare: frozenset[int] = frozenset(), rounds: int = 50) -> int:
    """SIGKILL every descendant of ``pid`` but ``spare`` until none is left (a fork in between: next round).

    Reaps the killed ones that are this process's children. Returns how many were killed.
    """
    killed: set[int] = set()
    for _ in range(rounds):
        found = [p for p in descendants(pid) if p not in spare]
        if not found:
            break
        for child in found:
            try:
                os.kill(child, signal.SIGKILL)
                killed.add(child)
            except OSError:
                pass
        time.sleep(0.01)
        for child in killed:
            try:
                os.waitpid(child, os.WNOHANG)
            except ChildProcessError:
                pass
    return len(killed)


def tree_disk_mb(folder: Path, max_entries: int = 100_000) -> float:
    """Disk a folder really uses (blocks, so a sparse file counts what it holds); ``inf`` past ``max_entries``."""
    used, seen = 0, 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            seen += 1
            if seen > max_entries:
                return float("inf")
            try:
                used += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return used / 2**20


def main() -> int:
    reason = probe()
    print("sandbox: available" if not reason else f"sandbox: not available ({reason})")
    return 0 if not reason else 1


if __name__ == "__main__":
    sys.exit(main())
