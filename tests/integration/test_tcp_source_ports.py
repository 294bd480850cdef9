"""berthd's own TCP connections to upstreams leave from ports of the plan.

The UDP legs go out through the socket pool; the TCP legs (DNS to an
upstream, Kerberos to a KDC) used to take whatever source port the kernel
picked from ip_local_port_range, which knows nothing of the ports berth's
plan reserves.  Here the plan allows ten ports below the kernel's range
(a 100-port dynamic range with its first 90 reserved), fake upstreams record
the source port of every connection berthd opens to them, and each must be
one of those ten.  A kernel-picked port (32768 and up here) never is.
"""
import socket
import struct
import threading
from pathlib import Path

import dns.message
import dns.query
import dns.rrset
import pytest

from conftest import free_port, port_held
from test_pool import free_block

REPO = Path(__file__).resolve().parents[2]
CONNECTIONS = 4


class RecordingTcpUpstream:
    """A TCP server on loopback that records each peer's port and answers
    one framed message per connection with answer(request) (None: no
    answer).  Then it closes, so the next request needs a new connection;
    or, with keep_open, it waits for the peer to close, as a KDC keeping
    its connections open does, so berthd has to end each connection itself
    (each connection then has a thread of its own)."""

    def __init__(self, length_bytes, answer, keep_open=False):
        self.length_bytes = length_bytes
        self.answer = answer
        self.keep_open = keep_open
        self.ports = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", free_port("tcp")))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.serve, daemon=True)]
        self.threads[0].start()

    def read_exact(self, conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            self.ports.append(peer[1])
            if self.keep_open:
                t = threading.Thread(target=self.handle, args=(conn,),
                                     daemon=True)
                self.threads.append(t)
                t.start()
            else:
                self.handle(conn)

    def handle(self, conn):
        with conn:
            conn.settimeout(5 if self.keep_open else 2)
            try:
                head = self.read_exact(conn, self.length_bytes)
                if head is None:
                    return
                body = self.read_exact(conn, int.from_bytes(head, "big"))
                reply = self.answer(body) if body else None
                if reply:
                    conn.sendall(len(reply).to_bytes(self.length_bytes,
                                                     "big") + reply)
                while self.keep_open and conn.recv(64):
                    pass
            except OSError:
                pass

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=6)
        self.sock.close()


def plan(lo, tmp_path):
    """A dynamic range of 100 ports whose first 90 are reserved."""
    return (f"[ports]\ndynamic_range = {lo}-{lo + 99}\n"
            f"reserved = {lo}-{lo + 89}\n"
            f"[pool]\nsize = 4\n"
            f"[control]\nsocket = {tmp_path}/berth.sock\n")


def allowed(lo):
    return set(range(lo + 90, lo + 100))


def pool_tcp(berthctl, tmp_path):
    """The tcp counters of `berthctl pool`: {"connects": n, "refusals": n,
    "failures": n}."""
    out = berthctl("-s", str(tmp_path / "berth.sock"), "pool")
    assert out.returncode == 0, out.stderr
    counts = {}
    for line in out.stdout.splitlines():
        if line.startswith("tcp "):
            key, _, rest = line[4:].partition(":")
            counts[key] = int(rest.split()[0])
    assert set(counts) == {"connects", "refusals", "failures"}, out.stdout
    return counts


def dns_answer(wire):
    query = dns.message.from_wire(wire)
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text(
        query.question[0].name, 60, "IN", "A", "192.0.2.53"))
    return reply.to_wire()


def test_dns_upstream_tcp_leg_uses_ports_of_the_plan(berthd, berthctl,
                                                     tmp_path):
    lo = free_block(100)
    upstream = RecordingTcpUpstream(2, dns_answer)
    try:
        port = free_port("both")
        berthd(plan(lo, tmp_path) +
               f"[service dns]\nprotocol = dns\n"
               f"listen = 127.0.0.1:{port}\n"
               f"upstream = 127.0.0.1:{upstream.port}\n",
               lambda d: port_held(port, "tcp"))
        for i in range(CONNECTIONS):
            q = dns.message.make_query(f"n{i}.example.", "A")
            reply = dns.query.tcp(q, "127.0.0.1", port=port, timeout=3)
            assert [r.to_text() for rr in reply.answer for r in rr] == \
                ["192.0.2.53"]
        assert pool_tcp(berthctl, tmp_path)["connects"] >= CONNECTIONS
    finally:
        upstream.close()
    # The upstream closes after each answer, so each query opened a new
    # connection (a retry may add more).
    assert len(upstream.ports) >= CONNECTIONS
    assert set(upstream.ports) <= allowed(lo), upstream.ports


def test_kerberos_tcp_leg_uses_ports_of_the_plan(berthd, berthctl, tmp_path):
    lo = free_block(100)
    framed = (REPO / "tests" / "fuzz" / "corpus" / "krb_msg" /
              "as-req-tcp-framed").read_bytes()
    length = struct.unpack(">I", framed[:4])[0]
    assert length == len(framed) - 4 and framed[4] == 0x6a  # AS-REQ
    # The fake KDC closes without answering: the connection is all this
    # test needs, and berthd then answers the client with a KRB-ERROR.
    kdc = RecordingTcpUpstream(4, lambda req: None)
    try:
        port = free_port("both")
        berthd(plan(lo, tmp_path) +
               f"[service kdc]\nprotocol = kerberos\n"
               f"listen = 127.0.0.1:{port}\n"
               f"upstream = 127.0.0.1:{kdc.port}\n"
               f"upstream_timeout = 500ms\n",
               lambda d: port_held(port, "tcp"))
        for _ in range(CONNECTIONS):
            with socket.create_connection(("127.0.0.1", port),
                                          timeout=5) as c:
                c.sendall(framed)
                head = c.recv(4)
                assert len(head) == 4, "no reply from berthd"
        assert pool_tcp(berthctl, tmp_path)["connects"] >= CONNECTIONS
    finally:
        kdc.close()
    assert len(kdc.ports) >= CONNECTIONS
    assert set(kdc.ports) <= allowed(lo), kdc.ports


def as_rep(request):
    """An [APPLICATION 11] (AS-REP) shaped answer; berthd relays it as is."""
    return bytes([0x6b, 0x02, 0x30, 0x00])


def test_ended_kdc_connections_do_not_use_up_the_ports(berthd, berthctl,
                                                      tmp_path):
    """Three times as many Kerberos TCP requests as the plan has ports, each
    connection ended by berthd, since the KDC never closes first: every
    client gets the KDC's answer, and a DNS query over TCP to another peer
    still finds a port.  berthd aborts such connections, so it keeps no
    TIME_WAIT (test_kerberos.py checks that); were it to close them plainly,
    its TIME_WAITs would hold the ports, and only SO_REUSEADDR and the
    kernel's tcp_tw_reuse let them serve again (test_sockpool.c covers
    that).  Binding without sharing, berthd once answered the eleventh
    request with its own KRB-ERROR and the DNS query with SERVFAIL."""
    lo = free_block(100)
    framed = (REPO / "tests" / "fuzz" / "corpus" / "krb_msg" /
              "as-req-tcp-framed").read_bytes()
    kdc = RecordingTcpUpstream(4, as_rep, keep_open=True)
    upstream = RecordingTcpUpstream(2, dns_answer)
    try:
        kport, dport = free_port("both"), free_port("both")
        berthd(plan(lo, tmp_path) +
               f"[service kdc]\nprotocol = kerberos\n"
               f"listen = 127.0.0.1:{kport}\n"
               f"upstream = 127.0.0.1:{kdc.port}\n"
               f"upstream_timeout = 2s\n"
               f"[service dns]\nprotocol = dns\n"
               f"listen = 127.0.0.1:{dport}\n"
               f"upstream = 127.0.0.1:{upstream.port}\n",
               lambda d: port_held(kport, "tcp") and port_held(dport, "tcp"))
        kinds = []
        for _ in range(3 * len(allowed(lo))):
            with socket.create_connection(("127.0.0.1", kport),
                                          timeout=5) as c:
                c.sendall(framed)
                head = c.recv(4, socket.MSG_WAITALL)
                assert len(head) == 4, "no reply from berthd"
                body = c.recv(int.from_bytes(head, "big"), socket.MSG_WAITALL)
                kinds.append(body[0])
        assert kinds == [0x6b] * len(kinds), \
            f"berthd's own errors (0x7e) instead of the KDC's answer: {kinds}"
        reply = dns.query.tcp(dns.message.make_query("after.example.", "A"),
                              "127.0.0.1", port=dport, timeout=5)
        assert [r.to_text() for rr in reply.answer for r in rr] == \
            ["192.0.2.53"]
        counts = pool_tcp(berthctl, tmp_path)
        assert counts["connects"] >= len(kinds) + 1
        assert counts["failures"] == 0, counts
    finally:
        kdc.close()
        upstream.close()
    assert set(kdc.ports) <= allowed(lo), kdc.ports
    assert len(kdc.ports) == len(kinds)
    assert set(upstream.ports) <= allowed(lo), upstream.ports
