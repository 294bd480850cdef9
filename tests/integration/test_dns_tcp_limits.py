"""DNS-over-TCP clients that pipeline more than their share, or close badly.

berthd hands one TCP session at most 64 queries in flight at once; the rest
of a burst waits, unread, in the session's buffers and the kernel's, and is
taken as answers go out.  Before, one connection could put every query it
sent into the forwarder's table at once (65,536 of them for about 2 MB of
input), so one client could fill it and every other client got SERVFAIL.
The upstream here is a tar pit: a TCP socket that listens and never
accepts, so the kernel completes berthd's connections and buffers its
queries, and nothing ever answers.

A session that closes while its answers are still queued for the client
lingers instead of closing at once, so those answers still reach a client
whose receive window is small, even one that sends on after the close.
"""
import socket
import time

import dns.message
import dns.query
import dns.rcode

from test_dns import start, status

PER_SESSION = 64   # the session engine's SESS_DEFAULT_MAX_IN_FLIGHT
BURST = 150
UPSTREAM_TIMEOUT = 2  # seconds


def test_pipelined_burst_is_held_at_the_cap(berthd, berthctl, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as pit:
        pit.bind(("127.0.0.1", 0))
        pit.listen(16)
        daemon, port = start(berthd, tmp_path,
                             [f"127.0.0.1:{pit.getsockname()[1]}"],
                             f"upstream_timeout = {UPSTREAM_TIMEOUT}s\n")
        queries = [dns.message.make_query(f"q{i}.test.", "A")
                   for i in range(BURST)]
        wire = b"".join(len(w).to_bytes(2, "big") + w
                        for w in (q.to_wire() for q in queries))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            sent = time.monotonic()
            c.sendall(wire)
            # Within the first upstream_timeout nothing is answered, so
            # exactly one cap's worth has been taken from the burst.
            deadline = sent + UPSTREAM_TIMEOUT * 0.75
            counters = status(berthctl, daemon)
            while counters["queries_tcp"] < PER_SESSION and \
                    time.monotonic() < deadline:
                time.sleep(0.02)
                counters = status(berthctl, daemon)
            assert time.monotonic() - sent < UPSTREAM_TIMEOUT, \
                "status came too late"
            assert counters["queries_tcp"] == PER_SESSION, counters
            assert counters["outstanding"] == PER_SESSION, counters
            assert counters["read_pauses"] >= 1, counters
            # Every query of the burst is still answered (SERVFAIL, as the
            # upstream is dead), each once: none was lost while held.
            ids = []
            for _ in queries:
                reply, _ = dns.query.receive_tcp(
                    c, expiration=time.time() + 10)
                assert reply.rcode() == dns.rcode.SERVFAIL
                ids.append(reply.id)
        assert sorted(ids) == sorted(q.id for q in queries)
    counters = status(berthctl, daemon)
    assert counters["queries_tcp"] == BURST
    assert counters["servfails"] == BURST
    assert counters["outstanding"] == 0


def test_answers_before_a_bad_frame_survive_a_small_window(berthd, berthctl,
                                                           tmp_path):
    """A client with a small receive window pipelines 300 queries that
    berthd answers from its hosts file, then a response (QR=1), which
    closes the session; then it sends more.  When berthd closed the socket
    at once, those late bytes made the kernel abort the connection with an
    RST, which threw away the answers still queued behind the client's
    window: the client read some, then ECONNRESET.  Now berthd shuts its
    side and discards input while output is unacknowledged, and the client
    reads all 300 answers, then EOF."""
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.77 near.example\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind(("127.0.0.1", 0))
        daemon, port = start(berthd, tmp_path,
                             [f"127.0.0.1:{dead.getsockname()[1]}"],
                             f"hosts = {hosts}\n")
    queries = [dns.message.make_query("near.example.", "A")
               for _ in range(300)]
    response = dns.message.make_response(queries[0]).to_wire()
    wire = b"".join(len(w).to_bytes(2, "big") + w
                    for w in [q.to_wire() for q in queries] + [response])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(("127.0.0.1", port))
        c.sendall(wire)
        time.sleep(0.3)  # berthd answers, meets the response, closes
        c.sendall(b"\x00\x20" + b"x" * 32)  # the client is still sending
        time.sleep(0.2)
        c.settimeout(5)
        for _ in queries:
            reply, _ = dns.query.receive_tcp(c, expiration=time.time() + 5)
            assert reply.answer[0][0].to_text() == "192.0.2.77"
        assert c.recv(1) == b""  # EOF, not ECONNRESET
    counters = status(berthctl, daemon)
    assert counters["local_answers"] == len(queries)
    assert counters["responses_on_listen"] == 1
