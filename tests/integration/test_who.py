"""berthctl who: real sockets held by this test process, found through /proc."""

import os
import socket
import time
from pathlib import Path

import pytest


@pytest.fixture
def held(free_port):
    """A UDP socket and a listening TCP socket on the same 127.0.0.1 port."""
    port = free_port("both")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind(("127.0.0.1", port))
        tcp.bind(("127.0.0.1", port))
        tcp.listen()
        yield port, udp, tcp
    finally:
        udp.close()
        tcp.close()


def holder_lines(stdout):
    """The output lines split into columns."""
    return [line.split() for line in stdout.splitlines() if line.strip()]


def test_udp_holder(berthctl, held, own_comm):
    port, _, _ = held
    r = berthctl("who", f"{port}/udp")
    assert r.returncode == 0, r.stderr
    assert holder_lines(r.stdout) == [
        ["udp", f"127.0.0.1:{port}", "bound", "pid", str(os.getpid()),
         own_comm]], r.stdout


def test_tcp_listener(berthctl, held, own_comm):
    port, _, _ = held
    r = berthctl("who", f"{port}/tcp")
    assert r.returncode == 0, r.stderr
    assert holder_lines(r.stdout) == [
        ["tcp", f"127.0.0.1:{port}", "listen", "pid", str(os.getpid()),
         own_comm]], r.stdout


def test_both_protocols_without_suffix(berthctl, held, own_comm):
    port, _, _ = held
    r = berthctl("who", str(port))
    assert r.returncode == 0, r.stderr
    lines = holder_lines(r.stdout)
    assert [line[:3] for line in lines] == [
        ["tcp", f"127.0.0.1:{port}", "listen"],
        ["udp", f"127.0.0.1:{port}", "bound"]], r.stdout
    for line in lines:
        assert line[3:] == ["pid", str(os.getpid()), own_comm], r.stdout


def test_ipv6_and_connected_sockets(berthctl, free_port, own_comm):
    """A TCP connection holds its client port; IPv6 addresses are bracketed."""
    if not Path("/proc/net/tcp6").exists():
        pytest.fail("this test needs IPv6 on loopback (/proc/net/tcp6)")
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as server, \
            socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as client:
        server.bind(("::1", 0))
        server.listen()
        client.connect(server.getsockname()[:2])
        accepted, _ = server.accept()
        with accepted:
            client_port = client.getsockname()[1]
            r = berthctl("who", f"{client_port}/tcp")
            assert r.returncode == 0, r.stderr
            lines = holder_lines(r.stdout)
            assert ["tcp", f"[::1]:{client_port}", "established", "pid",
                    str(os.getpid()), own_comm] in lines, r.stdout


def tcp_state(port):
    """The state column of the IPv4 TCP entry whose local port is port."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            return fields[3]
    return None


def test_time_wait_does_not_hold(berthctl):
    """After an active close the client port sits in TIME_WAIT, owned by no
    one and no obstacle to SO_REUSEADDR binds: who reports nobody."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        client_port = client.getsockname()[1]
        client.close()
        accepted.close()
        deadline = time.monotonic() + 5
        while tcp_state(client_port) != "06":
            assert time.monotonic() < deadline, \
                f"port {client_port} never reached TIME_WAIT"
            time.sleep(0.02)
        r = berthctl("who", f"{client_port}/tcp")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == f"nobody holds {client_port}/tcp\n"


def test_nobody(berthctl, free_port):
    port = free_port("both")
    r = berthctl("who", f"{port}/udp")
    assert r.returncode == 1
    assert r.stdout == f"nobody holds {port}/udp\n"
    r = berthctl("who", str(port))
    assert r.returncode == 1
    assert "nobody holds" in r.stdout and str(port) in r.stdout


@pytest.mark.parametrize("arg", ["0", "65536", "http", "53/sctp", "53x",
                                 "-53", "/udp", "53/"])
def test_bad_argument(berthctl, arg):
    r = berthctl("who", arg)
    assert r.returncode == 2
    assert r.stdout == ""
    assert f"'{arg}'" in r.stderr
    assert "PORT/udp" in r.stderr


def test_missing_argument(berthctl):
    r = berthctl("who")
    assert r.returncode == 2
    assert "who PORT" in r.stderr
