"""Smoke tests: the upstream fixtures run real servers real clients can use.

Unbound is asked with dig, kdig and dnspython over UDP and TCP; the KDC
issues tickets to the real kinit over UDP and TCP.  The last tests run an
inner pytest to prove a server that dies or hangs fails the test with its
log.
"""

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import dns.flags
import dns.rcode
import pytest

from upstreams import (BIG_NAME, BIG_TXT_COUNT, require,
                       free_port_on, ipv6_loopback_available)

HERE = Path(__file__).resolve().parent
TOOL_TIMEOUT = 10.0


def run(argv, timeout=TOOL_TIMEOUT):
    """Run a client program; fail the test instead of hanging."""
    argv = [str(a) for a in argv]
    try:
        return subprocess.run(argv, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(argv)} did not finish in {timeout}s")


def dig(tool, up, host, *args):
    """dig or kdig at host:up.port, one try, two seconds per try."""
    require(f"/usr/bin/{tool}")
    return run([f"/usr/bin/{tool}", f"@{host}", "-p", up.port, *args,
                "+time=2", "+retry=0"])


# ------------------------------------------------------------------ Unbound --

def test_listens_on_ipv6_only_when_asked(unbound_upstream):
    both = unbound_upstream()
    assert both.host == "127.0.0.1"
    assert ("::1" in both.hosts) == ipv6_loopback_available()
    for host in both.hosts:
        reply = both.query("host.test.", "AAAA", tcp=True, host=host)
        assert [rd.to_text() for rd in reply.answer[0]] == ["2001:db8::10"]

    v4 = unbound_upstream(ipv6=False)
    assert v4.hosts == ["127.0.0.1"]
    assert "interface: ::1" not in v4.conf.read_text()
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        with pytest.raises(ConnectionRefusedError):
            s.connect(("::1", v4.port))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("tool", ["dig", "kdig"])
def test_a_record_via_cli(unbound_upstream, tool, transport):
    up = unbound_upstream()
    expected = up.answers("host.test.", "A")
    assert expected == ["192.0.2.10"]
    extra = ["+tcp"] if transport == "tcp" else ["+notcp"]
    for host in up.hosts:
        r = dig(tool, up, host, "host.test.", "A", "+short", *extra)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.split() == expected, (host, r.stdout, r.stderr)
    # Each query reached this server (not some other resolver).
    assert up.log().count("host.test. A IN NOERROR") >= 1 + len(up.hosts)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_every_record_matches_the_list(unbound_upstream, tcp):
    up = unbound_upstream()
    questions = sorted({(r.name, r.rtype) for r in up.records
                        if r.name != BIG_NAME})
    assert {t for _, t in questions} >= {"A", "AAAA", "MX", "TXT", "PTR"}
    for name, rtype in questions:
        reply = up.query(name, rtype, tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR, (name, rtype)
        assert reply.flags & dns.flags.AA, (name, rtype)
        got = sorted(rd.to_text() for rrset in reply.answer for rd in rrset)
        assert got == up.answers(name, rtype), (name, rtype)


def test_ptr_via_dig_reverse(unbound_upstream):
    up = unbound_upstream()
    r = dig("dig", up, up.host, "-x", "192.0.2.10", "+short")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["host.test."]


def test_big_name_is_truncated_over_udp_and_whole_over_tcp(unbound_upstream):
    up = unbound_upstream()
    expected = up.answers(BIG_NAME, "TXT")
    assert len(expected) == BIG_TXT_COUNT
    assert sum(len(t) for t in expected) > 1232

    plain = up.query(BIG_NAME, "TXT", edns=False)
    assert plain.flags & dns.flags.TC
    small = up.query(BIG_NAME, "TXT", edns=True, payload=1232)
    assert small.flags & dns.flags.TC

    # dig without EDNS, not retrying over TCP, shows the tc flag itself.
    r = dig("dig", up, up.host, BIG_NAME, "TXT", "+noedns", "+ignore",
            "+notcp")
    assert r.returncode == 0, r.stderr
    flags = [line for line in r.stdout.splitlines()
             if line.startswith(";; flags:")]
    assert len(flags) == 1, r.stdout
    assert " tc" in flags[0].split(";")[2], flags[0]

    whole = up.query(BIG_NAME, "TXT", tcp=True)
    assert not whole.flags & dns.flags.TC
    got = sorted(rd.to_text() for rrset in whole.answer for rd in rrset)
    assert got == expected

    for tool in ("dig", "kdig"):
        r = dig(tool, up, up.host, BIG_NAME, "TXT", "+tcp", "+short")
        assert r.returncode == 0, r.stderr
        assert sorted(r.stdout.splitlines()) == expected, tool


def test_other_names_are_refused_without_recursion(unbound_upstream):
    up = unbound_upstream()
    # Answered within the query's own 2 s timeout (a Timeout exception
    # would fail the test), so the server never waited on an upstream.
    for tcp in (False, True):
        reply = up.query("example.com.", "A", tcp=tcp, timeout=2.0)
        assert reply.rcode() in (dns.rcode.REFUSED, dns.rcode.NXDOMAIN)
        assert not reply.answer
    reply = up.query("www.berth-upstream-probe.org.", "AAAA", timeout=2.0)
    assert reply.rcode() in (dns.rcode.REFUSED, dns.rcode.NXDOMAIN)

    r = dig("kdig", up, up.host, "example.net.", "MX")
    assert "status: REFUSED" in r.stdout or "status: NXDOMAIN" in r.stdout, \
        r.stdout

    missing = up.query("nothing-here.test.", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN

    assert up.leaked() == 0, up.log()
    assert up.stop() == (0, False)
    log = up.log()
    assert "example.com. A IN REFUSED" in log
    # Unbound's own count at shutdown: nothing went to the resolver.
    assert " 0 recursions" in log, log


def test_trap_counts_queries_that_escape(unbound_upstream, tmp_path):
    """leaked() is not vacuous: without the refuse zone, queries reach it."""
    import dns.exception
    import upstreams
    up = unbound_upstream()
    assert up.stop() == (0, False)
    refuse = '    local-zone: "." refuse\n'
    text = up.conf.read_text()
    assert refuse in text
    up.conf.write_text(text.replace(refuse, ""))
    with open(tmp_path / "open.log", "wb") as log:
        proc = subprocess.Popen([upstreams.UNBOUND, "-d", "-c", up.conf],
                                stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log)
    try:
        escaped = 0
        for _ in range(20):
            try:
                up.query("example.com.", "A", timeout=0.5)
            except (dns.exception.Timeout, ConnectionRefusedError):
                pass  # the trap never answers; not started yet
            escaped = up.leaked()
            if escaped:
                break
        assert escaped > 0, (tmp_path / "open.log").read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_two_upstreams_serve_their_own_records(unbound_upstream):
    from upstreams import Record
    first = unbound_upstream()
    second = unbound_upstream(records=(Record("host.test.", "A",
                                              "192.0.2.99"),))
    assert first.port != second.port
    assert [rd.to_text() for rd in
            second.query("host.test.", "A").answer[0]] == ["192.0.2.99"]
    assert [rd.to_text() for rd in
            first.query("host.test.", "A").answer[0]] == ["192.0.2.10"]


# ------------------------------------------------------------------ MIT KDC --

def test_kinit_over_udp(krb5_realm, tmp_path):
    realm = krb5_realm
    conf = realm.client_conf(realm.host, realm.port)
    ccache = tmp_path / "udp.ccache"
    r = realm.kinit(conf, realm.principal, realm.password, ccache,
                    trace=True)
    assert r.returncode == 0, r.stderr
    assert f"UDP request to dgram {realm.host}:{realm.port}" in r.stderr
    assert "TCP request" not in r.stderr
    listed = realm.klist(ccache)
    assert listed.returncode == 0, listed.stderr
    assert f"krbtgt/{realm.realm}@{realm.realm}" in listed.stdout
    assert f"Default principal: {realm.principal}" in listed.stdout
    log = realm.log()
    # Two exchanges: the KDC demands pre-authentication, then issues.
    assert "NEEDED_PREAUTH" in log
    assert "ISSUE: authtime" in log
    assert f"{realm.principal} for krbtgt/{realm.realm}" in log


def test_kinit_over_tcp(krb5_realm, tmp_path):
    realm = krb5_realm
    conf = realm.client_conf(udp_preference_limit=1)
    assert "udp_preference_limit = 1" in conf.read_text()
    ccache = tmp_path / "tcp.ccache"
    r = realm.kinit(conf, realm.principal, realm.password, ccache,
                    trace=True)
    assert r.returncode == 0, r.stderr
    assert f"TCP request to stream {realm.host}:{realm.port}" in r.stderr
    assert "UDP request" not in r.stderr
    listed = realm.klist(ccache)
    assert listed.returncode == 0, listed.stderr
    assert f"krbtgt/{realm.realm}@{realm.realm}" in listed.stdout


def test_wrong_password_fails(krb5_realm, tmp_path):
    realm = krb5_realm
    ccache = tmp_path / "wrong.ccache"
    r = realm.kinit(realm.client_conf(), realm.principal,
                    realm.password + "-wrong", ccache)
    assert r.returncode != 0
    assert "Password incorrect" in r.stderr, r.stderr
    assert realm.klist(ccache).returncode != 0
    assert "PREAUTH_FAILED" in realm.log()


def test_added_principal_gets_a_ticket(krb5_realm, tmp_path):
    realm = krb5_realm
    realm.addprinc(f"second@{realm.realm}", "second-pw")
    ccache = tmp_path / "second.ccache"
    r = realm.kinit(realm.client_conf(), f"second@{realm.realm}",
                    "second-pw", ccache)
    assert r.returncode == 0, r.stderr
    assert f"Default principal: second@{realm.realm}" in \
        realm.klist(ccache).stdout


def test_client_conf_sends_kinit_where_it_says(krb5_realm, tmp_path):
    """Later tests point the conf at berthd; here at a port nobody serves."""
    realm = krb5_realm
    dead = free_port_on([realm.host])
    conf = realm.client_conf(realm.host, dead)
    assert f"kdc = {realm.host}:{dead}" in conf.read_text()
    before = realm.log().count("AS_REQ")
    r = realm.kinit(conf, realm.principal, realm.password,
                    tmp_path / "dead.ccache", trace=True)
    assert r.returncode != 0
    assert f"{realm.host}:{dead}" in r.stderr
    assert f"{realm.host}:{realm.port}" not in r.stderr
    assert realm.log().count("AS_REQ") == before


# ------------------------------------ trouble fails the test, never hides --

INNER_TESTS = {
    "unbound-dies": ("unbound_upstream", "up = unbound_upstream()",
                     "os.kill(up.pid, signal.SIGKILL)",
                     ["unbound (", "died during the test with status -9",
                      "start of service"]),
    "unbound-hangs": ("unbound_upstream", "up = unbound_upstream()",
                      "os.kill(up.pid, signal.SIGSTOP)",
                      ["unbound (", "ignored SIGTERM", "was killed",
                       "start of service"]),
    "krb5kdc-dies": ("krb5_realm", "up = krb5_realm",
                     "os.kill(up.pid, signal.SIGKILL)",
                     ["krb5kdc (", "died during the test with status -9",
                      "commencing operation"]),
}


@pytest.mark.parametrize("case", sorted(INNER_TESTS))
def test_server_trouble_fails_the_test_with_its_log(tmp_path, case):
    fixture, get, trouble, expected = INNER_TESTS[case]
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "conftest.py").write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from upstreams import krb5_realm, unbound_upstream  # noqa: F401
        """))
    (inner / "test_inner.py").write_text(textwrap.dedent(f"""\
        import os
        import signal
        import time

        def test_trouble({fixture}):
            {get}
            {trouble}
            for _ in range(200):
                if open(f"/proc/{{up.pid}}/stat").read().split()[2] in "ZT":
                    break
                time.sleep(0.01)
        """))
    r = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "--rootdir", inner, inner], timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "1 passed, 1 error" in out, out
    for text in expected:
        assert text in out, (text, out)


@pytest.mark.parametrize("program, package, fixture", [
    ("UNBOUND", "unbound", "unbound_upstream"),
    ("KRB5KDC", "krb5-kdc", "krb5_realm"),
    ("KADMIN_LOCAL", "krb5-admin-server", "krb5_realm"),
    ("KINIT", "krb5-user", "krb5_realm"),
])
def test_missing_program_fails_naming_the_package(tmp_path, program,
                                                  package, fixture):
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "conftest.py").write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(HERE)!r})
        import upstreams
        from upstreams import krb5_realm, unbound_upstream  # noqa: F401
        name = upstreams.{program}.split("/")[-1]
        upstreams.{program} = "/nonexistent/" + name
        """))
    (inner / "test_inner.py").write_text(textwrap.dedent(f"""\
        def test_needs_it({fixture}):
            pass
        """))
    r = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "-rA", "--rootdir", inner, inner], timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "1 error" in out and "skipped" not in out, out
    assert f"install the Debian package {package}" in out, out
