"""Shared fixtures for berth's integration tests.

The tests drive the real binaries of a build tree (``BERTH_BUILD``, default
``<repo>/build``) against real sockets on loopback.  See README.md.
"""

import errno
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# How long one berthctl run may take before the test fails instead of hanging.
BERTHCTL_TIMEOUT = 10.0
# How long berthd gets to become ready, and to exit after SIGTERM.
BERTHD_READY_TIMEOUT = 10.0
BERTHD_STOP_TIMEOUT = 5.0


@pytest.fixture(scope="session")
def build_dir():
    """The build tree holding berthd and berthctl; fails if either is missing."""
    path = Path(os.environ.get("BERTH_BUILD", REPO / "build")).resolve()
    missing = [name for name in ("berthd", "berthctl")
               if not os.access(path / name, os.X_OK)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found in {path}: build first with "
            f"'cmake -S . -B build && cmake --build build' or point "
            f"BERTH_BUILD at a build tree", pytrace=False)
    return path


@pytest.fixture
def berthctl(build_dir):
    """A function running build/berthctl with the given arguments.

    ``berthctl("who", "5300/udp")`` returns the CompletedProcess with text
    stdout and stderr; it never raises on a non-zero exit, but a run longer
    than ``timeout`` seconds fails the test.
    """
    def run(*args, timeout=BERTHCTL_TIMEOUT, env=None):
        cmd = [str(build_dir / "berthctl"), *map(str, args)]
        try:
            return subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(cmd)} did not finish in {timeout}s")
    return run


def _family(host):
    """The address family of a numeric host: IPv6 when it has a colon."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# Fixed source ports some tests send from (the byte-swapped twins of 88 and
# 464); free_port() never hands them out, so no server a test starts holds one.
CLIENT_SOURCE_PORTS = frozenset({22528, 53249})


def free_port(proto="udp", host="127.0.0.1"):
    """A loopback port nothing is bound to right now.

    proto is "udp", "tcp" or "both" (free for UDP and TCP alike); host may
    be an IPv6 address ("::1").  The kernel picks the port; it is released
    before returning, so another process could take it in between, which on
    a test machine is rare enough.
    """
    kinds = {"udp": [socket.SOCK_DGRAM], "tcp": [socket.SOCK_STREAM],
             "both": [socket.SOCK_DGRAM, socket.SOCK_STREAM]}[proto]
    for _ in range(100):
        with socket.socket(_family(host), kinds[0]) as first:
            first.bind((host, 0))
            port = first.getsockname()[1]
            if port in CLIENT_SOURCE_PORTS:
                continue
            if all(not port_held(port, kind, host) for kind in kinds[1:]):
                return port
    raise RuntimeError(f"no free {proto} port on {host} after 100 tries")


@pytest.fixture(name="free_port")
def free_port_fixture():
    """The free_port() helper as a fixture."""
    return free_port


def port_held(port, kind, host="127.0.0.1"):
    """True when binding host:port fails because something holds it.

    kind is socket.SOCK_DGRAM, socket.SOCK_STREAM, "udp" or "tcp"; host may
    be an IPv6 address ("::1").  Useful as a readiness condition:
    ``lambda d: port_held(5300, "udp")``.
    """
    kind = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}.get(kind, kind)
    with socket.socket(_family(host), kind) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
            raise
    return False


class Berthd:
    """One running berthd, started by the ``berthd`` fixture."""

    def __init__(self, proc, config, log):
        self.proc = proc
        self.config = config
        self.log = log
        self.stopped = False
        self.killed = False

    @property
    def pid(self):
        return self.proc.pid

    def stderr(self):
        """Everything berthd wrote to stderr so far."""
        return self.log.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=BERTHD_STOP_TIMEOUT):
        """SIGTERM, wait, SIGKILL when it does not exit in time.

        Returns (exit status as Popen reports it, whether it had to be
        killed).  Calling it again returns the same status.
        """
        if not self.stopped:
            self.stopped = True
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.killed = True
                    self.proc.kill()
                    self.proc.wait()
        return self.proc.returncode, self.killed


@pytest.fixture
def berthd(build_dir, tmp_path):
    """A factory that starts berthd with a config and waits until it is ready.

    ``start(config_text, ready, timeout=10, args=())`` writes config_text to
    a file under tmp_path, runs ``build/berthd -c FILE *args``, and polls
    ``ready(daemon)`` (a function of the Berthd handle returning bool; an
    OSError counts as "not yet") until it is true.  It fails the test, with
    berthd's stderr, if berthd exits first or the timeout passes.

    At teardown every daemon still running gets SIGTERM and must exit 0
    within 5 seconds (else SIGKILL and the test fails), and any daemon whose
    stderr holds a sanitizer report fails the test.  A test that expects
    another ending calls ``daemon.stop()`` itself and checks the result.
    """
    daemons = []

    def start(config_text, ready, timeout=BERTHD_READY_TIMEOUT, args=()):
        n = len(daemons)
        config = tmp_path / f"berthd-{n}.conf"
        config.write_text(config_text)
        log = tmp_path / f"berthd-{n}.stderr"
        with open(log, "wb") as err, \
                open(tmp_path / f"berthd-{n}.stdout", "wb") as out:
            proc = subprocess.Popen(
                [str(build_dir / "berthd"), "-c", str(config), *map(str, args)],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        daemon = Berthd(proc, config, log)
        daemons.append(daemon)
        deadline = time.monotonic() + timeout
        while True:
            if not daemon.alive():
                daemon.stopped = True  # reported here, not again at teardown
                pytest.fail(f"berthd exited with status {proc.returncode} "
                            f"before it was ready; stderr:\n{daemon.stderr()}")
            try:
                if ready(daemon):
                    return daemon
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"berthd was not ready after {timeout}s; "
                            f"stderr:\n{daemon.stderr()}")
            time.sleep(0.05)

    yield start

    problems = []
    for daemon in daemons:
        # A sanitizer build reports memory and UB errors on stderr, however
        # the daemon ended: never let one pass unseen.
        report = daemon.stderr()
        if "Sanitizer" in report or "runtime error:" in report:
            problems.append(f"berthd pid {daemon.pid} reported a sanitizer "
                            f"error; its stderr:\n{report}")
            daemon.stop()
            continue
        if daemon.stopped:
            continue
        status, killed = daemon.stop()
        if killed:
            problem = (f"berthd pid {daemon.pid} ignored SIGTERM for "
                       f"{BERTHD_STOP_TIMEOUT}s and was killed")
        elif status != 0:
            problem = (f"berthd pid {daemon.pid} exited with status "
                       f"{status} after SIGTERM")
        else:
            continue
        problems.append(f"{problem}; its stderr:\n{daemon.stderr()}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def own_comm():
    """This process's program name as the kernel records it (/proc/self/comm)."""
    return Path("/proc/self/comm").read_text().strip()


# Real upstream servers (Unbound, an MIT KDC) for the DNS and Kerberos
# scenarios live in upstreams.py; importing them here registers them.
from upstreams import krb5_realm, unbound_upstream  # noqa: E402,F401
