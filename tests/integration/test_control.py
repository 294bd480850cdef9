"""berthd's control socket: what it may replace, and how it answers.

The protocol (berthd(8)): a client sends one command line and reads the
reply until berthd closes.
"""
import contextlib
import os
import resource
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest



def run_berthd_expecting_failure(build_dir, tmp_path, sock, timeout=5):
    """Run berthd with a config whose control socket is sock; it must exit
    by itself.  Returns the CompletedProcess."""
    conf = tmp_path / "berthd.conf"
    conf.write_text(f"[control]\nsocket = {sock}\n")
    try:
        return subprocess.run([str(build_dir / "berthd"), "-c", str(conf)],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"berthd kept running with {sock} in the way")


def test_a_regular_file_at_the_socket_path_is_never_removed(build_dir, tmp_path):
    sock = tmp_path / "berth.sock"
    sock.write_text("precious\n")
    out = run_berthd_expecting_failure(build_dir, tmp_path, sock)
    assert out.returncode == 1, out.stderr
    assert f"control socket {sock}" in out.stderr
    assert "a regular file" in out.stderr
    assert sock.read_text() == "precious\n"


def test_a_symlink_at_the_socket_path_is_never_removed(build_dir, tmp_path):
    target = tmp_path / "target"
    target.write_text("precious\n")
    sock = tmp_path / "berth.sock"
    sock.symlink_to(target)
    out = run_berthd_expecting_failure(build_dir, tmp_path, sock)
    assert out.returncode == 1, out.stderr
    assert "a symbolic link" in out.stderr
    assert sock.is_symlink() and target.read_text() == "precious\n"


def test_a_stale_socket_is_replaced(berthd, berthctl, tmp_path):
    sock = tmp_path / "berth.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()  # the file stays, nobody listens: what a crash leaves
    assert sock.exists()
    berthd(f"[control]\nsocket = {sock}\n",
           ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
    assert os.path.exists(sock)


def test_berthctl_says_what_is_at_a_wrong_socket_path(berthctl, tmp_path):
    """berthctl.8: when the path is wrong, berthctl says so, not that berthd
    is not running.  Linux refuses to connect to a regular file or a
    directory just as to a stale socket (ECONNREFUSED)."""
    regular = tmp_path / "berth.conf"
    regular.write_text("[control]\n")
    directory = tmp_path / "run"
    directory.mkdir()
    for path, kind in ((regular, "a regular file"), (directory, "a directory")):
        out = berthctl("-s", path, "status")
        assert out.returncode == 2, out.stderr
        assert f"berthctl: {path} is {kind}, not a socket" in out.stderr, \
            out.stderr
        assert "not running" not in out.stderr and "stale" not in out.stderr

    # The same from the config's [control] socket.
    conf = tmp_path / "ctl.conf"
    conf.write_text(f"[control]\nsocket = {directory}\n")
    out = berthctl("-c", conf, "status")
    assert out.returncode == 2, out.stderr
    assert f"{directory} is a directory, not a socket" in out.stderr, out.stderr

    # A socket nobody listens on is still a stale socket.
    sock = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()
    out = berthctl("-s", sock, "status")
    assert out.returncode == 2, out.stderr
    assert f"berthd is not running: {sock} is a stale control socket" \
        in out.stderr, out.stderr


def test_an_empty_socket_path_is_a_usage_error(berthctl):
    for args in (("-s", ""), ("--socket=",), ("--socket", "")):
        out = berthctl(*args, "status")
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr == ("berthctl: -s needs a control socket path, got "
                              "an empty one (see berthctl --help)\n"), \
            (args, out.stderr)


def connect(sock):
    """A client connection to sock; a full listen queue (EAGAIN on a unix
    socket) is waited out for up to 5 s."""
    deadline = time.monotonic() + 5
    while True:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(5)
        try:
            c.connect(str(sock))
            return c
        except BlockingIOError:
            c.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def read_all(c):
    data = b""
    while True:
        chunk = c.recv(4096)
        if not chunk:
            return data
        data += chunk


def cpu_seconds(pid):
    """User + system CPU time of pid so far, from /proc/PID/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_file_descriptors_pauses_accepting(build_dir, berthctl, tmp_path):
    """With its descriptors used up by idle clients, berthd must not spin on
    the queued connections it cannot accept (the listener is level-
    triggered); once the clients go, it accepts again."""
    sock = tmp_path / "berth.sock"
    conf = tmp_path / "berthd.conf"
    conf.write_text(f"[control]\nsocket = {sock}\n")
    log = tmp_path / "berthd.stderr"
    limit = 24

    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    with open(log, "wb") as err:
        proc = subprocess.Popen([str(build_dir / "berthd"), "-c", str(conf)],
                                stdin=subprocess.DEVNULL, stderr=err,
                                preexec_fn=low_fd_limit)
    clients = []
    try:
        deadline = time.monotonic() + 10
        while berthctl("-s", sock, "status").returncode != 0:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        # More idle clients than berthd has descriptors: the last ones wait
        # in the listen queue.  (They have 5 s before berthd drops them.)
        for _ in range(limit + 4):
            clients.append(connect(sock))
        time.sleep(0.3)
        before = cpu_seconds(proc.pid)
        time.sleep(1.0)
        used = cpu_seconds(proc.pid) - before
        assert used < 0.3, f"berthd used {used:.2f} s of CPU in 1 s: spinning"
        assert "not accepting for 100 ms" in log.read_text()

        for c in clients:
            c.close()
        clients = []
        deadline = time.monotonic() + 5
        while True:
            out = berthctl("-s", sock, "status")
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert out.returncode == 0, out.stderr
        line = [l for l in out.stdout.splitlines() if l.startswith("control:")]
        assert line and "0 accept pauses" not in line[0], out.stdout
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        try:
            rc = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("berthd ignored SIGTERM")
    report = log.read_text()
    assert "Sanitizer" not in report and "runtime error:" not in report, report
    assert rc == 0, report


def test_clients_beyond_the_cap_are_refused_at_once(berthd, berthctl, tmp_path):
    sock = tmp_path / "berth.sock"
    berthd(f"[control]\nsocket = {sock}\n",
           ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
    idle = [connect(sock) for _ in range(64)]
    try:
        time.sleep(0.2)
        extra = connect(sock)
        start = time.monotonic()
        reply = read_all(extra)
        extra.close()
        assert time.monotonic() - start < 2
        assert reply.decode().splitlines()[0] == "error: too many control clients"
        out = berthctl("-s", sock, "status")
        assert out.returncode == 2
        assert "too many control clients" in out.stderr
    finally:
        for c in idle:
            c.close()
    deadline = time.monotonic() + 5
    while (out := berthctl("-s", sock, "status")).returncode != 0:
        assert time.monotonic() < deadline, out.stderr
        time.sleep(0.05)
    assert "control: 1 clients (at most 64), 2 refused" in out.stdout, out.stdout


def fake_berthd(path, reply, got=None):
    """A one-shot control socket at path that reads a command line and
    answers reply (bytes) as given, then closes.  Returns the thread; the
    command line it read is appended to the list got."""
    import threading
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    srv.settimeout(10)
    record = got

    def serve():
        with srv:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(10)
                got = b""
                while not got.endswith(b"\n"):
                    chunk = conn.recv(512)
                    if not chunk:
                        break
                    got += chunk
                if record is not None:
                    record.append(got)
                conn.sendall(reply)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_berthctl_reports_a_reply_cut_short(berthctl, tmp_path):
    sock = tmp_path / "fake.sock"
    t = fake_berthd(sock, b"ok\nport 4500 released: free now\n")
    out = berthctl("-s", sock, "release", "4500")
    t.join(5)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "error: reply from berthd cut short" in out.stderr
    assert out.stdout == "port 4500 released: free now\n"

    # Cut in the middle of a line: the partial line is ended, then the error.
    sock2 = tmp_path / "fake2.sock"
    t = fake_berthd(sock2, b"ok\nsize:   25")
    out = berthctl("-s", sock2, "pool")
    t.join(5)
    assert out.returncode == 1
    assert out.stdout == "size:   25\n"
    assert "cut short" in out.stderr


def test_berthctl_strips_the_end_line_and_dot_stuffing(berthctl, tmp_path):
    sock = tmp_path / "fake.sock"
    t = fake_berthd(sock, b"ok\n..\n...x\nplain\n.\n")
    out = berthctl("-s", sock, "status")
    t.join(5)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ".\n..x\nplain\n"
    assert out.stderr == ""

    sock2 = tmp_path / "fake2.sock"
    t = fake_berthd(sock2, b"error: no pool: the config has no [pool] section\n.\n")
    out = berthctl("-s", sock2, "pool")
    t.join(5)
    assert out.returncode == 2
    assert out.stderr == "berthctl: berthd: no pool: the config has no [pool] section\n"


def test_a_real_reply_ends_properly(berthd, berthctl, tmp_path):
    sock = tmp_path / "berth.sock"
    berthd(f"[control]\nsocket = {sock}\n",
           ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
    c = connect(sock)
    c.sendall(b"status\n")
    reply = read_all(c).decode()
    c.close()
    assert reply.startswith("ok\nberthd ")
    assert reply.endswith("\n.\n")
    out = berthctl("-s", sock, "status")
    assert out.returncode == 0 and not out.stdout.endswith(".\n")


def test_the_tmp_fallback_directory_must_be_berthds_own(build_dir):
    """Not root and no XDG_RUNTIME_DIR: the socket goes to /tmp/berth-UID,
    a name anyone can take first.  berthd runs as an unused uid here and
    must refuse that directory when it is not its own and private."""
    import random
    import shutil
    import tempfile
    from pathlib import Path
    for _ in range(100):
        uid = random.randrange(200000, 300000)
        fallback = Path(f"/tmp/berth-{uid}")
        if not fallback.exists():
            break
    confdir = Path(tempfile.mkdtemp(prefix="berth-test-fallback-"))
    try:
        confdir.chmod(0o755)
        conf = confdir / "berthd.conf"
        conf.write_text("[control]\n")  # socket = berth.sock, relative
        conf.chmod(0o644)
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
               str(build_dir / "berthd"), "-c", str(conf)]

        fallback.mkdir()
        fallback.chmod(0o777)  # made by someone else, open to all
        out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                             timeout=5, stdin=subprocess.DEVNULL)
        assert out.returncode == 1, out.stderr
        assert f"control directory {fallback} is not private" in out.stderr
        assert not (fallback / "berth.sock").exists()

        # Its own and private: berthd runs there.
        os.chown(fallback, uid, uid)
        fallback.chmod(0o700)
        log = confdir / "berthd.stderr"
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, env=env, stderr=err,
                                    stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not (fallback / "berth.sock").exists():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        finally:
            proc.terminate()
            assert proc.wait(timeout=5) == 0, log.read_text()
    finally:
        shutil.rmtree(fallback, ignore_errors=True)
        shutil.rmtree(confdir, ignore_errors=True)


def test_release_checks_its_port_before_asking_berthd(berthctl, tmp_path):
    missing = tmp_path / "nobody.sock"
    for bad in ("0", "65536", "-1", "+80", "45x", "4 5", "", "1" + "0" * 65,
                "9" * 66):
        out = berthctl("-s", missing, "release", bad)
        assert out.returncode == 2, (bad, out.stderr)
        assert f"release: '{bad}' is not a port (1-65535" in out.stderr, out.stderr

    # A long but valid number goes to berthd whole, as its value: before,
    # berthctl cut it to 64 characters and released another port.
    sock = tmp_path / "fake.sock"
    got = []
    t = fake_berthd(sock, b"ok\nport 4500 released\n.\n", got)
    out = berthctl("-s", sock, "release", "0" * 62 + "4500")
    t.join(5)
    assert out.returncode == 0, out.stderr
    assert got == [b"release 4500\n"]


def test_malformed_lines_get_an_error_line(berthd, berthctl, tmp_path):
    sock = tmp_path / "berth.sock"
    berthd(f"[control]\nsocket = {sock}\n",
           ready=lambda d: berthctl("-s", sock, "status").returncode == 0)

    def ask(data, shut=False):
        c = connect(sock)
        c.sendall(data)
        if shut:
            c.shutdown(socket.SHUT_WR)
        start = time.monotonic()
        reply = read_all(c).decode()
        c.close()
        assert time.monotonic() - start < 2, "berthd waited for its deadline"
        return reply

    assert ask(b"x" * 600) == "error: line too long\n.\n"
    assert ask(b"status\0junk\n") == "error: NUL in command\n.\n"
    reply = ask(b"status", shut=True)
    assert reply.startswith("ok\nberthd ") and reply.endswith("\n.\n")


# Where root's berthd puts a relative socket without XDG_RUNTIME_DIR.
ROOT_RUN_DIR = Path("/run/berth")


@contextlib.contextmanager
def root_run_socket():
    """A control socket name of its own under /run/berth, as root.

    Yields (name, path): name for the config's relative [control] socket,
    path the /run/berth/NAME berthd listens on without XDG_RUNTIME_DIR.  The
    name is random, so /run/berth/berth.sock and other tests are never
    touched; the socket (and /run/berth, when this made it) is removed after.
    """
    if os.geteuid() != 0:
        pytest.fail("needs root: berthd uses /run/berth only as root, and "
                    "berthctl falls back to it only as root (CI runs as root)")
    name = f"berth-test-{secrets.token_hex(8)}.sock"
    path = ROOT_RUN_DIR / name
    had_dir = ROOT_RUN_DIR.exists()
    try:
        yield name, path
    finally:
        if path.exists() or path.is_symlink():
            path.unlink()
        if not had_dir:
            with contextlib.suppress(OSError):  # not empty: someone's berthd
                ROOT_RUN_DIR.rmdir()


def test_root_berthctl_with_a_runtime_dir_finds_berthd_in_run_berth(
        berthd, berthctl, tmp_path, monkeypatch):
    """The berthd systemd starts has no XDG_RUNTIME_DIR, so as root its
    relative socket is /run/berth/NAME; a root login shell has one
    (/run/user/0), where berthctl finds nothing.  It must try /run/berth
    next and reach berthd there; with -s it tries that path only."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    with root_run_socket() as (name, sock):
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        daemon = berthd(f"[control]\nsocket = {name}\n",
                        ready=lambda d: berthctl("-s", sock, "status")
                        .returncode == 0)
        try:
            shell = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
            out = berthctl("-c", daemon.config, "status", env=shell)
            assert out.returncode == 0, out.stderr
            lines = out.stdout.splitlines()
            assert lines[0].startswith("berthd ") and \
                f", pid {daemon.pid}, " in lines[0], out.stdout
            assert any(line.startswith("plan: dynamic ") for line in lines), \
                out.stdout
            assert any(line.startswith("control: ") for line in lines), \
                out.stdout
            assert out.stderr == ""
            assert list(runtime.iterdir()) == []

            # -s names the one path to use: no fallback.
            out = berthctl("-s", runtime / name, "status", env=shell)
            assert out.returncode == 2, out.stderr
            assert out.stderr.startswith(
                f"berthctl: berthd is not running: no control socket at "
                f"{runtime / name} (is berthd"), out.stderr
            assert str(ROOT_RUN_DIR) not in out.stderr
        finally:
            # Stopped before root_run_socket() removes its socket.
            status = daemon.stop()
        assert status == (0, False), daemon.stderr()


def test_root_berthctl_names_both_paths_when_berthd_is_nowhere(
        berthctl, tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    with root_run_socket() as (name, sock):
        conf = tmp_path / "berth.conf"
        conf.write_text(f"[control]\nsocket = {name}\n")
        shell = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
        out = berthctl("-c", conf, "status", env=shell)
        assert out.returncode == 2, out.stderr
        assert out.stdout == ""
        assert out.stderr == (
            f"berthctl: berthd is not running: no control socket at "
            f"{runtime / name} nor at {sock} (is berthd using another config? "
            f"try -c FILE or -s PATH)\n")
