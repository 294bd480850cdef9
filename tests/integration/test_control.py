"""berthd's control socket: what it may replace, and how it answers.

The protocol (berthd(8)): a client sends one command line and reads the
reply until berthd closes.
"""
import os
import socket
import subprocess

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
