"""Reloading berthd's config: `berthctl reload` and SIGHUP.

A reload must never leave berthd running less than it ran before without
saying so: when a service of the new config cannot start, berthd goes back
to the old config, its services answer again, and the reload reports the
service and the reason as an error.
"""
import signal
import time

import dns.message
import dns.query

from conftest import port_held


def dns_config(listen, hosts, sock, extra=""):
    return f"""
[service dns]
protocol = dns
listen = {listen}
hosts = {hosts}

[control]
socket = {sock}
{extra}"""


def answers(port, name="reload.example."):
    q = dns.message.make_query(name, "A")
    reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
    return [r.to_text() for rr in reply.answer for r in rr]


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_reload_that_cannot_start_a_service_keeps_the_old_config(
        berthd, berthctl, free_port, tmp_path):
    port = free_port("both")
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.77 reload.example\n")
    sock = str(tmp_path / "berth.sock")
    daemon = berthd(dns_config(f"127.0.0.1:{port}", hosts, sock),
                    ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
    assert answers(port) == ["192.0.2.77"]

    # 192.0.2.1 (TEST-NET-1) is not a local address: the bind fails.
    daemon.config.write_text(dns_config("192.0.2.1:15300", hosts, sock))
    out = berthctl("-s", sock, "reload")
    assert out.returncode != 0, out.stdout
    assert "service dns not started" in out.stderr, out.stderr
    assert "192.0.2.1:15300" in out.stderr, out.stderr
    assert "reload failed, keeping the running config" in out.stderr, out.stderr
    assert "reloaded" not in out.stdout

    # The old service answers again on its old port.
    assert answers(port) == ["192.0.2.77"]
    status = berthctl("-s", sock, "status")
    assert status.returncode == 0, status.stderr
    assert "service dns (dns): running" in status.stdout
    assert ", 0 reloads" in status.stdout

    # SIGHUP logs the same and keeps the old config too.
    daemon.signal(signal.SIGHUP)
    assert wait_for(lambda: daemon.stderr().count("reload failed") >= 1), \
        daemon.stderr()
    log = daemon.stderr()
    assert "reload failed" in log and "service dns not started" in log, log
    assert "reload failed, keeping the running config: service dns" in log, log
    assert answers(port) == ["192.0.2.77"]

    # A good config reloads as before.
    other = free_port("both")
    daemon.config.write_text(dns_config(f"127.0.0.1:{other}", hosts, sock))
    out = berthctl("-s", sock, "reload")
    assert out.returncode == 0, out.stderr
    assert "reloaded" in out.stdout
    assert answers(other) == ["192.0.2.77"]
    assert not port_held(port, "udp")
