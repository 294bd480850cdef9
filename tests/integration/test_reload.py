"""Reloading berthd's config: `berthctl reload` and SIGHUP.

A reload must never leave berthd running less than it ran before without
saying so: when a service of the new config cannot start, berthd goes back
to the old config, its services answer again, and the reload reports the
service and the reason as an error.
"""
import signal
import socket
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


def udp_ports_held():
    """Every local UDP port some socket holds, from /proc/net/udp{,6}."""
    held = set()
    for name in ("udp", "udp6"):
        with open(f"/proc/net/{name}") as f:
            for line in f.readlines()[1:]:
                held.add(int(line.split()[1].rsplit(":", 1)[1], 16))
    return held


def quiet_block(size, start=10000, stop=32000):
    """The block of size ports in [start, stop) where the fewest UDP ports
    are held now (other test runs on this host may hold a few anywhere)."""
    held = udp_ports_held()
    return min(range(start, stop - size + 1, size),
               key=lambda lo: len(held & set(range(lo, lo + size))))


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
    failures = daemon.stderr().count("reload failed")
    daemon.signal(signal.SIGHUP)
    assert wait_for(lambda: daemon.stderr().count("reload failed") > failures), \
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


def test_every_failed_reload_is_in_berthds_log(
        berthd, berthctl, free_port, tmp_path):
    """`berthctl reload` and SIGHUP fail alike in berthd's log: one line
    "berthd: reload failed, keeping the running config: REASON", with the
    reason berthctl prints.  Before, only SIGHUP's failures were logged."""
    port = free_port("both")
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.77 reload.example\n")
    sock = str(tmp_path / "berth.sock")
    good = dns_config(f"127.0.0.1:{port}", hosts, sock)
    daemon = berthd(good, ready=lambda d: berthctl("-s", sock, "status")
                    .returncode == 0)

    # An error in the new config (found before anything stops), then a
    # service that cannot start (found after the old ones stopped).
    bad_configs = (good + "\n[pool]\nsize = many\n",
                   dns_config("192.0.2.1:15300", hosts, sock))
    for bad in bad_configs:
        daemon.config.write_text(bad)
        out = berthctl("-s", sock, "reload")
        assert out.returncode == 2, out.stdout
        prefix = "berthctl: berthd: reload failed, keeping the running config: "
        assert out.stderr.startswith(prefix), out.stderr
        logged = "berthd: " + out.stderr.split("berthctl: berthd: ", 1)[1]
        assert wait_for(lambda: logged in daemon.stderr()), \
            (logged, daemon.stderr())
        assert answers(port) == ["192.0.2.77"]

    # SIGHUP with the same config logs the same line once more.
    before = daemon.stderr().count(logged)
    daemon.signal(signal.SIGHUP)
    assert wait_for(lambda: daemon.stderr().count(logged) == before + 1), \
        daemon.stderr()
    assert "reloaded" not in daemon.stderr()


def test_reload_of_a_pool_using_most_of_its_range(berthd, berthctl, tmp_path):
    """A pool of 600 in a range of 1000 with avoid_in_use: the old pool's own
    600 ports are not "in use" to the new one, which must be able to draw
    from the whole range again, reload after reload."""
    from test_pool import pool_listing
    lo = quiet_block(1000)
    sock = str(tmp_path / "berth.sock")
    daemon = berthd(f"""
[ports]
dynamic_range = {lo}-{lo + 999}
avoid_in_use = yes

[pool]
size = 600

[control]
socket = {sock}
""", ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
    for n in (1, 2):
        out = berthctl("-s", sock, "reload")
        assert out.returncode == 0, out.stderr
        assert "reloaded" in out.stdout
        summary, sockets = pool_listing(berthctl, sock)
        assert summary["ports held"] == "600", summary
        assert all(lo <= p <= lo + 999 for p, _ in sockets)
        status = berthctl("-s", sock, "status")
        assert f", {n} reloads" in status.stdout, status.stdout
    assert "reload failed" not in daemon.stderr()

    # A pool too large for what is left fails before the running pool and
    # services are touched: same sockets on the same ports afterwards.
    _, before = pool_listing(berthctl, sock)
    text = daemon.config.read_text()
    daemon.config.write_text(text.replace("size = 600", "size = 1000") + f"""
[service dns]
protocol = dns
listen = 127.0.0.1:{lo + 5}
hosts = {tmp_path / "hosts"}
""")
    (tmp_path / "hosts").write_text("192.0.2.77 reload.example\n")
    out = berthctl("-s", sock, "reload")
    assert out.returncode == 2, out.stdout
    assert ("[pool] size: 1000 sockets do not fit in the 999 ports the plan "
            "leaves to the pool") in out.stderr, out.stderr
    _, after = pool_listing(berthctl, sock)
    assert after == before

    # The plan has room for 999, but five ports of the range that the
    # running pool does not hold are taken by other sockets.
    daemon.config.write_text(daemon.config.read_text().replace(
        "size = 1000", "size = 999"))
    pool_ports = {port for port, _ in before}
    free = [p for p in range(lo, lo + 1000)
            if p != lo + 5 and p not in pool_ports][:5]
    held = []
    try:
        for p in free:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(s)
            s.bind(("127.0.0.1", p))
        out = berthctl("-s", sock, "reload")
    finally:
        for s in held:
            s.close()
    assert out.returncode == 2, out.stdout
    assert "[pool] size: 999 exceeds the 994 ports left to draw" in out.stderr, \
        out.stderr
    _, after = pool_listing(berthctl, sock)
    assert after == before

    # A service that cannot start fails the reload after the old pool was
    # let go: the old config comes back on a freshly drawn pool.
    daemon.config.write_text(text + f"""
[service dns]
protocol = dns
listen = 192.0.2.1:15300
hosts = {tmp_path / "hosts"}
""")
    out = berthctl("-s", sock, "reload")
    assert out.returncode == 2, out.stdout
    assert "service dns not started" in out.stderr, out.stderr
    summary, sockets = pool_listing(berthctl, sock)
    assert summary["ports held"] == "600", summary
    assert all(lo <= p <= lo + 999 for p, _ in sockets)
    status = berthctl("-s", sock, "status")
    assert ", 2 reloads" in status.stdout and "service dns" not in status.stdout


def test_reload_keeps_the_control_socket_and_says_so(
        berthd, berthctl, free_port, tmp_path):
    """berthctl reached berthd on its control socket: a reload with a new
    socket path keeps the old one (the new one takes effect at restart) and
    logs that, instead of silently listening nowhere new."""
    port = free_port("both")
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.77 reload.example\n")
    sock = str(tmp_path / "berth.sock")
    daemon = berthd(dns_config(f"127.0.0.1:{port}", hosts, sock),
                    ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
    moved = str(tmp_path / "moved.sock")
    daemon.config.write_text(dns_config(f"127.0.0.1:{port}", hosts, moved))
    out = berthctl("-s", sock, "reload")
    assert out.returncode == 0, out.stderr
    assert berthctl("-s", sock, "status").returncode == 0
    assert not (tmp_path / "moved.sock").exists()
    log = daemon.stderr()
    assert f"[control] socket: still {sock}; the new path {moved} takes " \
           "effect when berthd restarts" in log, log
    assert answers(port) == ["192.0.2.77"]


def test_reload_with_a_query_that_found_no_pool_socket(
        berthd, berthctl, free_port, tmp_path):
    """A query that found no pool socket (a per-query pool at its cap of 1)
    waits out upstream_timeout on a timer of its own.  A reload frees the
    forwarder that timer belongs to; berthd must go on running, and answer,
    past the moment it would have fired.  Before the fix the timer stayed in
    the wheel inside freed memory: ASan reported a heap-use-after-free at
    the reload (the fixture fails the test on any sanitizer report)."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    port = free_port("both")
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.77 reload.example\n")
    sock = str(tmp_path / "berth.sock")
    daemon = berthd(dns_config(
        f"127.0.0.1:{port}", hosts, sock,
        "[pool]\nsize = 1\nmode = per-query\n").replace(
            "hosts =", f"upstream = 127.0.0.1:{silent.getsockname()[1]}\n"
            "upstream_timeout = 1s\nhosts =", 1),
        ready=lambda d: berthctl("-s", sock, "status").returncode == 0)

    def counter(name):
        out = berthctl("-s", sock, "status").stdout
        for line in out.splitlines():
            key, _, value = line.strip().partition(": ")
            if key == name:
                return int(value)
        return None

    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for name in ("one.example.", "two.example."):
        client.sendto(dns.message.make_query(name, "A").to_wire(),
                      ("127.0.0.1", port))
    assert wait_for(lambda: counter("pool_empty") == 1), counter("pool_empty")
    assert counter("outstanding") == 2
    daemon.signal(signal.SIGHUP)
    assert wait_for(lambda: "reloaded" in daemon.stderr()), daemon.stderr()
    time.sleep(1.5)
    assert daemon.alive(), daemon.stderr()
    assert answers(port) == ["192.0.2.77"]
    client.close()
    silent.close()
