"""The socket pool against the failure it exists to fix.

A DNS server pre-bound 2,500 random UDP ports and took ports other services
needed (IPsec on 4500 among them), so they failed to start at random.  Here
berthd builds the same 2,500-socket pool in the legacy MaxUserPort = 5000
range (1024..5000) with the Small Business Server catalog reserved, and the
test shows every reserved port stays free, a port held before start-up is
never taken, and `berthctl release` frees a port live while the pool stays
full.
"""
import errno
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POOL_SIZE = 2500


def catalog_ports(name):
    """Every port of data/catalog/NAME.ports, read independently of berth."""
    ports = set()
    for line in (REPO / "data" / "catalog" / f"{name}.ports").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        first = line.split()[0]
        lo, _, hi = first.partition("-")
        ports.update(range(int(lo), int(hi or lo) + 1))
    return ports


def pool_listing(berthctl, sock):
    """(summary dict, list of (port, state)) from `berthctl -s SOCK pool`."""
    out = berthctl("-s", sock, "pool")
    assert out.returncode == 0, out.stderr
    summary, sockets, in_sockets = {}, [], False
    for line in out.stdout.splitlines():
        if line.startswith("sockets"):
            in_sockets = True
        elif in_sockets:
            _slot, port, _outstanding, state = line.split()
            sockets.append((int(port), state))
        else:
            key, _, value = line.partition(":")
            summary[key.strip()] = value.strip()
    return summary, sockets


def bind_udp(port, host="0.0.0.0"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
    except OSError:
        s.close()
        raise
    return s


def pick_free_port_in(lo, hi, avoid):
    for port in range(hi, lo - 1, -1):
        if port in avoid:
            continue
        try:
            return bind_udp(port)
        except OSError:
            continue
    pytest.fail(f"no free UDP port in {lo}-{hi}")


@pytest.fixture
def legacy_pool(berthd, berthctl, tmp_path):
    """berthd with a 2,500-socket pool in 1024..5000 minus sbs, and a UDP
    port in that range held by this test since before berthd started."""
    sbs = catalog_ports("sbs")
    held = pick_free_port_in(1024, 5000, sbs)
    sock = str(tmp_path / "berth.sock")
    daemon = berthd(f"""
[ports]
max_user_port = 5000
max_user_port_semantics = legacy
reserved_catalog = sbs
avoid_in_use = yes

[pool]
size = {POOL_SIZE}

[control]
socket = {sock}
""", ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
    yield daemon, sock, sbs, held
    held.close()


def test_pool_never_takes_reserved_or_held_ports(legacy_pool, berthctl):
    daemon, sock, sbs, held = legacy_pool
    held_port = held.getsockname()[1]
    summary, sockets = pool_listing(berthctl, sock)
    ports = [p for p, state in sockets if state == "live"]

    assert summary["ports held"] == str(POOL_SIZE)
    assert len(ports) == POOL_SIZE
    assert len(set(ports)) == POOL_SIZE, "a port was bound twice"
    assert all(1024 <= p <= 5000 for p in ports), "a port outside 1024..5000"
    assert not sbs & set(ports), f"reserved ports taken: {sorted(sbs & set(ports))}"
    assert held_port not in ports
    assert summary["range"] == "1024-5000"
    # 3,977 ports in the legacy range; the sbs catalog reserves 138 of them.
    assert int(summary["allowed ports"]) == 3977 - len(sbs & set(range(1024, 5001)))

    # The kernel agrees: berthd holds 2,500 UDP ports, and each is one of them.
    out = berthctl("who", f"{ports[0]}/udp")
    assert out.returncode == 0 and f"pid {daemon.pid}" in out.stdout, out.stdout

    # Another service now starts on every reserved UDP port: all succeed.
    opened = []
    try:
        for port in sorted(sbs):
            try:
                opened.append(bind_udp(port))
            except OSError as e:
                pytest.fail(f"reserved port {port}/udp could not be bound: {e}")
    finally:
        for s in opened:
            s.close()
    assert len(opened) == len(sbs)


def test_release_frees_a_port_while_the_pool_stays_full(legacy_pool, berthctl):
    _daemon, sock, _sbs, _held = legacy_pool
    _, sockets = pool_listing(berthctl, sock)
    victim = sockets[0][0]

    # While the pool holds it, nobody else can have it.
    with pytest.raises(OSError) as taken:
        bind_udp(victim)
    assert taken.value.errno == errno.EADDRINUSE

    out = berthctl("-s", sock, "release", str(victim))
    assert out.returncode == 0, out.stderr
    assert f"port {victim} released" in out.stdout

    # The other program gets it at once ...
    s = bind_udp(victim)
    s.close()
    # ... and the pool is still full, without it, and will not take it back.
    summary, sockets = pool_listing(berthctl, sock)
    ports = [p for p, state in sockets if state == "live"]
    assert summary["ports held"] == str(POOL_SIZE)
    assert len(set(ports)) == POOL_SIZE
    assert victim not in ports
    assert summary["releases"] == "1"


def test_live_verbs_report_errors_clearly(legacy_pool, berthctl, tmp_path):
    _daemon, sock, _sbs, _held = legacy_pool
    out = berthctl("-s", sock, "release", "70000")
    assert out.returncode == 2
    assert "1-65535" in out.stderr

    missing = str(tmp_path / "nowhere.sock")
    out = berthctl("-s", missing, "status")
    assert out.returncode == 2
    assert "not running" in out.stderr and missing in out.stderr

    out = berthctl("-s", sock, "status")
    assert out.returncode == 0
    assert "pool: 2500 sockets" in out.stdout
    assert "dynamic 1024-5000" in out.stdout


def test_rotation_moves_sockets_to_fresh_ports(berthd, berthctl, tmp_path):
    """rotate = 200ms: every socket moves to a fresh random port each period,
    spread out, and never onto a reserved port."""
    import time
    sbs = catalog_ports("sbs")
    sock = str(tmp_path / "berth.sock")
    berthd(f"""
[ports]
max_user_port = 5000
max_user_port_semantics = legacy
reserved_catalog = sbs

[pool]
size = 50
rotate = 200ms

[control]
socket = {sock}
""", ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
    _, first = pool_listing(berthctl, sock)
    seen = {p for p, _ in first}
    deadline = time.monotonic() + 10
    while True:
        summary, sockets = pool_listing(berthctl, sock)
        seen |= {p for p, _ in sockets}
        if int(summary["rotations"]) >= 150 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert int(summary["rotations"]) >= 150, summary
    assert summary["ports held"] == "50"
    assert len(seen) > 100, "rotation did not move sockets to fresh ports"
    assert not seen & sbs
    assert all(1024 <= p <= 5000 for p in seen)


def free_block(size, start=20000, stop=30000):
    """The first block of size ports in [start, stop) that nothing holds,
    over UDP or TCP, on any address."""
    from conftest import port_held
    for lo in range(start, stop, size):
        if not any(port_held(p, kind, "0.0.0.0")
                   for p in range(lo, lo + size) for kind in ("udp", "tcp")):
            return lo
    pytest.fail(f"no free block of {size} ports in {start}-{stop}")


def test_refused_port_is_held_out_then_drawn_again(berthd, berthctl,
                                                   tmp_path):
    """A program binds a port of the range after start-up (as a client's
    ephemeral socket does): a rotation that draws it is refused, and the
    port sits out 10 s (`refused now`), then comes back (`readmitted`) and
    the pool holds it again; it is not lost until reload."""
    import time
    lo = free_block(8)
    sock = str(tmp_path / "berth.sock")
    berthd(f"""
[ports]
dynamic_range = {lo}-{lo + 7}

[pool]
size = 4
rotate = 100ms

[control]
socket = {sock}
""", ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
    bystander, port = None, None
    for _ in range(50):
        _, sockets = pool_listing(berthctl, sock)
        for p in set(range(lo, lo + 8)) - {q for q, _ in sockets}:
            try:
                bystander, port = bind_udp(p), p
                break
            except OSError:
                continue
        if bystander:
            break
        time.sleep(0.05)
    assert bystander, "every port stayed held by the pool"
    deadline = time.monotonic() + 5
    while True:
        summary, _ = pool_listing(berthctl, sock)
        if (summary["refused now"].split()[0] == "1"
                or time.monotonic() > deadline):
            break
        time.sleep(0.05)
    assert summary["refused now"].split()[0] == "1", summary
    refused_at = time.monotonic()
    assert int(summary["bind failures"]) >= 1
    assert summary["excluded"].split()[0] == "1"
    bystander.close()

    # Still held out well inside the 10 s, though the port is free now.
    time.sleep(5)
    summary, sockets = pool_listing(berthctl, sock)
    assert summary["refused now"].split()[0] == "1", summary
    assert port not in {p for p, _ in sockets}

    deadline = refused_at + 20
    seen = False
    while time.monotonic() < deadline and not seen:
        summary, sockets = pool_listing(berthctl, sock)
        seen = port in {p for p, state in sockets if state == "live"}
        time.sleep(0.05)
    assert seen, f"port {port} never drawn again: {summary}"
    assert time.monotonic() - refused_at >= 9
    assert summary["refused now"].split()[0] == "0", summary
    assert int(summary["readmitted"].split()[0]) >= 1, summary


def test_pool_leaves_the_services_listen_port(berthd, berthctl, tmp_path):
    """A pool of 99 in a range of 100 that holds a DNS service's own listen
    port: berthd builds the pool first, so without care it would take that
    port (99 times in 100) and the service could not bind it.  The pool must
    fit exactly in the other 99 and the service answer on its port."""
    import dns.message
    import dns.query
    lo = free_block(100)
    listen = lo + 50
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.77 pooltest.example\n")
    sock = str(tmp_path / "berth.sock")
    daemon = berthd(f"""
[ports]
dynamic_range = {lo}-{lo + 99}

[pool]
size = 99

[service dns]
protocol = dns
listen = 127.0.0.1:{listen}
hosts = {hosts}

[control]
socket = {sock}
""", ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
    summary, sockets = pool_listing(berthctl, sock)
    assert summary["ports held"] == "99", summary
    assert listen not in {p for p, _ in sockets}
    assert {p for p, _ in sockets} == set(range(lo, lo + 100)) - {listen}
    q = dns.message.make_query("pooltest.example.", "A")
    reply = dns.query.udp(q, "127.0.0.1", port=listen, timeout=3)
    assert [r.to_text() for rr in reply.answer for r in rr] == ["192.0.2.77"]
    assert "not started" not in daemon.stderr()


def slow_upstream(delay):
    """A DNS upstream on a loopback port that answers each query with
    192.0.2.99 after delay seconds.  Returns (port, stop)."""
    import threading
    import time
    import dns.message
    import dns.rrset
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                data, peer = s.recvfrom(4096)
            except socket.timeout:
                continue
            q = dns.message.from_wire(data)
            r = dns.message.make_response(q)
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60,
                                                "IN", "A", "192.0.2.99"))
            end = time.monotonic() + delay
            while time.monotonic() < end and not done.is_set():
                time.sleep(0.05)
            s.sendto(r.to_wire(), peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    def stop():
        done.set()
        t.join()
        s.close()
    return s.getsockname()[1], stop


def test_rotated_socket_stays_open_for_a_slow_answer(berthd, berthctl,
                                                      free_port, tmp_path):
    """With rotate, the socket a query left from moves to a new port while
    the query waits.  The old socket must stay open as long as the query
    may still be answered (upstream_timeout, here 7 s), not only the pool's
    default 5 s: the upstream answers after 6 s and the client gets that
    answer.  Before, the socket closed after 5 s and the client got
    SERVFAIL at 7 s."""
    import dns.message
    import dns.query
    up_port, stop = slow_upstream(6.0)
    port = free_port("both")
    sock = str(tmp_path / "berth.sock")
    try:
        berthd(f"""
[ports]
dynamic_range = 40000-60000

[pool]
size = 4
rotate = 500ms

[service dns]
protocol = dns
listen = 127.0.0.1:{port}
upstream = 127.0.0.1:{up_port}
upstream_timeout = 7s

[control]
socket = {sock}
""", ready=lambda d: berthctl("-s", sock, "status").returncode == 0)
        summary, _ = pool_listing(berthctl, sock)
        assert summary["drain limit"].startswith("7000 ms"), summary
        q = dns.message.make_query("slow.example.", "A")
        reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=10)
        assert [r.to_text() for rr in reply.answer for r in rr] == \
            ["192.0.2.99"], reply
        summary, _ = pool_listing(berthctl, sock)
        assert int(summary["rotations"]) >= 8, summary
    finally:
        stop()


def test_drain_limit_covers_the_kerberos_late_reply_guard(
        berthd, berthctl, free_port, tmp_path):
    """A kerberos service keeps a socket whose KDC timed out reserved for
    that KDC for max(10 s, upstream_timeout) more, so the pool must keep a
    socket it moves that long after the timeout too.  `drain limit` shows
    the longest any service needs; a reload recomputes it."""
    dns_port, krb_port = free_port("both"), free_port("both")
    sock = str(tmp_path / "berth.sock")
    kerberos = f"""
[service kdc]
protocol = kerberos
listen = 127.0.0.1:{krb_port}
upstream = 127.0.0.1:1
upstream_timeout = 3s
"""
    base = f"""
[ports]
dynamic_range = 40000-60000

[pool]
size = 4

[service dns]
protocol = dns
listen = 127.0.0.1:{dns_port}
upstream = 127.0.0.1:1
upstream_timeout = 7s

[control]
socket = {sock}
"""
    daemon = berthd(base + kerberos, ready=lambda d: berthctl(
        "-s", sock, "status").returncode == 0)
    summary, _ = pool_listing(berthctl, sock)
    assert summary["drain limit"].startswith("13000 ms"), summary
    daemon.config.write_text(base)
    out = berthctl("-s", sock, "reload")
    assert out.returncode == 0, out.stderr
    summary, _ = pool_listing(berthctl, sock)
    assert summary["drain limit"].startswith("7000 ms"), summary
    daemon.config.write_text(base.replace("upstream_timeout = 7s", ""))
    out = berthctl("-s", sock, "reload")
    assert out.returncode == 0, out.stderr
    summary, _ = pool_listing(berthctl, sock)
    assert summary["drain limit"].startswith("5000 ms"), summary
