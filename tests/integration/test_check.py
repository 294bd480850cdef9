"""berthctl check: who holds the reserved ports, judged from /proc.

A socket listening on a reserved port (a TCP listener, an unconnected UDP
socket) is taken to be the service the port is kept for: "in use", exit 0.
The client end of a connection on a reserved port, and berthd's pool holding
one, are conflicts: exit 1; so is a socket that could be the pool when
berthctl may not see its owner (not root).
"""

import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from test_pool import pool_listing


def write_config(tmp_path, port, extra=""):
    config = tmp_path / "berth.conf"
    config.write_text(
        "[ports]\n"
        "dynamic_range = 49152-65535\n"
        f"reserved = {port}\n" + extra)
    return config


def lines(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_listening_socket_on_reserved_port_is_in_use(berthctl, free_port,
                                                     own_comm, tmp_path):
    port = free_port("udp")
    config = write_config(tmp_path, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))
        r = berthctl("-c", config, "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not lines(r.stdout, "conflict:"), r.stdout
    in_use = lines(r.stdout, "in use:")
    assert len(in_use) == 1, r.stdout
    line = in_use[0]
    assert f"reserved port {port}/udp" in line
    assert f"pid {os.getpid()} ({own_comm})" in line
    assert f"127.0.0.1:{port} (bound)" in line
    assert r.stdout.splitlines()[-1] == "ok: no conflicts", r.stdout


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_client_end_on_reserved_port_is_a_conflict(berthctl, free_port,
                                                   own_comm, tmp_path, kind):
    """A socket connected from a reserved port is what an ephemeral
    allocator does, never a service: a conflict, whatever holds it."""
    port = free_port(kind)
    config = write_config(tmp_path, port)
    stype = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server, \
            socket.socket(socket.AF_INET, stype) as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.bind(("127.0.0.1", port))
        client.connect(server.getsockname())
        r = berthctl("-c", config, "check")
    assert r.returncode == 1, r.stdout + r.stderr
    conflicts = lines(r.stdout, "conflict:")
    assert len(conflicts) == 1, r.stdout
    line = conflicts[0]
    state = "connected" if kind == "udp" else "established"
    assert f"reserved port {port}/{kind}" in line
    assert f"pid {os.getpid()} ({own_comm})" in line
    assert (f"127.0.0.1:{port} ({state}): a connection with no listener on "
            f"the port") in line
    assert "ok:" not in r.stdout


def as_nobody(program, config, *args):
    """program -c CONFIG ARGS run as user and group nobody (65534), with
    copies of both where nobody may read them."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        prog = shutil.copy(program, d)
        conf = shutil.copy(config, d)
        os.chmod(conf, 0o644)
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             prog, "-c", conf, *args], capture_output=True, text=True,
            timeout=10)
    # Messages name the copy: put the real config back in its place.
    return subprocess.CompletedProcess(
        r.args, r.returncode, r.stdout.replace(conf, str(config)),
        r.stderr.replace(conf, str(config)))


def test_berthd_pool_on_reserved_port_is_a_conflict(berthd, berthctl,
                                                    build_dir, free_port,
                                                    tmp_path):
    """The README's recovery: a port berthd's pool holds is reserved after
    start-up; check names berthd and the release that gives the port back
    (not root, it cannot name the owner and says "unknown"), and after the
    release it is clean.  berthd listening on its own service port, reserved
    too, is in use."""
    listen = free_port("udp")
    sock = tmp_path / "berth.sock"
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 check.example\n")
    daemon = berthd(f"""
[ports]
dynamic_range = 40000-40999
[pool]
size = 20
[service dns]
protocol = dns
listen = 127.0.0.1:{listen}
hosts = {hosts}
[control]
socket = {sock}
""", lambda d: sock.exists())
    _, sockets = pool_listing(berthctl, sock)
    taken = sockets[0][0]
    config = tmp_path / "check.conf"
    config.write_text(daemon.config.read_text().replace(
        "dynamic_range = 40000-40999",
        f"dynamic_range = 40000-40999\nreserved = {taken}, {listen}"))

    line_no = config.read_text().splitlines().index(
        f"reserved = {taken}, {listen}") + 1

    r = berthctl("-c", config, "check")
    assert r.returncode == 1, r.stdout + r.stderr
    conflicts = lines(r.stdout, "conflict:")
    assert conflicts == [
        f"conflict: reserved port {taken}/udp (config {config}:{line_no}) is held by "
        f"pid {daemon.pid} (berthd) on 0.0.0.0:{taken} (bound): no service of "
        f"this config listens there, so berthd's pool took it; "
        f"\"berthctl release {taken}\" gives it back"], r.stdout
    in_use = lines(r.stdout, "in use:")
    assert len(in_use) == 2, r.stdout
    for kind, state, line in zip(["tcp", "udp"], ["listen", "bound"], in_use):
        assert (f"reserved port {listen}/{kind}" in line
                and f"pid {daemon.pid} (berthd) on 127.0.0.1:{listen} "
                    f"({state})" in line), r.stdout

    # Not root, berthctl cannot see whose socket it is: it could be the
    # pool, so check says so and does not say "ok".
    r = as_nobody(build_dir / "berthctl", config, "check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert lines(r.stdout, "unknown:") == [
        f"unknown: reserved port {taken}/udp (config {config}:{line_no}) is "
        f"held by an unknown process on 0.0.0.0:{taken} (bound): berthd's pool "
        f"draws from this range and only root may see whose socket it is; "
        f"run as root"], r.stdout
    assert "ok:" not in r.stdout
    assert "run as root" in r.stderr

    out = berthctl("-s", sock, "release", str(taken))
    assert out.returncode == 0, out.stderr
    r = berthctl("-c", config, "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not lines(r.stdout, "conflict:"), r.stdout
    assert r.stdout.splitlines()[-1] == "ok: no conflicts", r.stdout


def test_released_port_is_ok(berthctl, free_port, tmp_path):
    port = free_port("udp")
    config = write_config(tmp_path, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))
    r = berthctl("-c", config, "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "conflict:" not in r.stdout
    # The kernel may not reserve the port yet; then check warns about it.
    assert r.stdout.splitlines()[-1] == "ok: no conflicts", r.stdout


def test_pool_too_large_is_a_conflict(berthctl, tmp_path):
    """A pool the plan cannot hold is a conflict check reports (exit 1), like
    a held reserved port, not a config berthctl fails to read (exit 2)."""
    config = tmp_path / "berth.conf"
    config.write_text(
        "[ports]\n"
        "dynamic_range = 60000-60099\n"
        "avoid_in_use = no\n"
        "[pool]\n"
        "size = 200\n")
    r = berthctl("-c", config, "check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"conflict: pool size 200 ({config}:5) does not fit" in r.stdout
    assert "leaves only 100 ports" in r.stdout
    assert "ok:" not in r.stdout

    # The other offline verbs still read such a config.
    r = berthctl("-c", config, "show", "dynamicport", "udp")
    assert r.returncode == 0, r.stderr
    assert "Start Port      : 60000" in r.stdout
