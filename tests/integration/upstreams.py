"""Real upstream servers on loopback: an Unbound DNS server and an MIT KDC.

berth's DNS forwarder and Kerberos front end relay to real servers, so their
integration tests need real servers to relay to.  The fixtures here build
them from scratch under the test's ``tmp_path`` and bind them to loopback
only:

* ``unbound_upstream`` -- a factory starting ``/usr/sbin/unbound`` that
  answers a fixed set of local records under ``test.`` and refuses every
  other name without ever sending a query anywhere.
* ``krb5_realm`` -- a fresh MIT Kerberos realm (database, principal, KDC)
  with helpers to write client krb5.conf files and run kinit/klist.

conftest.py imports both fixtures, so any test can ask for them.  Every
server they start is stopped at teardown; a server that died before then,
or that had to be killed, fails the test with its log.  See README.md.
"""

import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# How long a server gets to answer its first real request, and to exit after
# SIGTERM.  Poll intervals are short; every loop is bounded by both a
# deadline and a count.
UPSTREAM_READY_TIMEOUT = 10.0
UPSTREAM_STOP_TIMEOUT = 5.0
POLL_INTERVAL = 0.05
MAX_POLLS = int(UPSTREAM_READY_TIMEOUT / POLL_INTERVAL) + 1
# How long one run of a client tool (kinit, klist, kdb5_util, ...) may take.
TOOL_TIMEOUT = 10.0

UNBOUND = "/usr/sbin/unbound"
KRB5KDC = "/usr/sbin/krb5kdc"
KDB5_UTIL = "/usr/sbin/kdb5_util"
KADMIN_LOCAL = "/usr/sbin/kadmin.local"
KINIT = "/usr/bin/kinit"
KLIST = "/usr/bin/klist"
KVNO = "/usr/bin/kvno"

# The Debian package providing each program, for the failure message.
PACKAGE_OF = {
    "unbound": "unbound",
    "krb5kdc": "krb5-kdc",
    "kdb5_util": "krb5-kdc",
    "kadmin.local": "krb5-admin-server",
    "kinit": "krb5-user",
    "klist": "krb5-user",
    "dig": "bind9-dnsutils (dnsutils)",
    "kdig": "knot-dnsutils",
}


def require(*programs):
    """Fail the test, naming the Debian package, when a program is missing.

    A missing server must never turn into a skipped (and so silently
    untested) scenario.
    """
    missing = [p for p in programs if not os.access(p, os.X_OK)]
    if missing:
        lines = [f"{p} not found: install the Debian package "
                 f"{PACKAGE_OF.get(Path(p).name, '?')}" for p in missing]
        pytest.fail("\n".join(lines), pytrace=False)


def require_dnspython():
    """Import and return the ``dns`` package, failing clearly without it."""
    try:
        import dns.message  # noqa: F401
        import dns.query  # noqa: F401
        import dns.rcode  # noqa: F401
        import dns.flags  # noqa: F401
        import dns.exception  # noqa: F401
    except ImportError as e:
        pytest.fail(f"dnspython is missing ({e}): install the Debian package "
                    f"python3-dnspython", pytrace=False)
    import dns
    return dns


def ipv6_loopback_available():
    """True when a socket can be bound to ::1 on this machine."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _bindable(host, port, kind):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_on(hosts):
    """A port free for both UDP and TCP on every address in hosts.

    Like conftest's free_port, but for several addresses at once (Unbound
    uses one port on 127.0.0.1 and ::1).  The port is released before
    returning, so it is free "right now" only.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            others = [(h, k) for h in hosts
                      for k in (socket.SOCK_DGRAM, socket.SOCK_STREAM)
                      if (h, k) != (hosts[0], socket.SOCK_DGRAM)]
            if all(_bindable(h, port, k) for h, k in others):
                return port
    raise RuntimeError(f"no port free for UDP and TCP on {hosts} "
                       f"after 100 tries")


def _port_held(host, port, kind):
    """True when binding host:port fails because something holds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


class Server:
    """One server process started by a fixture here.

    ``log()`` returns everything it logged so far (its stderr plus any log
    files named at start), which is what failure messages show.
    """

    def __init__(self, name, proc, logs):
        self.name = name
        self.proc = proc
        self.logs = list(logs)
        self.stopped = False
        self.killed = False

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        parts = []
        for path in self.logs:
            try:
                text = Path(path).read_text(errors="replace")
            except FileNotFoundError:
                text = "(not written)\n"
            parts.append(f"--- {path} ---\n{text}")
        return "".join(parts)

    def stop(self, timeout=UPSTREAM_STOP_TIMEOUT):
        """SIGTERM, wait, SIGKILL when it does not exit in time.

        Returns (exit status as Popen reports it, whether it had to be
        killed).  Calling it again returns the same status.  A server
        stopped this way is not checked again at teardown.
        """
        if not self.stopped:
            self.stopped = True
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.killed = True
                    self.proc.kill()
                    self.proc.wait()
        return self.proc.returncode, self.killed


def _spawn(name, argv, stderr_path, env=None, logs=()):
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([str(a) for a in argv],
                                stdin=subprocess.DEVNULL,
                                stdout=err, stderr=err, env=env)
    return Server(name, proc, [stderr_path, *logs])


def _wait_ready(server, ready, detail=lambda: "",
                timeout=UPSTREAM_READY_TIMEOUT):
    """Poll ready() until true; fail with the server's log otherwise.

    ready() returning False or raising OSError both mean "not yet"; detail()
    adds what the last probe saw to the failure message.  Bounded by a
    deadline and a count.  However it fails, the server is stopped first,
    so a half-started server never outlives the test.
    """
    deadline = time.monotonic() + timeout
    last = None
    try:
        for _ in range(MAX_POLLS):
            if not server.alive():
                server.stopped = True  # reported here, not at teardown
                pytest.fail(f"{server.name} exited with status "
                            f"{server.proc.returncode} before it was ready; "
                            f"log:\n{server.log()}", pytrace=False)
            try:
                if ready():
                    return
            except OSError as e:
                last = e
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
        pytest.fail(f"{server.name} was not ready after {timeout}s (last "
                    f"error: {last!r}) {detail()}\nlog:\n{server.log()}",
                    pytrace=False)
    except BaseException:
        server.stop()
        raise


def _finish(servers):
    """Teardown: stop every server, fail if one died early or hung."""
    problems = []
    for server in servers:
        if server.stopped:
            continue
        if not server.alive():
            problems.append(f"{server.name} pid {server.pid} died during the "
                            f"test with status {server.proc.returncode}")
        else:
            status, killed = server.stop()
            if killed:
                problems.append(f"{server.name} pid {server.pid} ignored "
                                f"SIGTERM for {UPSTREAM_STOP_TIMEOUT}s and "
                                f"was killed")
            elif status != 0:
                problems.append(f"{server.name} pid {server.pid} exited with "
                                f"status {status} after SIGTERM")
            else:
                continue
        problems[-1] += f"; its log:\n{server.log()}"
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# ---------------------------------------------------------------- Unbound --

@dataclass(frozen=True)
class Record:
    """One local record Unbound serves.

    name is absolute ("host.test."), rtype the type mnemonic ("A"), rdata
    the presentation form exactly as ``dig +short`` and dnspython's
    ``to_text()`` print it (TXT with its double quotes, MX as
    "10 mail.test.").
    """
    name: str
    rtype: str
    rdata: str
    ttl: int = 300

    def local_data(self):
        """The record as an unbound.conf ``local-data:`` line."""
        if "'" in self.rdata:
            raise ValueError(f"{self}: single quotes cannot be configured")
        return (f"    local-data: '{self.name} {self.ttl} IN {self.rtype} "
                f"{self.rdata}'\n")


# The name whose answer cannot fit a 512-byte (no EDNS) or 1232-byte (EDNS)
# UDP response: 8 TXT records of one 200-byte string each, about 1.7 kB.
BIG_NAME = "big.test."
BIG_TXT_COUNT = 8
BIG_TXT_LEN = 200

DEFAULT_RECORDS = (
    Record("host.test.", "A", "192.0.2.10"),
    Record("host.test.", "AAAA", "2001:db8::10"),
    Record("host.test.", "MX", "10 mail.test."),
    Record("host.test.", "TXT", '"berth upstream"'),
    Record("mail.test.", "A", "192.0.2.25"),
    Record("10.2.0.192.in-addr.arpa.", "PTR", "host.test."),
    *(Record(BIG_NAME, "TXT",
             '"' + f"big-{i:02d}-".ljust(BIG_TXT_LEN, "x") + '"')
      for i in range(BIG_TXT_COUNT)),
)

# Zones Unbound answers authoritatively from local data (NXDOMAIN for names
# without data).  Everything outside them is refused.
LOCAL_ZONES = ("test.", "2.0.192.in-addr.arpa.",
               "8.b.d.0.1.0.0.2.ip6.arpa.")


def _unbound_conf(workdir, hosts, port, trap_port, records):
    """The unbound.conf text.

    Unbound must answer from local data only and never reach the internet.
    Three layers see to that: ``local-zone: "." refuse`` answers every name
    outside LOCAL_ZONES with REFUSED before any resolver module runs; the
    only module is the iterator (no validator, so no trust anchor fetches);
    and should a query still escape, ``.`` is forwarded to a trap socket on
    loopback that the fixture holds and counts (``leaked()``), instead of
    the root servers.
    """
    lines = [
        "server:\n",
        "    verbosity: 1\n",
        "    num-threads: 1\n",
        *(f"    interface: {h}\n" for h in hosts),
        f"    port: {port}\n",
        "    do-ip4: yes\n",
        f"    do-ip6: {'yes' if '::1' in hosts else 'no'}\n",
        "    do-udp: yes\n",
        "    do-tcp: yes\n",
        "    access-control: 0.0.0.0/0 refuse\n",
        "    access-control: ::/0 refuse\n",
        "    access-control: 127.0.0.0/8 allow\n",
        "    access-control: ::1/128 allow\n",
        # Tests run as root in CI: no privilege drop, no chroot.
        '    username: ""\n',
        '    chroot: ""\n',
        f'    directory: "{workdir}"\n',
        f'    pidfile: "{workdir}/unbound.pid"\n',
        "    do-daemonize: no\n",
        "    use-syslog: no\n",
        '    logfile: ""\n',
        "    log-queries: yes\n",
        "    log-replies: yes\n",
        '    module-config: "iterator"\n',
        "    do-not-query-localhost: no\n",
        "    prefetch: no\n",
        "    edns-buffer-size: 1232\n",
        "    max-udp-size: 1232\n",
        "    statistics-interval: 0\n",
        '    local-zone: "." refuse\n',
        *(f'    local-zone: "{z}" static\n' for z in LOCAL_ZONES),
        *(r.local_data() for r in records),
        "remote-control:\n",
        "    control-enable: no\n",
        "forward-zone:\n",
        '    name: "."\n',
        f"    forward-addr: 127.0.0.1@{trap_port}\n",
    ]
    return "".join(lines)


def _trap_sockets():
    """A UDP and a listening TCP socket on one 127.0.0.1 port, non-blocking."""
    for _ in range(100):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind(("127.0.0.1", 0))
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            tcp.listen(16)
        except OSError:
            udp.close()
            tcp.close()
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise RuntimeError("no port free for UDP and TCP on 127.0.0.1 for the "
                       "trap after 100 tries")


class UnboundUpstream:
    """A running Unbound serving ``records``; see the fixture.

    host is "127.0.0.1"; hosts lists every address it listens on ("::1"
    too when IPv6 is on); port is the same for UDP and TCP on all of them.
    """

    def __init__(self, server, hosts, port, records, conf, trap):
        self.server = server
        self.hosts = hosts
        self.host = hosts[0]
        self.port = port
        self.records = tuple(records)
        self.conf = conf
        self._trap_udp, self._trap_tcp = trap
        self._leaked = 0

    @property
    def pid(self):
        return self.server.pid

    def alive(self):
        return self.server.alive()

    def log(self):
        """Everything Unbound logged so far (queries and replies included)."""
        return self.server.log()

    def stop(self, timeout=UPSTREAM_STOP_TIMEOUT):
        """Stop it now; returns (returncode, killed).  See Server.stop."""
        return self.server.stop(timeout)

    def answers(self, name, rtype):
        """The rdata strings of the records for name/rtype, sorted."""
        return sorted(r.rdata for r in self.records
                      if r.name == name and r.rtype == rtype)

    def query(self, name, rtype, *, tcp=False, host=None, edns=True,
              payload=1232, timeout=2.0):
        """Ask this server one question with dnspython; returns the Message.

        edns=False sends a plain RFC 1035 query (512-byte UDP limit);
        no answer within timeout raises dns.exception.Timeout.
        """
        dns = require_dnspython()
        q = dns.message.make_query(name, rtype, use_edns=0 if edns else False,
                                   payload=payload)
        where = host or self.host
        if tcp:
            return dns.query.tcp(q, where, port=self.port, timeout=timeout)
        return dns.query.udp(q, where, port=self.port, timeout=timeout,
                             ignore_trailing=True)

    def leaked(self):
        """How many queries reached the trap behind the "." forward so far.

        Anything above 0 means Unbound tried to resolve a name outside its
        local data, i.e. it would have gone to the internet.
        """
        for _ in range(1000):
            try:
                self._trap_udp.recvfrom(65535)
            except BlockingIOError:
                break
            self._leaked += 1
        for _ in range(1000):
            try:
                conn, _ = self._trap_tcp.accept()
            except BlockingIOError:
                break
            conn.close()
            self._leaked += 1
        return self._leaked


@pytest.fixture
def unbound_upstream(tmp_path):
    """A factory starting Unbound on loopback with local records only.

    ``start(records=DEFAULT_RECORDS, ipv6=None)`` writes an unbound.conf
    under tmp_path/unbound-N, runs ``unbound -d -c CONF`` on a free port
    (UDP and TCP; 127.0.0.1, plus ::1 when ipv6 is None and IPv6 works, or
    when ipv6 is True, which fails without it) and returns an
    UnboundUpstream once a real DNS query over UDP and TCP on every address
    has been answered.  Records are served from the zones in LOCAL_ZONES;
    other names get REFUSED and nothing is ever queried upstream.
    """
    require(UNBOUND)
    require_dnspython()
    servers = []
    traps = []

    def start(records=DEFAULT_RECORDS, ipv6=None):
        records = tuple(records)
        n = len(servers)
        workdir = tmp_path / f"unbound-{n}"
        workdir.mkdir()
        if ipv6 is None:
            ipv6 = ipv6_loopback_available()
        elif ipv6 and not ipv6_loopback_available():
            pytest.fail("ipv6=True but ::1 cannot be bound here",
                        pytrace=False)
        hosts = ["127.0.0.1", "::1"] if ipv6 else ["127.0.0.1"]
        # The trap is bound first so that Unbound's port cannot be its port.
        trap_udp, trap_tcp = _trap_sockets()
        traps.extend((trap_udp, trap_tcp))
        trap_port = trap_udp.getsockname()[1]
        port = free_port_on(hosts)

        conf = workdir / "unbound.conf"
        conf.write_text(_unbound_conf(workdir, hosts, port, trap_port,
                                      records))
        server = _spawn(f"unbound ({conf})", [UNBOUND, "-d", "-c", conf],
                        workdir / "unbound.log")
        servers.append(server)
        up = UnboundUpstream(server, hosts, port, records, conf,
                             (trap_udp, trap_tcp))
        # Ready means answering from our data: the first record, or with no
        # records an NXDOMAIN from the static test. zone.
        probe = records[0] if records else Record("ready-probe.test.", "A",
                                                  "")

        def ready():
            dns = require_dnspython()
            for host in hosts:
                for tcp in (False, True):
                    try:
                        reply = up.query(probe.name, probe.rtype, tcp=tcp,
                                         host=host, timeout=0.5)
                    except dns.exception.DNSException:
                        return False
                    if records and not reply.answer:
                        return False
                    if not records and reply.rcode() != dns.rcode.NXDOMAIN:
                        return False
            return True

        _wait_ready(server, ready)
        return up

    yield start
    try:
        _finish(servers)
    finally:
        for trap in traps:
            trap.close()


# ------------------------------------------------------------------ MIT KDC --

def _kdc_host(host, port):
    """host:port as krb5.conf wants it (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Krb5Realm:
    """A fresh MIT Kerberos realm with a running KDC; see the fixture.

    realm, host, port: where the KDC listens (UDP and TCP, same port).
    principal, password: a user principal that exists in the realm.
    conf: the krb5.conf the KDC and admin tools use (points at the KDC).
    """

    def __init__(self, workdir, realm, host, port, env):
        self.workdir = workdir
        self.realm = realm
        self.host = host
        self.port = port
        self.principal = f"user@{realm}"
        self.password = "pw-" + secrets.token_hex(8)
        self.master_password = "master-" + secrets.token_hex(8)
        self.conf = workdir / "krb5.conf"
        self.kdc_conf = workdir / "kdc.conf"
        self.kdc_log = workdir / "krb5kdc.log"
        self.env = env
        self.server = None
        self._clients = 0

    @property
    def pid(self):
        return self.server.pid

    def alive(self):
        return self.server.alive()

    def log(self):
        """The KDC's stderr and log file (one AS_REQ line per request)."""
        return self.server.log()

    def stop(self, timeout=UPSTREAM_STOP_TIMEOUT):
        """Stop the KDC now; returns (returncode, killed)."""
        return self.server.stop(timeout)

    def _admin(self, argv):
        try:
            r = subprocess.run([str(a) for a in argv], env=self.env,
                               capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=TOOL_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(map(str, argv))} did not finish in "
                        f"{TOOL_TIMEOUT}s", pytrace=False)
        if r.returncode != 0:
            pytest.fail(f"{' '.join(map(str, argv))} failed with status "
                        f"{r.returncode}:\n{r.stdout}{r.stderr}",
                        pytrace=False)
        return r

    def addprinc(self, principal, password):
        """Create principal (name@REALM) with password; fails on error."""
        # kadmin.local treats the query as one command line: a password with
        # quotes or spaces would be split, so keep them out.
        if any(c in principal + password for c in " \"'\\"):
            raise ValueError("principal and password must not contain "
                             "spaces, quotes or backslashes")
        self._admin([KADMIN_LOCAL, "-r", self.realm, "-q",
                     f"addprinc -pw {password} {principal}"])

    def client_conf(self, host=None, port=None, *, udp_preference_limit=None,
                    kdcs=None, name=None):
        """Write a client krb5.conf for this realm; returns its Path.

        The realm's kdc is host:port (default: the real KDC), or each of
        kdcs, a list of (host, port), in order; point it at berthd to send
        kinit through the front end.  udp_preference_limit=1 makes the
        client use TCP for every request; None leaves the library default
        (UDP first for small requests).  DNS lookups of KDCs and realms are
        off, so the client talks to exactly the listed addresses.
        """
        if kdcs is None:
            kdcs = [(host or self.host, port or self.port)]
        elif host is not None or port is not None:
            raise ValueError("give host/port or kdcs, not both")
        self._clients += 1
        path = self.workdir / (name or f"client-{self._clients}.conf")
        libdefaults = [
            f"    default_realm = {self.realm}\n",
            "    dns_lookup_kdc = false\n",
            "    dns_lookup_realm = false\n",
            "    dns_canonicalize_hostname = false\n",
            "    rdns = false\n",
        ]
        if udp_preference_limit is not None:
            libdefaults.append(
                f"    udp_preference_limit = {int(udp_preference_limit)}\n")
        path.write_text(
            "[libdefaults]\n" + "".join(libdefaults) +
            "[realms]\n"
            f"    {self.realm} = {{\n" +
            "".join(f"        kdc = {_kdc_host(h, p)}\n" for h, p in kdcs) +
            "    }\n")
        return path

    def _client_env(self, conf_path, trace):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("KRB5")}
        env["KRB5_CONFIG"] = str(conf_path)
        if trace:
            env["KRB5_TRACE"] = "/dev/stderr"
        return env

    def _client(self, argv, conf_path, timeout, trace, stdin_text):
        try:
            return subprocess.run([str(a) for a in argv], input=stdin_text,
                                  capture_output=True, text=True,
                                  env=self._client_env(conf_path, trace),
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(map(str, argv))} did not finish in "
                        f"{timeout}s; KDC log:\n{self.log()}", pytrace=False)

    def kinit(self, conf_path, principal, password, ccache, *,
              timeout=TOOL_TIMEOUT, trace=False):
        """Run kinit for principal with password on stdin; returns the run.

        Uses conf_path as KRB5_CONFIG and stores the ticket in ccache (a
        path or a TYPE:residual name).  Never raises on a non-zero exit;
        a run longer than timeout fails the test.  trace=True adds
        KRB5_TRACE output (which KDC, UDP or TCP) to the run's stderr.
        """
        return self._client([KINIT, "-c", ccache, principal], conf_path,
                            timeout, trace, password + "\n")

    def kvno(self, conf_path, service, ccache, *, timeout=TOOL_TIMEOUT,
             trace=False):
        """Run ``kvno -c CCACHE SERVICE`` (a TGS-REQ with the ticket in
        ccache) with conf_path as KRB5_CONFIG; returns the run."""
        return self._client([KVNO, "-c", ccache, service], conf_path,
                            timeout, trace, "")

    def klist(self, ccache, *, timeout=TOOL_TIMEOUT):
        """Run ``klist -c CCACHE``; returns the CompletedProcess."""
        return self._client([KLIST, "-c", ccache], self.conf, timeout,
                            False, "")


def _server_confs(realm_obj):
    r = realm_obj
    listen = f"{r.host}:{r.port}"
    r.conf.write_text(
        "[libdefaults]\n"
        f"    default_realm = {r.realm}\n"
        "    dns_lookup_kdc = false\n"
        "    dns_lookup_realm = false\n"
        "    rdns = false\n"
        "[realms]\n"
        f"    {r.realm} = {{\n"
        f"        kdc = {listen}\n"
        "    }\n"
        # The KDC's own log is set in kdc.conf only: the KDC reads both
        # files, and naming it twice would log every line twice.
        "[logging]\n"
        f"    admin_server = FILE:{r.workdir}/kadmin.log\n"
        f"    default = FILE:{r.workdir}/krb5lib.log\n")
    # kdc_listen / kdc_tcp_listen (MIT >= 1.15) take an address, so the KDC
    # binds 127.0.0.1 only; plain kdc_ports would bind every address.
    r.kdc_conf.write_text(
        "[kdcdefaults]\n"
        f"    kdc_listen = {listen}\n"
        f"    kdc_tcp_listen = {listen}\n"
        "[realms]\n"
        f"    {r.realm} = {{\n"
        f"        database_name = {r.workdir}/principal\n"
        f"        key_stash_file = {r.workdir}/stash\n"
        f"        acl_file = {r.workdir}/kadm5.acl\n"
        # Require pre-authentication as Active Directory does: an AS
        # exchange takes two round trips (PREAUTH_REQUIRED, then the
        # encrypted timestamp) and a wrong password is refused by the KDC
        # (PREAUTH_FAILED) instead of failing to decrypt on the client.
        "        default_principal_flags = +preauth\n"
        f"        kdc_listen = {listen}\n"
        f"        kdc_tcp_listen = {listen}\n"
        "    }\n"
        "[logging]\n"
        f"    kdc = FILE:{r.kdc_log}\n")


@pytest.fixture
def krb5_realm(tmp_path):
    """A fresh MIT Kerberos realm BERTH.TEST with its KDC on 127.0.0.1.

    Builds krb5.conf, kdc.conf and the database under tmp_path/krb5
    (kdb5_util create -s), adds ``user@BERTH.TEST`` with a random password
    (kadmin.local), starts ``krb5kdc -n`` on a free port for UDP and TCP and
    returns a Krb5Realm once the KDC holds both sockets and has issued a
    ticket to that user.  Fails (never skips) naming the Debian package when
    krb5-kdc, krb5-admin-server or krb5-user is missing.
    """
    require(KRB5KDC, KDB5_UTIL, KADMIN_LOCAL, KINIT, KLIST)
    workdir = tmp_path / "krb5"
    workdir.mkdir()
    host = "127.0.0.1"
    port = free_port_on([host])
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRB5")}
    realm = Krb5Realm(workdir, "BERTH.TEST", host, port, env)
    env["KRB5_CONFIG"] = str(realm.conf)
    env["KRB5_KDC_PROFILE"] = str(realm.kdc_conf)
    _server_confs(realm)
    (workdir / "kadm5.acl").write_text("")
    realm._admin([KDB5_UTIL, "create", "-s", "-P", realm.master_password,
                  "-r", realm.realm])
    realm.addprinc(realm.principal, realm.password)

    servers = []
    realm.server = _spawn(f"krb5kdc ({realm.kdc_conf})",
                          [KRB5KDC, "-n", "-r", realm.realm],
                          workdir / "krb5kdc.stderr", env=env,
                          logs=[realm.kdc_log])
    servers.append(realm.server)
    probes = []

    def ready():
        if not (_port_held(host, port, socket.SOCK_DGRAM) and
                _port_held(host, port, socket.SOCK_STREAM)):
            return False
        # Bound sockets alone could be someone else's: a real AS exchange
        # proves it is our KDC with our database.
        probes.append(realm.kinit(realm.conf, realm.principal,
                                  realm.password,
                                  workdir / f"probe-{len(probes)}.ccache",
                                  timeout=5.0))
        return probes[-1].returncode == 0

    _wait_ready(realm.server, ready,
                detail=lambda: (f"; last probe kinit: {probes[-1].stderr}"
                                if probes else ""))
    yield realm
    _finish(servers)
