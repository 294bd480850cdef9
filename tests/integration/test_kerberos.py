"""The Kerberos front end with real MIT Kerberos on both sides.

berthd runs a `protocol = kerberos` service on a loopback port relaying to the
krb5_realm fixture's KDC.  The real kinit gets a ticket through it over UDP
and over TCP (the KRB5_TRACE output shows where and how each request went);
silent TCP connections are closed at their deadline and never before; a
client on source port 88 or 464 gets nothing while 22528 and 53249 (the
byte-swapped twins an old guard blocked by mistake) get the KDC's answer; a
dead upstream ends in a clean kinit failure with the timeouts counted;
`berthctl sessions` lists an open TCP session; and berth's side of a KDC
connection never ends in TIME_WAIT (a KDC keeping it open gets an RST).
"""
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import port_held

NEW_CONNECTION_TIMEOUT = 1.0
# MIT's client retries for about 27 s before it gives up on a realm.
KINIT_DEAD_TIMEOUT = 60


def berth_config(tmp_path, port, upstream, *, new_connection_timeout="1s",
                 upstream_timeout="500ms"):
    return f"""
[ports]
; below the kernel's ephemeral range, where free_port() picks listen ports
dynamic_range = 20000-29999
; test_guard_by_source_port sends from 22528, so the pool must not hold it
reserved = 22528
avoid_in_use = yes

[pool]
size = 64

[control]
socket = {tmp_path}/berth.sock

[service kdc]
protocol = kerberos
listen = 127.0.0.1:{port}
upstream = {upstream}
new_connection_timeout = {new_connection_timeout}
upstream_timeout = {upstream_timeout}
"""


def start_berth(berthd, tmp_path, free_port, upstream, **kw):
    port = free_port("both")
    daemon = berthd(berth_config(tmp_path, port, upstream, **kw),
                    ready=lambda d: port_held(port, "udp")
                    and port_held(port, "tcp")
                    and (tmp_path / "berth.sock").exists())
    return daemon, port


def status(berthctl, tmp_path):
    out = berthctl("-s", tmp_path / "berth.sock", "status")
    assert out.returncode == 0, out.stderr
    counters = {}
    for line in out.stdout.splitlines():
        m = re.match(r"^\s+(\w+): (\d+)$", line)
        if m:
            counters[m.group(1)] = int(m.group(2))
    return counters


def capture_as_req(realm, tmp_path):
    """The first AS-REQ the real kinit sends, caught on a socket of ours."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as trap:
        trap.bind(("127.0.0.1", 0))
        trap.settimeout(10)
        conf = realm.client_conf("127.0.0.1", trap.getsockname()[1],
                                 name="trap.conf")
        env = dict(os.environ, KRB5_CONFIG=str(conf))
        proc = subprocess.Popen(
            ["/usr/bin/kinit", "-c", str(tmp_path / "trap.cc"), realm.principal],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=env)
        try:
            req, _ = trap.recvfrom(65536)
        finally:
            proc.kill()
            proc.wait()
    assert req[0] == 0x6a  # [APPLICATION 10] AS-REQ
    return req


@pytest.fixture
def relay(krb5_realm, berthd, free_port, tmp_path):
    daemon, port = start_berth(berthd, tmp_path, free_port,
                               f"{krb5_realm.host}:{krb5_realm.port}")
    return krb5_realm, daemon, port


def test_kinit_over_udp(relay, tmp_path, berthctl):
    realm, _, port = relay
    conf = realm.client_conf("127.0.0.1", port)
    r = realm.kinit(conf, realm.principal, realm.password, tmp_path / "cc",
                    trace=True)
    assert r.returncode == 0, r.stderr
    assert f"UDP request to dgram 127.0.0.1:{port}" in r.stderr
    assert "TCP request" not in r.stderr
    assert f"krbtgt/{realm.realm}@{realm.realm}" in realm.klist(tmp_path / "cc").stdout
    st = status(berthctl, tmp_path)
    assert st["requests_udp"] >= 2  # NEEDED_PREAUTH, then ISSUE
    assert st["replies"] >= 2
    assert st["outstanding"] == 0


def test_kvno_tgs_req_over_udp(relay, tmp_path, berthctl):
    """A TGS-REQ from MIT's kvno passes the relay's request check and gets a
    service ticket, over UDP."""
    realm, _, port = relay
    service = f"host/svc.berth.test@{realm.realm}"
    realm.addprinc(service, "svc-secret-1")
    conf = realm.client_conf("127.0.0.1", port)
    cc = tmp_path / "cc"
    r = realm.kinit(conf, realm.principal, realm.password, cc)
    assert r.returncode == 0, r.stderr
    r = realm.kvno(conf, service, cc, trace=True)
    assert r.returncode == 0, r.stderr
    assert f"UDP request to dgram 127.0.0.1:{port}" in r.stderr
    assert service in realm.klist(cc).stdout
    st = status(berthctl, tmp_path)
    assert st["malformed"] == 0
    assert st["requests_udp"] >= 3  # AS-REQ twice, then the TGS-REQ
    assert st["outstanding"] == 0


def test_kinit_over_tcp(relay, tmp_path, berthctl):
    realm, _, port = relay
    conf = realm.client_conf("127.0.0.1", port, udp_preference_limit=1)
    r = realm.kinit(conf, realm.principal, realm.password, tmp_path / "cc",
                    trace=True)
    assert r.returncode == 0, r.stderr
    assert f"TCP request to stream 127.0.0.1:{port}" in r.stderr
    assert "UDP request" not in r.stderr
    assert f"krbtgt/{realm.realm}@{realm.realm}" in realm.klist(tmp_path / "cc").stdout
    st = status(berthctl, tmp_path)
    assert st["requests_tcp"] >= 2
    assert st["requests_udp"] == 0


def test_silent_connection_closed_at_deadline_never_early(relay):
    _, _, port = relay
    # The deadline runs from accept, which comes after connect() begins;
    # the loop's clock has 1 ms resolution, hence the 2 ms allowance.
    opened = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as c:
        time.sleep(0.8)
        c.setblocking(False)
        with pytest.raises(BlockingIOError):
            c.recv(1)  # still open: no EOF, nothing to read
        c.setblocking(True)
        c.settimeout(3.0 - (time.monotonic() - opened))
        assert c.recv(1) == b""  # EOF: berth closed it
        assert time.monotonic() - opened >= NEW_CONNECTION_TIMEOUT - 0.002


@pytest.mark.parametrize("source_port,served", [(88, False), (464, False),
                                                (22528, True), (53249, True)])
def test_guard_by_source_port(relay, tmp_path, berthctl, source_port, served):
    realm, _, port = relay
    req = capture_as_req(realm, tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.bind(("127.0.0.1", source_port))
        c.settimeout(2.0)
        c.sendto(req, ("127.0.0.1", port))
        if served:
            reply, _ = c.recvfrom(65536)
            # The KDC's answer: KRB-ERROR, KDC_ERR_PREAUTH_REQUIRED (25).
            assert reply[0] == 0x7e
            assert b"\xa6\x03\x02\x01\x19" in reply
        else:
            with pytest.raises(socket.timeout):
                c.recvfrom(65536)
    st = status(berthctl, tmp_path)
    assert st["guard_drops"] == (0 if served else 1)
    if served:
        assert st["requests_udp"] >= 1, st


def der_at(msg, i):
    """(tag, value offset, value length) of the DER element at msg[i]."""
    tag, length, j = msg[i], msg[i + 1], i + 2
    if length & 0x80:
        n = length & 0x7f
        length, j = int.from_bytes(msg[j:j + n], "big"), j + n
    assert j + length <= len(msg), (i, msg.hex())
    return tag, j, length


def error_code(msg):
    """The error-code of a KRB-ERROR, read independently of berth's parser
    by walking the fields of its SEQUENCE to [6].  (Searching for the first
    0xa6 octet instead found it inside stime's microseconds about one run
    in a hundred.)"""
    assert msg[0] == 0x7e, msg[:4].hex()
    _, seq, _ = der_at(msg, 0)
    tag, i, length = der_at(msg, seq)
    assert tag == 0x30, msg.hex()
    end = i + length
    while i < end:
        tag, value, vlen = der_at(msg, i)
        if tag == 0xa6:
            itag, iv, ilen = der_at(msg, value)
            assert itag == 0x02, msg.hex()
            return int.from_bytes(msg[iv:iv + ilen], "big", signed=True)
        i = value + vlen
    raise AssertionError(f"no error-code in {msg.hex()}")


def test_dead_upstream_fails_cleanly(krb5_realm, berthd, free_port, tmp_path,
                                     berthctl):
    realm = krb5_realm
    req = capture_as_req(realm, tmp_path)
    dead = free_port("both")
    _, port = start_berth(berthd, tmp_path, free_port, f"127.0.0.1:{dead}")

    # UDP: nothing answers; after upstream_timeout (500 ms) the client gets
    # KDC_ERR_SVC_UNAVAILABLE naming the realm of its request.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(5)
        sent = time.monotonic()
        c.sendto(req, ("127.0.0.1", port))
        reply, _ = c.recvfrom(65536)
        assert time.monotonic() - sent >= 0.5 - 0.002  # 1 ms clock
    assert error_code(reply) == 29
    assert realm.realm.encode() in reply
    st = status(berthctl, tmp_path)
    assert st["upstream_timeouts"] == 1
    assert st["errors_sent"] == 1

    # TCP: the dead upstream refuses the connection: the error comes at once.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(len(req).to_bytes(4, "big") + req)
        head = c.recv(4, socket.MSG_WAITALL)
        body = c.recv(int.from_bytes(head, "big"), socket.MSG_WAITALL)
    assert error_code(body) == 29
    st = status(berthctl, tmp_path)
    assert st["upstream_failures"] >= 1
    assert st["errors_sent"] == 2
    assert st["outstanding"] == 0

    # MIT's kinit takes SVC_UNAVAILABLE as "this KDC cannot serve now", runs
    # its own retry schedule, and fails cleanly.
    conf = realm.client_conf("127.0.0.1", port)
    r = realm.kinit(conf, realm.principal, realm.password, tmp_path / "cc",
                    timeout=KINIT_DEAD_TIMEOUT)
    assert r.returncode != 0
    assert ("A service is not available" in r.stderr
            or "Cannot contact any KDC" in r.stderr), r.stderr


def test_failover_to_second_upstream(krb5_realm, berthd, free_port, tmp_path,
                                     berthctl):
    realm = krb5_realm
    dead = free_port("both")
    _, port = start_berth(berthd, tmp_path, free_port,
                          f"127.0.0.1:{dead}, {realm.host}:{realm.port}")
    conf = realm.client_conf("127.0.0.1", port)
    r = realm.kinit(conf, realm.principal, realm.password, tmp_path / "cc")
    assert r.returncode == 0, r.stderr
    st = status(berthctl, tmp_path)
    assert st["failovers"] >= 1
    assert st["upstream_timeouts"] >= 1


def test_sessions_lists_open_tcp_session(krb5_realm, berthd, free_port,
                                         tmp_path, berthctl):
    _, port = start_berth(berthd, tmp_path, free_port,
                          f"{krb5_realm.host}:{krb5_realm.port}",
                          new_connection_timeout="30s")
    with socket.create_connection(("127.0.0.1", port)) as c:
        peer = f"127.0.0.1:{c.getsockname()[1]}"
        # berthd accepts on its next loop iteration: poll, bounded.
        for _ in range(50):
            out = berthctl("-s", tmp_path / "berth.sock", "sessions")
            assert out.returncode == 0, out.stderr
            lines = [l.split() for l in out.stdout.splitlines() if peer in l]
            if lines:
                break
            time.sleep(0.02)
        assert len(lines) == 1, out.stdout
        service, got_peer, state, age, deadline = lines[0]
        assert (service, got_peer, state) == ("kdc", peer, "new")
        assert 0 < int(deadline) <= 30000
        assert int(age) + int(deadline) <= 30000 + 5  # one deadline, from accept


def test_listen_failure_names_file_and_line(berthd, free_port, tmp_path):
    """A kerberos service that cannot bind is reported with the config's
    file and line, as berthd(8) says (and as a dns service is)."""
    port = free_port("both")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        text = berth_config(tmp_path, port, "127.0.0.1:88")
        daemon = berthd(text, ready=lambda d: "not started" in d.stderr())
        line = text.splitlines().index(f"listen = 127.0.0.1:{port}") + 1
        assert f"{daemon.config}:{line}: [service kdc] listen: " \
               in daemon.stderr(), daemon.stderr()


def read_frames(c, want, timeout=5.0):
    """Up to `want` framed messages from c, then whether EOF followed."""
    c.settimeout(timeout)
    frames = []
    buf = b""
    eof = False
    while True:
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
            n = int.from_bytes(buf[:4], "big")
            frames.append(buf[4:4 + n])
            buf = buf[4 + n:]
        if eof or len(frames) > want:
            return frames, eof
        data = c.recv(65536)
        if not data:
            eof = True
        buf += data


@pytest.mark.parametrize("prefix", [b"\x80\x00\x00\x10", (100000).to_bytes(4, "big")])
def test_bad_tcp_length_gets_field_toolong(relay, tmp_path, berthctl, prefix):
    """RFC 4120 7.2.2: a length with the reserved high bit set (or more than
    berth takes) gets KRB_ERR_FIELD_TOOLONG, then the close."""
    _, _, port = relay
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(prefix + b"\x6a" * 16)
        frames, eof = read_frames(c, 1)
    assert len(frames) == 1 and eof, (frames, eof)
    assert error_code(frames[0]) == 61
    st = status(berthctl, tmp_path)
    assert st["errors_sent"] == 1


def test_pipelined_requests_all_answered_up_to_the_queue(relay, tmp_path,
                                                         berthctl):
    """Nine pipelined AS-REQs (one in flight, eight waiting) are all
    answered; a tenth is one too many: the nine are still answered, then the
    session closes."""
    realm, _, port = relay
    req = capture_as_req(realm, tmp_path)
    framed = len(req).to_bytes(4, "big") + req
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(framed * 9)
        frames, eof = read_frames(c, 8)
    assert len(frames) == 9, len(frames)
    assert all(error_code(f) == 25 for f in frames)  # PREAUTH_REQUIRED
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(framed * 10)
        frames, eof = read_frames(c, 9)
    assert len(frames) == 9 and eof, (len(frames), eof)
    assert all(error_code(f) == 25 for f in frames)
    st = status(berthctl, tmp_path)
    assert st["dropped"] == 1
    assert st["outstanding"] == 0


def berth_time_waits(kdc_port):
    """TIME_WAIT entries berth's side holds towards kdc_port: local ports in
    the relay's plan (berth_config's dynamic_range)."""
    out = subprocess.run(["ss", "-Htan", "state", "time-wait"],
                         capture_output=True, text=True, check=True).stdout
    held = []
    for line in out.splitlines():
        local, peer = line.split()[-2:]
        lport = int(local.rsplit(":", 1)[1])
        if peer.endswith(f":{kdc_port}") and 20000 <= lport <= 29999:
            held.append(line)
    return held


def test_kdc_connections_leave_berth_no_time_wait(relay, tmp_path):
    """MIT's KDC closes after its reply; whichever FIN comes first, berth's
    side of a KDC connection never ends in TIME_WAIT, which would hold the
    (pool port, KDC) pair for a minute."""
    realm, _, port = relay
    conf = realm.client_conf("127.0.0.1", port, udp_preference_limit=1)
    for _ in range(10):
        r = realm.kinit(conf, realm.principal, realm.password, tmp_path / "cc")
        assert r.returncode == 0, r.stderr
    assert berth_time_waits(realm.port) == []


def test_kdc_keeping_the_connection_gets_an_abort(krb5_realm, berthd,
                                                  free_port, tmp_path):
    """A KDC that keeps its connection open after the reply: berth relays
    the reply, then aborts the connection (RST) instead of closing first,
    so neither side keeps a TIME_WAIT entry."""
    realm = krb5_realm
    req = capture_as_req(realm, tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.sendto(req, (realm.host, realm.port))
        answer, _ = u.recvfrom(65536)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as kdc:
        kdc.bind(("127.0.0.1", 0))
        kdc.listen()
        kdc.settimeout(5)
        kdc_port = kdc.getsockname()[1]
        _, port = start_berth(berthd, tmp_path, free_port,
                              f"127.0.0.1:{kdc_port}")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(len(req).to_bytes(4, "big") + req)
            conn, _ = kdc.accept()
            with conn:
                conn.settimeout(5)
                head = conn.recv(4, socket.MSG_WAITALL)
                assert conn.recv(int.from_bytes(head, "big"),
                                 socket.MSG_WAITALL) == req
                conn.sendall(len(answer).to_bytes(4, "big") + answer)
                frames, _ = read_frames(c, 0)
                assert frames == [answer]
                with pytest.raises(ConnectionResetError):
                    conn.recv(1)
    assert berth_time_waits(kdc_port) == []


def test_garbage_requests_hold_no_pool_socket(krb5_realm, berthd, free_port,
                                              tmp_path, berthctl):
    """Datagrams with only an AS-REQ's first octets: the KDC never answers
    them, so relayed, each held a (pool socket, KDC) pair for
    upstream_timeout and then the late-reply guard (10 s).  200 of them took
    every pair of the 64-socket pool and real clients got
    KDC_ERR_SVC_UNAVAILABLE.  Now they are dropped on arrival, counted as
    malformed, and real requests right after get the KDC's own answers."""
    realm = krb5_realm
    req = capture_as_req(realm, tmp_path)
    _, port = start_berth(berthd, tmp_path, free_port,
                          f"{realm.host}:{realm.port}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        for _ in range(200):
            flood.sendto(bytes.fromhex("6a03300100"), ("127.0.0.1", port))
            time.sleep(0.002)
    deadline = time.monotonic() + 5
    while status(berthctl, tmp_path)["malformed"] < 200 and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert status(berthctl, tmp_path)["malformed"] == 200
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(5)
        for _ in range(10):
            c.sendto(req, ("127.0.0.1", port))
            reply, _ = c.recvfrom(65536)
            # The KDC's answer to a real AS-REQ: a reply or its own error
            # (preauth required), never berth's SVC_UNAVAILABLE (29).
            assert reply[0] != 0x7e or error_code(reply) != 29
    st = status(berthctl, tmp_path)
    assert st["upstream_timeouts"] == 0
    assert st["pool_busy"] == 0
