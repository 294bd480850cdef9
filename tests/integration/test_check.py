"""berthctl check: a reserved port held by this test process is a conflict.

This needs the config loader (berthctl -c FILE); until it exists these tests
fail at loading the config.
"""

import os
import socket


def write_config(tmp_path, port):
    config = tmp_path / "berth.conf"
    config.write_text(
        "[ports]\n"
        "dynamic_range = 49152-65535\n"
        f"reserved = {port}\n")
    return config


def test_held_reserved_port_is_a_conflict(berthctl, free_port, own_comm,
                                          tmp_path):
    port = free_port("udp")
    config = write_config(tmp_path, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))
        r = berthctl("-c", config, "check")
    assert r.returncode == 1, r.stdout + r.stderr
    conflicts = [line for line in r.stdout.splitlines()
                 if line.startswith("conflict:")]
    assert len(conflicts) == 1, r.stdout
    line = conflicts[0]
    assert f"reserved port {port}/udp" in line
    assert f"pid {os.getpid()} ({own_comm})" in line
    assert f"127.0.0.1:{port}" in line
    assert "ok:" not in r.stdout


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
