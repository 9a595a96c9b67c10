"""htbo.locks: run-directory and cell locks, atomic writes, die-with-parent, OS error messages.

Processes are real subprocesses. They import ``htbo.locks`` without ``htbo/__init__`` (which
imports JAX, ~2 s a process) by registering a bare ``htbo`` package first.
"""
import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from htbo import locks
from htbo.locks import (CellLock, DirectoryLock, LockedError, atomic_write, claim_cell,
                        holder, oserror_message, process_start_time)

SRC = Path(__file__).resolve().parents[1] / "src"
PRELUDE = (f"import sys, types; _p = types.ModuleType('htbo'); _p.__path__ = [{str(SRC / 'htbo')!r}]; "
           "sys.modules['htbo'] = _p\nfrom htbo import locks\nimport os, sys, time, subprocess\n")
TIMEOUT = 10.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-first utilities")


def spawn(code: str, *args: str) -> subprocess.Popen:
    """``python -c PRELUDE+code args...`` with ``src`` on PYTHONPATH; stdout piped, text mode."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, text=True)


def wait_for(pred, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def gone(pid: int) -> bool:
    """No process ``pid`` left, or only its zombie (re-parented children may never be reaped here)."""
    state = locks._proc_state(pid)
    return state is None or state in ("Z", "X")


def kill_quietly(*procs):
    for p in procs:
        if isinstance(p, int):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        elif p is not None and p.poll() is None:
            p.kill()
            p.wait(TIMEOUT)


@pytest.fixture
def procs():
    started = []
    yield started
    kill_quietly(*started)


# ---------------------------------------------------------------- process_start_time

def test_process_start_time():
    me = process_start_time(os.getpid())
    assert isinstance(me, int) and me > 0 and me == process_start_time(os.getpid())
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert process_start_time(pid_max + 1) is None
    assert process_start_time(0) is None and process_start_time(-5) is None
    fields = " ".join(str(k) for k in range(4, 53))  # field k holds k, so starttime (22) reads 22
    assert locks._parse_start_time(f"1234 (a b) c) (d ) S {fields}") == 22
    assert locks._parse_start_time(f"7 ()) R {fields}") == 22


# ---------------------------------------------------------------- DirectoryLock

HOLD_DIR = """
    lk = locks.DirectoryLock(sys.argv[1], command="htbo run --out x")
    lk.acquire()
    {extra}
    time.sleep(60)
"""


def test_directory_lock_held_then_freed_by_sigkill(tmp_path, procs):
    p = spawn(HOLD_DIR.format(extra=""), str(tmp_path))
    procs.append(p)
    lock_file = tmp_path / locks.LOCK_NAME
    wait_for(lambda: (read_json(lock_file) or {}).get("pid") == p.pid, "the holder to record itself")
    with pytest.raises(LockedError) as info:
        DirectoryLock(tmp_path).acquire()
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path) in msg
    assert re.search(rf"\(PID {p.pid}, since \d\d:\d\d:\d\d: htbo run --out x\)", msg), msg
    assert info.value.holder["pid"] == p.pid and isinstance(info.value, ValueError)
    p.kill()
    p.wait(TIMEOUT)
    with DirectoryLock(tmp_path, command="me") as lk:  # at once: the kernel dropped the dead one's lock
        assert lk.held and read_json(lock_file)["pid"] == os.getpid()
    assert lock_file.exists() and not lk.held


def test_directory_lock_not_inherited_by_children(tmp_path, procs):
    # The holder starts a child that exits, then one that sleeps, both with close_fds=False (so only
    # O_CLOEXEC keeps the lock out of them); each child reports whether it sees the lock file open.
    # (Python opens fds non-inheritable anyway, PEP 446: this guards against set_inheritable & co.)
    code = HOLD_DIR.format(extra="""
    probe = ("import os, sys; fds = os.listdir('/proc/self/fd'); "
             "print(any(os.path.realpath('/proc/self/fd/' + f).endswith('.htbo-lock') for f in fds), "
             "flush=True); "
             "import time; time.sleep(60 if len(sys.argv) > 1 else 0)")
    print(subprocess.run([sys.executable, '-c', probe], close_fds=False, capture_output=True,
                         text=True).stdout.strip(), flush=True)
    child = subprocess.Popen([sys.executable, '-c', probe, 'stay'], close_fds=False,
                             stdout=subprocess.PIPE, text=True)
    print(child.stdout.readline().strip(), child.pid, flush=True)""")
    p = spawn(code, str(tmp_path))
    procs.append(p)
    assert p.stdout.readline().strip() == "False"  # first child saw no lock fd, and has exited
    seen, child_pid = p.stdout.readline().split()
    procs.append(int(child_pid))
    assert seen == "False"
    third = spawn("""
        try:
            locks.DirectoryLock(sys.argv[1]).acquire()
        except locks.LockedError as e:
            print(e.holder["pid"]); sys.exit(3)
    """, str(tmp_path))
    out, _ = third.communicate(timeout=TIMEOUT)
    assert third.returncode == 3 and out.strip() == str(p.pid)  # the holder still holds it
    p.kill()
    p.wait(TIMEOUT)
    assert not gone(int(child_pid))  # the sleeping child lives on, without the lock:
    with DirectoryLock(tmp_path):
        pass


def test_directory_lock_same_object_twice_and_same_process(tmp_path):
    lk = DirectoryLock(tmp_path)
    lk.acquire("first")
    try:
        with pytest.raises(ValueError, match="already locked") as info:
            lk.acquire()
        assert not isinstance(info.value, LockedError)
        with pytest.raises(LockedError, match=rf"PID {os.getpid()}, since .*: first\)"):
            DirectoryLock(tmp_path).acquire()  # another open file description conflicts too
    finally:
        lk.release()
    lk.release()  # idempotent
    with pytest.raises(FileNotFoundError):
        DirectoryLock(tmp_path / "missing").acquire()


# ---------------------------------------------------------------- CellLock

def test_cell_lock_held_by_live_process(tmp_path, procs):
    path = tmp_path / "cell.json.lock"
    p = spawn(f"""
        c = locks.claim_cell({str(path)!r})
        print(c is not None, flush=True)
        time.sleep(60)
    """)
    procs.append(p)
    assert p.stdout.readline().strip() == "True"
    assert claim_cell(path) is None
    h = holder(path)
    assert h["pid"] == p.pid and h["live"] is True
    p.kill()
    p.wait(TIMEOUT)
    assert holder(path)["live"] is False
    c = claim_cell(path)
    assert isinstance(c, CellLock) and read_json(path)["pid"] == os.getpid()
    c.release()
    assert not path.exists()


@pytest.mark.parametrize("content", ["", "0", '{"pid": 0}', "garbage\x00{", "unrelated", "sleeper"])
def test_cell_lock_stale_contents_are_taken_over(tmp_path, procs, content):
    path = tmp_path / "cell.json.lock"
    if content == "unrelated":  # a live process that does not hold the lock (a reused PID)
        content = json.dumps({"pid": os.getppid(), "start_time": process_start_time(os.getppid())})
        assert holder(path.parent / "x") is None
    elif content == "sleeper":
        p = subprocess.Popen(["sleep", "60"])
        procs.append(p)
        content = json.dumps({"pid": p.pid, "start_time": process_start_time(p.pid)})
    path.write_text(content)
    with claim_cell(path) as c:
        assert c is not None and c.held
        assert read_json(path) == {"pid": os.getpid(), "start_time": process_start_time(os.getpid())}
        assert claim_cell(path) is None  # now it is held (by us)
    assert not path.exists() and not c.held


def test_holder_liveness_needs_matching_start_time(tmp_path):
    path = tmp_path / "x.lock"
    me, start = os.getpid(), process_start_time(os.getpid())
    path.write_text(json.dumps({"pid": me, "start_time": start}))
    assert holder(path)["live"] is True
    path.write_text(json.dumps({"pid": me, "start_time": start + 1}))
    assert holder(path) == {"pid": me, "start_time": start + 1, "live": False}
    for bad in ["", "0", "[1]", '{"pid": 0}', '{"pid": "3"}', "nope"]:
        path.write_text(bad)
        assert holder(path) is None
    assert holder(tmp_path / "missing") is None


def test_cell_lock_unlink_race_rejects_stale_inode(tmp_path):
    path = tmp_path / "cell.json.lock"
    first = claim_cell(path)
    racer = os.open(path, os.O_RDWR | os.O_CLOEXEC)  # a claimer that opened the file, not yet locked
    try:
        assert locks._try_lock_fd(path, racer) == "held"
        first.release()  # unlinks while locked, then unlocks
        assert not path.exists()
        assert locks._try_lock_fd(path, racer) == "stale"  # file gone
        third = claim_cell(path)  # a new inode at path
        assert third is not None
        assert locks._try_lock_fd(path, racer) == "stale"  # flock succeeds on the old inode: rejected
        assert claim_cell(path) is None  # the new holder is really exclusive
        third.release()
    finally:
        os.close(racer)


def test_claim_cell_retries_stale_then_gives_up(tmp_path, monkeypatch):
    path = tmp_path / "cell.json.lock"
    real, calls = locks._try_lock_fd, []

    def flaky(p, fd):
        calls.append(p)
        return "stale" if len(calls) < 3 else real(p, fd)

    monkeypatch.setattr(locks, "_try_lock_fd", flaky)
    c = claim_cell(path)
    assert c is not None and len(calls) == 3
    c.release()
    monkeypatch.setattr(locks, "_try_lock_fd", lambda p, fd: "stale")
    assert claim_cell(path, retries=4) is None
    assert len(os.listdir("/proc/self/fd")) < 200  # no descriptors leaked across retries


# ---------------------------------------------------------------- atomic_write

def test_atomic_write_concurrent_writers(tmp_path, procs):
    target, go = tmp_path / "out.json", tmp_path / "go"
    contents = {tag: (tag * n + "\n") for tag, n in (("a", 30000), ("b", 70001))}
    writers = []
    for tag, text in contents.items():
        writers.append(spawn(f"""
            while not os.path.exists({str(go)!r}):
                time.sleep(0.005)
            for _ in range(200):
                locks.atomic_write({str(target)!r}, {text!r})
        """))
    procs.extend(writers)
    go.touch()
    seen = set()
    while any(w.poll() is None for w in writers):  # readers meanwhile only see complete contents
        try:
            seen.add(target.read_text())
        except FileNotFoundError:
            pass
    for w in writers:
        out, err = w.communicate(timeout=TIMEOUT)
        assert w.returncode == 0, err
    final = target.read_text()
    assert final in contents.values() and seen <= set(contents.values())
    assert sorted(os.listdir(tmp_path)) == ["go", "out.json"]


def test_atomic_write_cleans_up_on_error(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write(target, "old")
    atomic_write(target, b"bytes")
    assert target.read_bytes() == b"bytes"

    def boom(src, dst):
        assert re.fullmatch(r"\.f\.txt\.\d+\.[0-9a-f]+\.tmp", os.path.basename(src)), src
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(locks.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(target, "new")
    assert target.read_text() == "bytes" and os.listdir(tmp_path) == ["f.txt"]


# ---------------------------------------------------------------- die_with_parent

@pytest.mark.parametrize("mechanism, poll_s", [("both", 0.2), ("prctl", 60), ("poll", 0.2)])
def test_die_with_parent(tmp_path, procs, mechanism, poll_s):
    # "prctl": the thread polls too slowly to matter; "poll": prctl is off, only the thread acts.
    pid_file = tmp_path / "child.pid"
    child = PRELUDE + textwrap.dedent(f"""
        if {mechanism == "poll"}:
            locks._set_pdeathsig = lambda sig: False
        locks.die_with_parent(poll_s={poll_s})
        locks.die_with_parent(poll_s={poll_s})
        import threading
        assert sum(t.name == "htbo-die-with-parent" for t in threading.enumerate()) == 1
        locks.atomic_write({str(pid_file)!r}, str(os.getpid()))
        time.sleep(60)
    """)
    parent = spawn(f"""
        subprocess.Popen([sys.executable, "-c", {child!r}])
        time.sleep(60)
    """)
    procs.append(parent)
    child_pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the child's PID"))
    procs.append(child_pid)
    assert not gone(child_pid)
    parent.kill()
    parent.wait(TIMEOUT)
    wait_for(lambda: gone(child_pid), "the child to die with its parent", timeout=5.0)


def test_die_with_parent_already_orphaned(procs):
    p = spawn("""
        import signal
        locks.die_with_parent(poll_s=30, parent=os.getppid() + 10**6)
        time.sleep(30)
    """)
    procs.append(p)
    assert p.wait(TIMEOUT) == -signal.SIGTERM


# ---------------------------------------------------------------- oserror_message

@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "free some space"), (errno.EACCES, "you can write to"),
    (errno.EROFS, "read-only"), (errno.ENOTDIR, "a file where a directory is expected"),
    (errno.EISDIR, "a directory where a file"), (errno.EEXIST, "already exists"),
    (errno.ENOENT, "does not exist"), (errno.EDQUOT, "quota"), (errno.EPERM, "you can write to")])
def test_oserror_message(code, words):
    e = OSError(code, os.strerror(code))
    msg = oserror_message(e, "runs/x/history.jsonl", "write")
    head = f"cannot write runs/x/history.jsonl: {os.strerror(code)} ({errno.errorcode[code]}): "
    assert msg.startswith(head)
    assert words in msg and "\n" not in msg
    assert "(--out)" in oserror_message(e, "runs/x", "write", option="--out") or code in (
        errno.ENOTDIR, errno.EISDIR, errno.ENOENT)


def test_oserror_message_real_errors_and_fallback(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError) as info:
        os.makedirs(tmp_path / "file" / "sub")
    msg = oserror_message(info.value, tmp_path / "file" / "sub", "create")
    assert "(ENOTDIR)" in msg and str(tmp_path / "file" / "sub") in msg
    assert oserror_message(OSError(errno.EMFILE, "Too many open files"), "p", "open") == \
        "cannot open p: Too many open files (EMFILE)"
    assert oserror_message(OSError("odd"), "p", "read") == "cannot read p: odd"


def test_locked_error_waits_for_the_holders_record(tmp_path):
    """A second writer that tries the lock between the holder's flock and the holder writing
    its record still names the holder's PID (it waits for the record)."""
    import fcntl
    import threading
    fd = os.open(tmp_path / locks.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # locked, record not written yet
        later = threading.Timer(0.2, lambda: os.pwrite(fd, json.dumps(
            {"pid": 4242, "command": "htbo run"}).encode(), 0))
        later.start()
        with pytest.raises(LockedError, match=r"\(PID 4242\b.*: htbo run\)"):
            DirectoryLock(tmp_path).acquire()
        later.join()
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the CLI: one writer per run dir

def test_two_concurrent_resumes_one_writes_the_other_is_refused_naming_it(tmp_path):
    """Two ``htbo run --resume D`` started together: one exits 2 with one line naming the
    other's PID; the other finishes, and the history holds every evaluation exactly once."""
    from htbo.driver import eval_marks
    from htbo.history import read_jsonl
    from htbo.plan import Entry, Plan
    d = tmp_path / "run"
    steps, n_evals = 30_000, 5
    d.mkdir()
    plan = Plan(problem="quadratic", problem_args={"dim_x": 2, "dim_y": 2}, steps=steps,
                budget=None, seeds=2, n_evals=n_evals, entries=[Entry("n2sba", "n2sba")])
    (d / "config.json").write_text(json.dumps(plan.to_dict()))
    cmd = [sys.executable, "-m", "htbo.cli", "run", "--resume", str(d), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    try:
        errs = [p.communicate(timeout=180)[1] for p in procs]
    finally:
        kill_quietly(*procs)
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], (codes, errs)
    lost, won = (0, 1) if codes[0] == 2 else (1, 0)
    line = errs[lost].strip().splitlines()
    assert len(line) == 1 and f"PID {procs[won].pid}" in line[0] and \
        "in use by another htbo process" in line[0], line
    keys = [(r["seed"], r["step"]) for r in read_jsonl(str(d / "history.jsonl"))]
    want = {(s, m) for s in (0, 1) for m in [0, *eval_marks(steps, n_evals)]}
    assert sorted(keys) == sorted(want)  # complete, nothing twice
    assert [r["status"] for r in read_jsonl(str(d / "runs.jsonl"))] == ["started", "finished"]
