"""berthd's DNS forwarder against real clients (dig, kdig, dnspython) and a
real Unbound upstream, plus fake upstreams made of plain sockets for the
answers no honest server sends (wrong ID, wrong question, 0x20 case not
echoed), for recording what berthd sends, and for upstreams that never
answer.

Every scenario starts its own berthd on free loopback ports.
"""

import os
import re
import secrets
import socket
import subprocess
import threading
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from conftest import REPO, free_port, port_held
from upstreams import (BIG_NAME, DEFAULT_RECORDS, Record,
                       ipv6_loopback_available, require)

DIG = "/usr/bin/dig"
KDIG = "/usr/bin/kdig"


def config(tmp_path, port, upstreams, extra="", host="127.0.0.1"):
    """A berthd config: one dns service on host:port (UDP and TCP)."""
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (f"[ports]\ndynamic_range = 40000-60000\n"
            f"[pool]\nsize = 64\n"
            f"[service dns]\nprotocol = dns\nlisten = {listen}\n"
            f"upstream = {', '.join(upstreams)}\n{extra}"
            f"[control]\nsocket = {tmp_path}/berth.sock\n")


def start(berthd, tmp_path, upstreams, extra=""):
    port = free_port("both")
    daemon = berthd(config(tmp_path, port, upstreams, extra),
                    lambda d: port_held(port, "udp"))
    return daemon, port


def status(berthctl, daemon):
    """`berthctl status` as a dict of the dns service's counters."""
    out = berthctl("-c", daemon.config, "status")
    assert out.returncode == 0, out.stderr
    counters = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep and value.isdigit():
            counters[key] = int(value)
    return counters


def ask(port, name, rtype="A", *, payload=None, source_port=0, timeout=3.0):
    use_edns = 0 if payload else False
    q = dns.message.make_query(name, rtype, use_edns=use_edns,
                               payload=payload or 512)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout,
                         source_port=source_port, ignore_trailing=True)


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=15)


@pytest.fixture
def unbound(unbound_upstream):
    return unbound_upstream(ipv6=False)


def test_udp_dig_kdig_dnspython(berthd, berthctl, tmp_path, unbound):
    require(DIG, KDIG)
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"])
    out = run([DIG, "+short", "+tries=1", "+time=3", "-p", str(port),
               "@127.0.0.1", "host.test", "A"])
    assert out.stdout.split() == ["192.0.2.10"]
    out = run([KDIG, "+short", "+timeout=3", "-p", str(port), "@127.0.0.1",
               "host.test", "AAAA"])
    assert out.stdout.split() == ["2001:db8::10"]
    reply = ask(port, "mail.test.")
    assert [r.to_text() for rr in reply.answer for r in rr] == ["192.0.2.25"]
    counters = status(berthctl, daemon)
    assert counters["upstream_answers"] == 3
    assert counters["forwarded"] == 3


def test_two_services_share_one_upstream(berthd, berthctl, tmp_path, unbound):
    """Two dns services of one berthd forward to the same Unbound through the
    same pool.  Each must get its own answers: before, the first service
    took every datagram from that upstream, dropped the second's answers as
    its own mismatches (mismatch_id), and the second's clients got SERVFAIL
    after upstream_timeout."""
    require(DIG)
    one, two = free_port("both"), free_port("both")
    up = f"127.0.0.1:{unbound.port}"
    daemon = berthd(
        f"[ports]\ndynamic_range = 40000-60000\n[pool]\nsize = 4\n"
        f"[service one]\nprotocol = dns\nlisten = 127.0.0.1:{one}\n"
        f"upstream = {up}\nupstream_timeout = 1s\n"
        f"[service two]\nprotocol = dns\nlisten = 127.0.0.1:{two}\n"
        f"upstream = {up}\nupstream_timeout = 1s\n"
        f"[control]\nsocket = {tmp_path}/berth.sock\n",
        lambda d: port_held(one, "udp") and port_held(two, "udp"))
    for port in (one, two, two, one):
        out = run([DIG, "+short", "+tries=1", "+time=3", "-p", str(port),
                   "@127.0.0.1", "host.test", "A"])
        assert out.stdout.split() == ["192.0.2.10"], (port, out.stdout)
    out = berthctl("-c", daemon.config, "status")
    assert out.returncode == 0, out.stderr
    for name in ("one", "two"):
        block = out.stdout.split(f"service {name} (dns)", 1)[1]
        block = block.split("\nservice ", 1)[0]
        counters = {k.strip(): int(v) for k, _, v in
                    (line.partition(": ") for line in block.splitlines())
                    if v.strip().isdigit()}
        assert counters["upstream_answers"] == 2, (name, counters)
        assert counters["servfails"] == 0, (name, counters)
        assert counters["mismatch_id"] == 0, (name, counters)


def test_edns_size_kept_honest(berthd, tmp_path, unbound):
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"])
    reply = ask(port, "host.test.", "TXT", payload=4096)
    assert reply.edns == 0
    # The forwarder promises only what it takes itself.
    assert reply.payload == 1232
    assert [r.to_text() for rr in reply.answer for r in rr] == \
        ['"berth upstream"']


def test_tc_relayed_to_udp_client(berthd, tmp_path, unbound):
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"])
    reply = ask(port, BIG_NAME, "TXT")
    assert reply.flags & dns.flags.TC
    assert reply.rcode() == dns.rcode.NOERROR


def test_badvers_and_zone_transfers_answered_by_berthd(berthd, berthctl,
                                                       tmp_path, unbound):
    """kdig asking with EDNS version 1 gets BADVERS (RFC 6891 6.1.3), and
    dig's AXFR over TCP a NOTIMP at once, not a transfer cut after its first
    message; neither reaches the upstream."""
    require(DIG, KDIG)
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"])
    out = run([KDIG, "+edns=1", "+timeout=3", "+retry=0", "-p", str(port),
               "@127.0.0.1", "host.test", "A"])
    assert "status: BADVERS" in out.stdout, out.stdout + out.stderr
    out = run([KDIG, "+edns=0", "+timeout=3", "+retry=0", "-p", str(port),
               "@127.0.0.1", "host.test", "A"])
    assert "status: NOERROR" in out.stdout, out.stdout + out.stderr
    out = run([DIG, "+tries=1", "+time=3", "-p", str(port), "@127.0.0.1",
               "test", "AXFR"])
    assert "Transfer failed" in out.stdout, out.stdout + out.stderr
    counters = status(berthctl, daemon)
    assert counters["badvers"] == 1
    # BADVERS (16) is counted as itself, not as the NOERROR its low four
    # header bits spell: one NOERROR, the version 0 answer.
    assert counters["rcode_badvers"] == 1
    assert counters["rcode_noerror"] == 1
    assert counters["zone_transfers"] == 1
    assert counters["rcode_notimp"] == 1
    assert counters["forwarded"] == 1


def test_wildcard_listeners_answer_from_the_address_asked(berthd, tmp_path,
                                                          unbound):
    """Listening on 0.0.0.0 and [::], berthd answers each UDP query from the
    address it was sent to: dig drops an answer from any other ("reply from
    unexpected source") and times out."""
    require(DIG)
    if not ipv6_loopback_available():
        pytest.fail("::1 cannot be bound on this machine: the test needs the "
                    "IPv6 loopback address", pytrace=False)
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.99 local.example\n")
    port = free_port("both")
    conf = (f"[ports]\ndynamic_range = 40000-60000\n[pool]\nsize = 64\n"
            f"[service dns]\nprotocol = dns\n"
            f"listen = 0.0.0.0:{port}, [::]:{port}\n"
            f"upstream = 127.0.0.1:{unbound.port}\nhosts = {hosts}\n"
            f"[control]\nsocket = {tmp_path}/berth.sock\n")
    berthd(conf, lambda d: port_held(port, "udp"))
    for server in ("127.0.0.9", "127.0.0.1", "::1"):
        for name, want in (("local.example", "192.0.2.99"),
                           ("host.test", "192.0.2.10")):
            out = run([DIG, "+short", "+tries=1", "+time=3", "-p", str(port),
                       f"@{server}", name, "A"])
            assert out.stdout.split() == [want], (server, name,
                                                  out.stdout + out.stderr)


def test_hosts_file_answered_locally(berthd, tmp_path, unbound):
    require(DIG)
    hosts = tmp_path / "hosts"
    hosts.write_text("# local names\n192.0.2.99 local.example Alias\n"
                     "2001:db8::99 local.example\n")
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"],
                         f"hosts = {hosts}\n")
    out = run([DIG, "+short", "+tries=1", "-p", str(port), "@127.0.0.1",
               "ALIAS", "A"])
    assert out.stdout.split() == ["192.0.2.99"]
    out = run([DIG, "+short", "+tries=1", "-p", str(port), "@127.0.0.1",
               "-x", "192.0.2.99"])
    assert out.stdout.split() == ["local.example."]
    reply = ask(port, "local.example.", "MX")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    # Unbound never saw the local names.
    assert "local.example" not in unbound.log()


def test_servfail_when_upstream_dead(berthd, tmp_path):
    dead = free_port("udp")
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{dead}"],
                         "upstream_timeout = 300ms\n")
    reply = ask(port, "host.test.")
    assert reply.rcode() == dns.rcode.SERVFAIL


class LyingUpstream(threading.Thread):
    """A fake upstream: to each query it first sends an answer with a wrong
    ID, then one with a wrong question, then the right answer."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]

    def run(self):
        try:
            data, peer = self.sock.recvfrom(4096)
        except OSError:
            return
        q = dns.message.from_wire(data)
        wrong_id = dns.message.make_response(q)
        wrong_id.id = (q.id + 1) % 65536
        wrong_id.answer.append(dns.rrset.from_text(
            q.question[0].name, 60, "IN", "A", "203.0.113.1"))
        other = dns.message.make_query("other.test.", "A")
        other.id = q.id
        wrong_q = dns.message.make_response(other)
        wrong_q.answer.append(dns.rrset.from_text(
            "other.test.", 60, "IN", "A", "203.0.113.2"))
        right = dns.message.make_response(q)
        right.answer.append(dns.rrset.from_text(
            q.question[0].name, 60, "IN", "A", "192.0.2.77"))
        for msg in (wrong_id, wrong_q, right):
            self.sock.sendto(msg.to_wire(), peer)
        self.sock.close()


def test_mismatching_answers_rejected(berthd, berthctl, tmp_path):
    liar = LyingUpstream()
    liar.start()
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{liar.port}"])
    reply = ask(port, "spoof.test.")
    assert [r.to_text() for rr in reply.answer for r in rr] == ["192.0.2.77"]
    liar.join(5)
    counters = status(berthctl, daemon)
    assert counters["mismatch_id"] == 1
    assert counters["mismatch_question"] == 1
    assert counters["upstream_answers"] == 1


def test_garbage_survived(berthd, berthctl, tmp_path, unbound):
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n in (0, 1, 5, 11, 12, 40, 512, 3000):
            s.sendto(os.urandom(n), ("127.0.0.1", port))
        # Asked while s still holds its port: berthd's FORMERR or NOTIMP
        # answers to the garbage go to s, never to a new socket the kernel
        # might have given the same port (CI saw dnspython choke on one).
        reply = ask(port, "host.test.")
    assert [r.to_text() for rr in reply.answer for r in rr] == ["192.0.2.10"]
    assert daemon.alive()
    counters = status(berthctl, daemon)
    # Each of the eight is accounted for once: too short for a header
    # (garbage), QR set (responses_on_listen), else answered FORMERR, or
    # NOTIMP when its random opcode is not QUERY.
    accounted = (counters["garbage"] + counters["formerr"] +
                 counters["responses_on_listen"] + counters["refused"] +
                 counters.get("rcode_notimp", 0))
    assert counters["garbage"] >= 4
    assert accounted == 8, counters


def test_guarded_source_ports(berthd, berthctl, tmp_path, unbound):
    # 464 is the port the issue names; without root a high port from the
    # same list stands in for it (binding 464 needs privileges).
    high = free_port("udp")
    blocked = 464 if os.geteuid() == 0 else high
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"],
                         f"blocked_source_ports = 0, 7, 13, 19, 37, 464, {high}\n")
    with pytest.raises(dns.exception.Timeout):
        ask(port, "host.test.", source_port=blocked, timeout=1.0)
    reply = ask(port, "host.test.", source_port=free_port("udp"))
    assert reply.answer
    assert status(berthctl, daemon)["guard_drops"] == 1


def test_tcp_dig_kdig(berthd, tmp_path, unbound):
    require(DIG, KDIG)
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"])
    out = run([DIG, "+tcp", "+short", "+tries=1", "+time=3", "-p", str(port),
               "@127.0.0.1", "host.test", "A"])
    assert out.stdout.split() == ["192.0.2.10"]
    out = run([KDIG, "+tcp", "+short", "+timeout=3", "-p", str(port),
               "@127.0.0.1", "host.test", "MX"])
    assert out.stdout.split() == ["10", "mail.test."]


def test_tcp_pipelined(berthd, tmp_path, unbound):
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"])
    names = ["host.test.", "mail.test.", "nothing.test."]
    queries = [dns.message.make_query(n, "A") for n in names]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        wire = b"".join(len(w).to_bytes(2, "big") + w
                        for w in (q.to_wire() for q in queries))
        s.sendall(wire)
        replies = {}
        for _ in queries:
            reply, _ = dns.query.receive_tcp(s, expiration=None)
            replies[reply.id] = reply
    for q in queries:
        assert q.is_response(replies[q.id])
    assert replies[queries[2].id].rcode() == dns.rcode.NXDOMAIN


def dig_flags(out):
    """The header flags dig printed (";; flags: qr rd ra; ..."), as a set."""
    for line in out.splitlines():
        if line.startswith(";; flags:"):
            return set(line.split(":", 1)[1].split(";", 1)[0].split())
    pytest.fail(f"no flags line in dig's output:\n{out}", pytrace=False)


def test_tcp_client_upstream_leg_over_tcp(berthd, berthctl, tmp_path, unbound):
    require(DIG)
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"])
    out = run([DIG, "+tcp", "+tries=1", "+time=3", "-p", str(port),
               "@127.0.0.1", BIG_NAME, "TXT"])
    assert out.returncode == 0, out.stderr
    flags = dig_flags(out.stdout)
    assert "tc" not in flags and "qr" in flags
    txt = [line for line in out.stdout.splitlines()
           if not line.startswith(";") and "TXT" in line and '"big-' in line]
    # The whole answer: eight 200-octet strings, about 1.7 kB, more than a
    # UDP answer could carry.
    assert len(txt) == 8
    counters = status(berthctl, daemon)
    assert counters["upstream_tcp_queries"] == 1
    assert counters["upstream_tcp_opened"] == 1
    assert counters["truncated"] == 0
    # A second TCP client reuses the upstream connection.
    out = run([DIG, "+tcp", "+short", "+tries=1", "+time=3", "-p", str(port),
               "@127.0.0.1", "host.test", "A"])
    assert out.stdout.split() == ["192.0.2.10"]
    counters = status(berthctl, daemon)
    assert counters["upstream_tcp_queries"] == 2
    assert counters["upstream_tcp_opened"] == 1
    assert counters["upstream_tcp_reused"] == 1


def test_udp_client_gets_tc_relayed_by_dig(berthd, berthctl, tmp_path, unbound):
    require(DIG)
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{unbound.port}"])
    out = run([DIG, "+notcp", "+ignore", "+tries=1", "+time=3", "-p",
               str(port), "@127.0.0.1", BIG_NAME, "TXT"])
    assert out.returncode == 0, out.stderr
    assert "tc" in dig_flags(out.stdout)
    counters = status(berthctl, daemon)
    # The UDP client's query went upstream over UDP, not TCP.
    assert counters["forwarded"] == 1
    assert counters["upstream_tcp_queries"] == 0
    assert counters["upstream_tcp_opened"] == 0


def test_answers_through_a_large_pool(berthd, berthctl, tmp_path, unbound):
    """A pool of 400 sockets (its fds spread well past the first watch table
    berthd allocates) answers every query; each reply arrives on whichever
    pool socket the query left from.  Under the ASan build this also proves
    the daemon never reads a pool watch it moved or freed."""
    port = free_port("both")
    text = config(tmp_path, port, [f"127.0.0.1:{unbound.port}"]).replace(
        "size = 64", "size = 400")
    daemon = berthd(text, lambda d: port_held(port, "udp"))
    names = ["host.test.", "mail.test."]
    want = {"host.test.": ["192.0.2.10"], "mail.test.": ["192.0.2.25"]}
    for i in range(200):
        name = names[i % 2]
        reply = ask(port, name)
        assert [r.to_text() for rr in reply.answer for r in rr] == want[name]
    counters = status(berthctl, daemon)
    assert counters["forwarded"] == 200
    assert counters["upstream_answers"] == 200
    out = berthctl("-c", daemon.config, "pool")
    assert out.returncode == 0, out.stderr
    fields = {k.strip(): v.split()[0] for k, _, v in
              (line.partition(":") for line in out.stdout.splitlines()) if v}
    assert fields["ports held"] == "400", out.stdout
    assert fields["outstanding"] == "0", out.stdout


# ------------------------------------------------ failover and upstream health

def sick_after():
    """DNS_FWD_SICK_AFTER from src/dns/forwarder.h: the consecutive timeouts
    after which an upstream is tried last."""
    header = (REPO / "src" / "dns" / "forwarder.h").read_text()
    m = re.search(r"#define DNS_FWD_SICK_AFTER (\d+)u?\b", header)
    assert m, "DNS_FWD_SICK_AFTER not found in src/dns/forwarder.h"
    return int(m.group(1))


def answer_of(reply):
    return sorted(r.to_text() for rr in reply.answer for r in rr)


def timed_ask(port, name, rtype="A", timeout=3.0):
    """ask() that also returns how long the answer took, in seconds."""
    t0 = time.monotonic()
    reply = ask(port, name, rtype, timeout=timeout)
    return reply, time.monotonic() - t0


class BlackHole:
    """A dead upstream: a UDP socket and a TCP listener on one loopback port
    that take queries and never answer (TCP connections complete in the
    kernel's backlog and are never accepted).  Holding the port (unlike a
    port nothing listens on) means nobody else can answer there, and shows
    what was sent to it."""

    def __init__(self):
        for _ in range(100):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.sock.bind(("127.0.0.1", 0))
                self.tcp.bind(("127.0.0.1", self.sock.getsockname()[1]))
                break
            except OSError:
                self.close()
        else:
            raise RuntimeError("no port free for UDP and TCP after 100 tries")
        self.tcp.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.count = 0

    def close(self):
        self.sock.close()
        self.tcp.close()

    def received(self):
        """How many datagrams arrived so far."""
        for _ in range(10000):
            try:
                self.sock.recv(65535)
            except BlockingIOError:
                break
            self.count += 1
        return self.count


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


def test_failover_to_live_second_upstream(berthd, berthctl, tmp_path, unbound,
                                          black_hole):
    """The first upstream swallows the query; after upstream_timeout the
    query goes to the second (the real Unbound) and the client gets the
    real answer, with the timeout and the retry counted."""
    daemon, port = start(berthd, tmp_path,
                         [f"127.0.0.1:{black_hole.port}",
                          f"127.0.0.1:{unbound.port}"],
                         "upstream_timeout = 300ms\n")
    reply, took = timed_ask(port, "host.test.")
    assert reply.rcode() == dns.rcode.NOERROR
    assert answer_of(reply) == unbound.answers("host.test.", "A")
    # The first upstream was tried first and waited for (the wheel never
    # fires a timer early; a little slack for the loop's clock).
    assert black_hole.received() == 1
    assert took >= 0.25, took
    counters = status(berthctl, daemon)
    assert counters["forwarded"] == 1
    assert counters["timeouts"] == 1
    assert counters["retries"] == 1
    assert counters["upstream_answers"] == 1
    assert counters["servfails"] == 0
    assert counters["upstream_0_failures"] == 1
    assert counters["upstream_1_failures"] == 0


def test_failover_tcp_client_to_live_second_upstream(berthd, berthctl,
                                                     tmp_path, unbound,
                                                     black_hole):
    """The same over TCP: the first upstream accepts the connection (in the
    kernel's backlog) and never answers; after upstream_timeout the query
    goes to the second upstream over TCP and the client gets its answer."""
    daemon, port = start(berthd, tmp_path,
                         [f"127.0.0.1:{black_hole.port}",
                          f"127.0.0.1:{unbound.port}"],
                         "upstream_timeout = 300ms\n")
    t0 = time.monotonic()
    reply = dns.query.tcp(dns.message.make_query("host.test.", "A"),
                          "127.0.0.1", port=port, timeout=3)
    took = time.monotonic() - t0
    assert answer_of(reply) == unbound.answers("host.test.", "A")
    assert took >= 0.25, took
    counters = status(berthctl, daemon)
    assert counters["forwarded"] == 1
    assert counters["upstream_tcp_queries"] == 2
    assert counters["timeouts"] == 1
    assert counters["retries"] == 1
    assert counters["upstream_answers"] == 1
    assert counters["upstream_0_failures"] == 1
    assert counters["upstream_1_failures"] == 0
    assert black_hole.received() == 0  # nothing went over UDP


def test_failing_upstream_is_tried_last(berthd, berthctl, tmp_path, unbound,
                                        black_hole):
    """After DNS_FWD_SICK_AFTER timeouts in a row the dead first upstream is
    tried after the healthy one: later queries are answered at once, and
    the dead one sees none of them."""
    limit = sick_after()
    timeout = 0.5
    daemon, port = start(berthd, tmp_path,
                         [f"127.0.0.1:{black_hole.port}",
                          f"127.0.0.1:{unbound.port}"],
                         f"upstream_timeout = {int(timeout * 1000)}ms\n")
    # Up to the threshold every query goes to the dead upstream first.
    for i in range(limit):
        reply, took = timed_ask(port, "host.test.")
        assert answer_of(reply) == ["192.0.2.10"]
        assert took >= timeout * 0.8, (i, took)
        counters = status(berthctl, daemon)
        assert counters["upstream_0_failures"] == i + 1
        assert black_hole.received() == i + 1
    # From now on the healthy upstream comes first.  A broken health state
    # costs a whole timeout per query, so half of one is a wide margin.
    for name, want in [("host.test.", ["192.0.2.10"]),
                       ("mail.test.", ["192.0.2.25"])] * 3:
        reply, took = timed_ask(port, name)
        assert answer_of(reply) == want
        assert took < timeout / 2, (name, took)
    assert black_hole.received() == limit
    counters = status(berthctl, daemon)
    assert counters["timeouts"] == limit
    assert counters["retries"] == limit
    assert counters["forwarded"] == limit + 6
    assert counters["upstream_answers"] == limit + 6
    assert counters["servfails"] == 0
    # It is still counted as failing: it never answered.
    assert counters["upstream_0_failures"] == limit
    assert counters["upstream_1_failures"] == 0


class DroppingUpstream(threading.Thread):
    """A fake upstream on UDP that answers each query with an A record of
    `address` unless drop(q, peer) says to drop it.  It runs until stop()."""

    def __init__(self, address):
        super().__init__(daemon=True)
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()

    def drop(self, q, peer):
        raise NotImplementedError

    def run(self):
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            q = dns.message.from_wire(data)
            if self.drop(q, peer):
                continue
            reply = dns.message.make_response(q)
            reply.answer.append(dns.rrset.from_text(
                q.question[0].name, 60, "IN", "A", self.address))
            self.sock.sendto(reply.to_wire(), peer)

    def stop(self):
        self.stopping.set()
        self.join(5)
        self.sock.close()


class PickyUpstream(DroppingUpstream):
    """Drops the queries for names under `ignored`, as a recursive server
    still working on an unreachable zone looks from outside."""

    def __init__(self, ignored, address="192.0.2.80"):
        super().__init__(address)
        self.ignored = dns.name.from_text(ignored)
        self.dropped = 0

    def drop(self, q, peer):
        if q.question[0].name.is_subdomain(self.ignored):
            self.dropped += 1
            return True
        return False


@pytest.fixture
def picky():
    up = PickyUpstream("slow.test.")
    up.start()
    yield up
    up.stop()


def test_ignored_queries_leave_an_answering_upstream_healthy(berthd, berthctl,
                                                             tmp_path, picky):
    """More than DNS_FWD_SICK_AFTER queries the upstream ignores, each while
    it answers another: every one times out (SERVFAIL, one upstream), but
    they count as timeouts_alive, not as failures of the upstream."""
    limit = sick_after()
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{picky.port}"],
                         "upstream_timeout = 400ms\n")
    for i in range(limit + 1):
        slow = {}
        asker = threading.Thread(target=lambda: slow.update(
            reply=ask(port, f"n{i}.slow.test.")))
        asker.start()
        time.sleep(0.05)  # the slow query leaves first
        assert answer_of(ask(port, f"n{i}.fast.test.")) == ["192.0.2.80"]
        asker.join(5)
        assert slow["reply"].rcode() == dns.rcode.SERVFAIL
    assert picky.dropped == limit + 1
    counters = status(berthctl, daemon)
    assert counters["timeouts"] == limit + 1
    assert counters["upstream_0_failures"] == 0
    assert counters["timeouts_alive"] == limit + 1
    assert counters["servfails"] == limit + 1


class LossyUpstream(DroppingUpstream):
    """Drops the first datagram of each name, as a lossy path would."""

    def __init__(self, address="192.0.2.81"):
        super().__init__(address)
        self.seen = {}

    def drop(self, q, peer):
        name = q.question[0].name
        self.seen[name] = self.seen.get(name, 0) + 1
        return self.seen[name] == 1


def test_glibc_lookup_survives_a_lost_datagram(berthd, berthctl, tmp_path):
    """glibc's resolver (getent) with berthd as its only nameserver, and
    berthd's lone upstream dropping the first datagram of each name: berthd
    asks it once and answers SERVFAIL at upstream_timeout, glibc asks again
    at once, and the lookup succeeds.  This is why berthd does not ask a
    lone upstream twice.  Needs root (a mount namespace, port 53): fails,
    does not skip, without it."""
    if os.geteuid() != 0:
        pytest.fail("needs root: unshare -m and port 53 (CI runs as root)")
    lossy = LossyUpstream()
    lossy.start()
    try:
        host = f"127.53.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"
        assert not port_held(53, "udp", host), f"port 53 on {host} is taken"
        conf = config(tmp_path, 53, [f"127.0.0.1:{lossy.port}"],
                      "upstream_timeout = 300ms\n", host=host)
        daemon = berthd(conf, lambda d: port_held(53, "udp", host))
        # The namespace's own resolver files: berthd as the only
        # nameserver, and names looked up in /etc/hosts, then DNS.
        resolv = tmp_path / "resolv.conf"
        resolv.write_text(f"nameserver {host}\noptions timeout:5 attempts:2\n")
        nsswitch = tmp_path / "nsswitch.conf"
        nsswitch.write_text("hosts: files dns\n")
        t0 = time.monotonic()
        out = subprocess.run(
            ["unshare", "-m", "sh", "-c",
             'mount --bind "$1" /etc/resolv.conf && '
             'mount --bind "$2" /etc/nsswitch.conf && '
             'exec getent ahostsv4 lost-once.test',
             "sh", str(resolv), str(nsswitch)],
            capture_output=True, text=True, timeout=20)
        took = time.monotonic() - t0
        # A mount refused (a container without CAP_SYS_ADMIN, or under
        # AppArmor) shows in stderr, apart from a failed lookup (exit 2).
        assert out.returncode == 0, (f"unshare/mount/getent exited "
                                     f"{out.returncode}: {out.stderr}")
        assert out.stdout.split()[0] == "192.0.2.81", out.stdout
        # One upstream_timeout, then glibc's resend at once, not its 5 s.
        assert 0.25 <= took < 4, took
        name = dns.name.from_text("lost-once.test.")
        assert lossy.seen[name] == 2
        counters = status(berthctl, daemon)
        assert counters["servfails"] == 1
        assert counters["timeouts"] == 1
        assert counters["retries"] == 0
        assert counters["upstream_answers"] == 1
    finally:
        lossy.stop()


# ------------------------------------------------------------------- 0x20 ----

# 30 letters: the chance that random case leaves them all lower case (or all
# as the client wrote them) is 2**-30 per query.
LETTERS = "abcdefghijklmnopqrstuvwxyz.test."
LETTERS_A = "192.0.2.26"


def mixed_case(name):
    """True when name (text, or a dnspython label tuple) has upper and lower
    case letters."""
    if not isinstance(name, str):
        name = b".".join(name).decode("ascii")
    return any(c.isupper() for c in name) and any(c.islower() for c in name)


class EchoUpstream(threading.Thread):
    """A fake upstream answering `count` UDP queries with an A record.

    It keeps the question name of every query as it arrived (`seen`, a list
    of label tuples, case kept) and answers with the question copied
    exactly, as an honest server does; with lowercase=True it answers with
    the question name in lower case instead (a server that does not echo
    0x20 case, or a spoofer who guessed only the name)."""

    def __init__(self, count, address, lowercase=False):
        super().__init__(daemon=True)
        self.count = count
        self.address = address
        self.lowercase = lowercase
        self.seen = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]

    def run(self):
        try:
            for _ in range(self.count):
                data, peer = self.sock.recvfrom(4096)
                q = dns.message.from_wire(data)
                name = q.question[0].name
                self.seen.append(name.labels)
                if self.lowercase:
                    name = dns.name.Name([label.lower() for label in
                                          name.labels])
                    asked = dns.message.make_query(name, "A")
                    asked.id = q.id
                    asked.flags = q.flags
                    reply = dns.message.make_response(asked)
                else:
                    reply = dns.message.make_response(q)
                reply.answer.append(dns.rrset.from_text(
                    name, 60, "IN", "A", self.address))
                self.sock.sendto(reply.to_wire(), peer)
        except OSError:
            pass
        finally:
            self.sock.close()


def test_0x20_with_unbound(berthd, berthctl, tmp_path, unbound_upstream):
    """With dns_0x20 the real Unbound's answers are accepted and correct,
    over UDP and TCP; Unbound's log shows the names arriving in random mixed
    case, and each client gets the question back in the case it wrote."""
    up = unbound_upstream(DEFAULT_RECORDS + (Record(LETTERS, "A", LETTERS_A),),
                          ipv6=False)
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{up.port}"],
                         "dns_0x20 = yes\n")
    # The fixture's own ready probes are in Unbound's log already.
    logged = len(up.log().splitlines())
    spellings = [LETTERS, LETTERS.upper(), "aBcDeFgHiJkLmNoPqRsTuVwXyZ.TeSt."]
    names = spellings + ["HoSt.TeSt."]
    for text in names:
        for tcp in (False, True):
            q = dns.message.make_query(text, "A")
            if tcp:
                reply = dns.query.tcp(q, "127.0.0.1", port=port, timeout=3)
            else:
                reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
            assert reply.rcode() == dns.rcode.NOERROR, (text, tcp)
            want = up.answers(text.lower(), "A")
            assert want and answer_of(reply) == want, (text, tcp)
            # Labels are bytes: this compares case exactly.
            assert reply.question[0].name.labels == \
                q.question[0].name.labels, (text, tcp)
    counters = status(berthctl, daemon)
    assert counters["upstream_answers"] == 2 * len(names)
    assert counters["mismatch_question"] == 0
    assert counters["timeouts"] == 0
    # Query lines are "info: ADDR NAME TYPE CLASS"; replies go on after it.
    sent = [line.split()[-3] for line in up.log().splitlines()[logged:]
            if "info: " in line and line.endswith(" A IN")]
    letters = [name for name in sent if name.lower() == LETTERS]
    assert len(letters) == 2 * len(spellings), sent
    for name in letters:
        assert mixed_case(name) and name not in spellings, letters


def test_0x20_randomizes_case_upstream(berthd, berthctl, tmp_path):
    """What leaves for the upstream has random mixed case, new for every
    query, and the client still sees its own case."""
    rounds = 6
    echo = EchoUpstream(rounds, "192.0.2.77")
    echo.start()
    daemon, port = start(berthd, tmp_path, [f"127.0.0.1:{echo.port}"],
                         "dns_0x20 = yes\n")
    for i in range(rounds):
        text = LETTERS if i % 2 == 0 else LETTERS.upper()
        q = dns.message.make_query(text, "A")
        reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
        assert answer_of(reply) == ["192.0.2.77"]
        assert reply.question[0].name.labels == q.question[0].name.labels
    echo.join(5)
    assert len(echo.seen) == rounds
    want = dns.name.from_text(LETTERS)
    for labels in echo.seen:
        assert dns.name.Name(labels) == want  # the same name, any case
        assert mixed_case(labels), labels
    assert len(set(echo.seen)) > 1, echo.seen
    counters = status(berthctl, daemon)
    assert counters["upstream_answers"] == rounds
    assert counters["mismatch_question"] == 0


def test_0x20_rejects_answer_without_case(berthd, berthctl, tmp_path):
    """An answer whose question comes back lower case is not the answer to
    a 0x20 query: it is dropped and counted, and the client gets SERVFAIL
    once the upstream's time is up.  The same answer is accepted without
    dns_0x20 (names match case-insensitively), so the case is the reason."""
    liar = EchoUpstream(2, "203.0.113.5", lowercase=True)
    liar.start()
    upstream = [f"127.0.0.1:{liar.port}"]
    daemon, port = start(berthd, tmp_path, upstream,
                         "dns_0x20 = yes\nupstream_timeout = 300ms\n")
    q = dns.message.make_query(LETTERS, "A")
    t0 = time.monotonic()
    reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
    took = time.monotonic() - t0
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert not reply.answer
    assert reply.question[0].name.labels == q.question[0].name.labels
    assert took >= 0.25, took
    counters = status(berthctl, daemon)
    assert counters["answers"] == 1
    assert counters["mismatch_question"] == 1
    assert counters["upstream_answers"] == 0
    assert counters["timeouts"] == 1
    assert counters["servfails"] == 1
    assert mixed_case(liar.seen[0]), liar.seen
    # The second berthd takes the first one's control socket.
    assert daemon.stop() == (0, False), daemon.stderr()

    plain, plain_port = start(berthd, tmp_path, upstream,
                              "upstream_timeout = 300ms\n")
    reply = ask(plain_port, LETTERS.upper())
    assert answer_of(reply) == ["203.0.113.5"]
    liar.join(5)
    assert status(berthctl, plain)["mismatch_question"] == 0


# ------------------------------------------------------------------- IPv6 ----

def test_ipv6_listen_and_upstream(berthd, berthctl, tmp_path, unbound_upstream):
    """A dns service on [::1] forwarding to Unbound on [::1] answers dig and
    dnspython over UDP and TCP (the pool opens IPv6 sockets for it)."""
    require(DIG)
    if not ipv6_loopback_available():
        pytest.fail("::1 cannot be bound on this machine: the IPv6 forwarder "
                    "test needs the IPv6 loopback address (a skip would leave "
                    "IPv6 untested)", pytrace=False)
    up = unbound_upstream(ipv6=True)
    port = free_port("both", host="::1")
    daemon = berthd(config(tmp_path, port, [f"[::1]:{up.port}"], host="::1"),
                    lambda d: (port_held(port, "udp", "::1") and
                               port_held(port, "tcp", "::1")))
    # The fixture's own ready probes are in Unbound's log already.
    logged = len(up.log().splitlines())
    for tcp in ("+notcp", "+tcp"):
        out = run([DIG, tcp, "+short", "+tries=1", "+time=3", "-p", str(port),
                   "@::1", "host.test", "A"])
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == up.answers("host.test.", "A"), tcp
    q = dns.message.make_query("host.test.", "AAAA")
    reply = dns.query.udp(q, "::1", port=port, timeout=3)
    assert answer_of(reply) == up.answers("host.test.", "AAAA")
    reply = dns.query.tcp(q, "::1", port=port, timeout=3)
    assert answer_of(reply) == up.answers("host.test.", "AAAA")
    counters = status(berthctl, daemon)
    assert counters["queries_udp"] == 2
    assert counters["queries_tcp"] == 2
    assert counters["upstream_answers"] == 4
    assert counters["upstream_tcp_queries"] == 2
    assert counters["servfails"] == 0
    assert counters["timeouts"] == 0
    # Unbound heard the four queries, from ::1.  Query lines end in the
    # class; reply lines go on with the rcode.
    asked = [line.split("info: ", 1)[1]
             for line in up.log().splitlines()[logged:]
             if "info: " in line and line.endswith(" IN")]
    assert sorted(asked) == ["::1 host.test. A IN"] * 2 + \
        ["::1 host.test. AAAA IN"] * 2, up.log()
