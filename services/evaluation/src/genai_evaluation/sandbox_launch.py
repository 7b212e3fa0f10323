"""Runs one untrusted program (read as JSON from stdin) in a fresh process with limits; the sandbox's launcher.

Started by ``genai_evaluation.sandbox`` as ``python -I -S sandbox_launch.py`` (standard library only, nothing
of the service is imported). With ``isolate`` (root, Linux) it:

1. unshares network, mount and PID namespaces: no network interface at all (not even loopback), mounts that
   the host never sees, and a process tree that dies with its first process;
2. forks the program's process (PID 1 of the new namespace), which makes the whole file system read-only,
   mounts a private, size-limited tmpfs on /tmp, /var/tmp and /dev/shm (the working directory is in it),
   and bind-mounts the Python installation read-only there (it may live under an unreadable /root);
3. sets rlimits (CPU seconds, address space, file size, open files, processes: fork bombs fail), drops to
   uid/gid 65534 with no supplementary groups, asks to be killed if this launcher dies, and execs Python.

Without ``isolate`` only the rlimits, the temporary working directory and the caller's wall-clock timeout
apply (documented in the README as the weaker mode). Exit status: the program's own, 128+N when a signal
N ended it, 125 when the sandbox itself could not be set up.
"""

import ctypes
import json
import os
import resource
import shutil
import sys
import tempfile

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, SIGKILL = 1, 9
NOBODY = 65534
SETUP_FAILED = 125


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _limits(config, processes):
    cpu = max(1, int(config["timeout_s"] + 0.999))
    memory = int(config["memory_mb"]) << 20
    files = int(config.get("file_mb", 16)) << 20
    for limit, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, files),
                         (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, processes)):
        resource.setrlimit(limit, (value, value))


def _own_processes():
    uid, count = os.geteuid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                pass
    return count


def _isolated(config):
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET), "unshare")
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    try:
        _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
        _check(libc.mount(None, b"/", None, MS_REMOUNT | MS_BIND | MS_RDONLY, None), "read-only root")
        size = f"size={int(config.get('file_mb', 16)) * 2}m,mode=1777".encode()
        for target in (b"/tmp", b"/var/tmp", b"/dev/shm"):
            if os.path.isdir(target):
                _check(libc.mount(b"tmpfs", target, b"tmpfs", MS_NOSUID | MS_NODEV, size), f"tmpfs {target!r}")
        python = "/tmp/.python"
        os.mkdir(python)
        _check(libc.mount(sys.base_prefix.encode(), python.encode(), None, MS_BIND | MS_REC, None), "bind python")
        _check(libc.mount(None, python.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None), "read-only python")
        work = "/tmp/work"
        os.mkdir(work)
        with open(f"{work}/program.py", "w", encoding="utf-8") as handle:
            handle.write(config["program"])
        for path in (work, f"{work}/program.py"):
            os.chown(path, NOBODY, NOBODY)
        exe = os.path.join(python, os.path.relpath(os.path.realpath(sys.executable), sys.base_prefix))
        _limits(config, 32)
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        libc.prctl(PR_SET_PDEATHSIG, SIGKILL)  # after setuid, which clears it
        os.chdir(work)
        os.execve(exe, [exe, "-I", "-S", "-B", "program.py"], {"PATH": "/usr/bin:/bin", "HOME": work, "LANG": "C.UTF-8"})
    except BaseException as exc:  # noqa: BLE001 - report why the sandbox could not start, then die
        sys.stderr.write(f"sandbox setup failed: {exc}\n")
        os._exit(SETUP_FAILED)


def _limited_only(config):
    work = tempfile.mkdtemp(prefix="genai-sandbox-")
    try:
        with open(os.path.join(work, "program.py"), "w", encoding="utf-8") as handle:
            handle.write(config["program"])
        pid = os.fork()
        if pid == 0:
            try:
                _limits(config, _own_processes() + 32)
                os.chdir(work)
                os.execve(sys.executable, [sys.executable, "-I", "-S", "-B", "program.py"],
                          {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"})
            except BaseException as exc:  # noqa: BLE001
                sys.stderr.write(f"sandbox setup failed: {exc}\n")
                os._exit(SETUP_FAILED)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    config = json.loads(sys.stdin.read())
    try:
        code = _isolated(config) if config.get("isolate") else _limited_only(config)
    except OSError as exc:
        sys.stderr.write(f"sandbox setup failed: {exc}\n")
        code = SETUP_FAILED
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
