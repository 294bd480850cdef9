"""berthd on its built-in default config, as `scripts/run` starts it.

Only names from /etc/hosts are queried, so nothing is forwarded to the
machine's real resolver: all traffic stays on loopback.
"""
import os
import subprocess
import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

DEFAULT_LISTEN = ("127.0.0.1", 5300)


def test_default_config_runs_without_arguments(build_dir, tmp_path):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    sock = tmp_path / "berth.sock"
    log = tmp_path / "berthd.stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(build_dir / "berthd")], env=env,
                                stdin=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

        status = subprocess.run([str(build_dir / "berthctl"), "status"], env=env,
                                capture_output=True, text=True, timeout=10)
        assert status.returncode == 0, status.stderr
        assert "config <built-in>" in status.stdout
        assert "pool: 2500 sockets" in status.stdout
        assert "service dns (dns): running" in status.stdout

        # localhost comes from /etc/hosts: answered locally, never forwarded.
        q = dns.message.make_query("localhost.", dns.rdatatype.A)
        r = None
        for _ in range(50):
            try:
                r = dns.query.udp(q, DEFAULT_LISTEN[0], port=DEFAULT_LISTEN[1],
                                  timeout=1)
                break
            except dns.exception.Timeout:
                continue
        assert r is not None, "no answer from 127.0.0.1:5300"
        addrs = [a.address for rr in r.answer for a in rr]
        assert "127.0.0.1" in addrs
        assert r.flags & dns.flags.AA
    finally:
        proc.terminate()
        try:
            rc = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("berthd ignored SIGTERM")
    assert rc == 0, log.read_text()
    assert not sock.exists(), "berthd left its control socket behind"


def test_check_of_the_built_in_default(build_dir):
    out = subprocess.run([str(build_dir / "berthd"), "--check"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "<built-in>: ok"


def test_check_names_file_line_and_key(build_dir, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[ports]\nmax_user_port = 5000\nmax_user_port_semantics = sideways\n")
    out = subprocess.run([str(build_dir / "berthd"), "-c", str(conf), "--check"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert f"{conf}:3" in out.stderr
    assert "max_user_port_semantics" in out.stderr


def berthd_check(build_dir, conf):
    return subprocess.run([str(build_dir / "berthd"), "-c", str(conf), "--check"],
                          capture_output=True, text=True, timeout=10)


def test_check_runs_the_services_own_checks(build_dir, tmp_path):
    """Configs that load but whose service could never start: --check must
    say so, as starting would, with file:line, section, key and reason."""
    nine = ", ".join(f"127.0.0.{i}" for i in range(1, 10))
    conf = tmp_path / "dns.conf"
    conf.write_text(f"[pool]\nsize = 10\n\n[service d]\nprotocol = dns\n"
                    f"listen = 127.0.0.1:5399\nupstream = {nine}\n")
    out = berthd_check(build_dir, conf)
    assert out.returncode == 1, out.stdout
    assert f"{conf}:7: [service d] upstream: at most 8 upstreams, has 9" in out.stderr

    # The forwarder has room for 8 listen addresses; a ninth would fail only
    # at start, with a bare "No space left on device".
    listen = ",\n  ".join(f"127.0.0.1:{5390 + i}" for i in range(9))
    conf = tmp_path / "listen.conf"
    conf.write_text(f"[service d]\nprotocol = dns\nlisten = {listen}\n"
                    f"hosts = /etc/hosts\n")
    out = berthd_check(build_dir, conf)
    assert out.returncode == 1, out.stdout
    assert f"{conf}:3: [service d] listen: at most 8 addresses, has 9" in out.stderr

    # Indented lines continue the value (lines are at most 197 characters).
    kdcs = ",\n  ".join(f"127.0.0.{i}" for i in range(1, 18))
    conf = tmp_path / "krb.conf"
    conf.write_text(f"[pool]\nsize = 10\n\n[service k]\nprotocol = kerberos\n"
                    f"listen = 127.0.0.1:8899\nupstream = {kdcs}\n")
    out = berthd_check(build_dir, conf)
    assert out.returncode == 1, out.stdout
    assert f"{conf}:7: [service k] upstream: a kerberos service needs 1 to 16 " \
           f"upstream KDCs, has 17" in out.stderr

    # Two kerberos services on one KDC: a reply names no request, so the
    # relays could not tell whose it is.  Another KDC, or the same address
    # on another port, is fine.
    conf = tmp_path / "shared.conf"
    conf.write_text("[pool]\nsize = 10\n\n[service k]\nprotocol = kerberos\n"
                    "listen = 127.0.0.1:8899\nupstream = 127.0.0.1:88\n\n"
                    "[service k2]\nprotocol = kerberos\n"
                    "listen = 127.0.0.1:8898\n"
                    "upstream = 127.0.0.2:88, 127.0.0.1:88\n")
    out = berthd_check(build_dir, conf)
    assert out.returncode == 1, out.stdout
    assert f"{conf}:12: [service k2] upstream: 127.0.0.1:88 is an upstream " \
           f"of [service k] too; two kerberos services cannot share a KDC" \
           in out.stderr
    conf.write_text(conf.read_text().replace(", 127.0.0.1:88", ", 127.0.0.1:750"))
    out = berthd_check(build_dir, conf)
    assert out.returncode == 0, out.stderr

    # Forwarding without a pool could never send a query.
    conf = tmp_path / "nopool.conf"
    conf.write_text("[service d]\nprotocol = dns\nlisten = 127.0.0.1:5399\n"
                    "upstream = 127.0.0.1:53\n")
    out = berthd_check(build_dir, conf)
    assert out.returncode == 1, out.stdout
    assert f"{conf}:4: [service d] upstream: forwarding needs the socket pool" \
           in out.stderr

    # Eight upstreams with a pool are fine.
    eight = ", ".join(f"127.0.0.{i}" for i in range(1, 9))
    conf = tmp_path / "ok.conf"
    conf.write_text(f"[pool]\nsize = 10\n\n[service d]\nprotocol = dns\n"
                    f"listen = 127.0.0.1:5399\nupstream = {eight}\n")
    out = berthd_check(build_dir, conf)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{conf}: ok"


def test_check_sees_what_would_stop_a_start(build_dir, tmp_path):
    """Each of these configs loaded and passed --check before, and then a
    service failed to start, or berthd forwarded each query to itself."""
    berthctl = str(build_dir / "berthctl")
    cases = {
        # Two listeners on one address: the second could never bind.
        "twice.conf": ("[service a]\nprotocol = dns\nlisten = 127.0.0.1:5399\n"
                       "hosts = /etc/hosts\n"
                       "[service b]\nprotocol = dns\nlisten = 0.0.0.0:5399\n"
                       "hosts = /etc/hosts\n",
                       ":7: [service b] listen: 0.0.0.0:5399 collides with "
                       "127.0.0.1:5399 of [service a] (line 3)"),
        # Its own listener as upstream: one query became 65,536.
        "self.conf": ("[pool]\nsize = 10\n[service d]\nprotocol = dns\n"
                      "listen = 127.0.0.1:5399\nupstream = 127.0.0.1:5399\n",
                      ":6: [service d] upstream: 127.0.0.1:5399 reaches this "
                      "service's own listener"),
        # A hosts file that cannot be read.
        "hosts.conf": ("[service d]\nprotocol = dns\nlisten = 127.0.0.1:5399\n"
                       f"hosts = {tmp_path}/no-such-hosts\n",
                       f":4: [service d] hosts: {tmp_path}/no-such-hosts: "
                       "No such file or directory"),
        # The pool cannot take the service's own listen port.
        "fit.conf": ("[ports]\ndynamic_range = 15500-15509\navoid_in_use = no\n"
                     "[pool]\nsize = 10\n[service d]\nprotocol = dns\n"
                     "listen = 127.0.0.1:15505\nhosts = /etc/hosts\n",
                     ":5: [pool] size: 10 sockets do not fit in the 9 ports the "
                     "plan leaves to the pool (dynamic 15500-15509, 0 of them "
                     "reserved, 1 a listen port of the config's services)"),
    }
    for name, (text, want) in cases.items():
        conf = tmp_path / name
        conf.write_text(text)
        out = berthd_check(build_dir, conf)
        assert out.returncode == 1, (name, out.stdout)
        assert f"berthd: {conf}{want}" in out.stderr, (name, out.stderr)

    # berthctl check reports the pool that does not fit as a finding.
    out = subprocess.run([berthctl, "-c", str(tmp_path / "fit.conf"), "check"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "the plan leaves only 9 ports to the pool" in out.stdout
    assert "1 a listen port of the config's services" in out.stdout


def test_check_warns_of_a_kerberos_service_without_pool(build_dir, tmp_path):
    conf = tmp_path / "k.conf"
    conf.write_text("[service k]\nprotocol = kerberos\nlisten = 127.0.0.1:8899\n"
                    "upstream = 127.0.0.1:8898\n")
    out = berthd_check(build_dir, conf)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{conf}: ok"
    assert f"{conf}:1: [service k]: no [pool] section: UDP requests cannot be " \
           "relayed" in out.stderr
