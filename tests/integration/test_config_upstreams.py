"""berthd and a dns service's upstream list: duplicates, resolv.conf files
(their length, repeats, scoped and commented nameserver lines) and the
bound of upstream_timeout, as `berthd --check` and a start report them.

No test sends a query: every upstream here is on loopback and stays unused.
"""

import re
import subprocess

from conftest import free_port, port_held


def service(listen_port, upstream, extra=""):
    return (f"[pool]\nsize = 10\n\n[service d]\nprotocol = dns\n"
            f"listen = 127.0.0.1:{listen_port}\nupstream = {upstream}\n{extra}")


def check(build_dir, conf):
    return subprocess.run([str(build_dir / "berthd"), "-c", str(conf), "--check"],
                          capture_output=True, text=True, timeout=10)


def resolv(tmp_path, *lines, name="resolv.conf"):
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_an_upstream_given_twice_is_an_error(build_dir, tmp_path):
    conf = tmp_path / "dup.conf"
    conf.write_text(service(5399, "127.0.0.1:53,127.0.0.1:53"))
    out = check(build_dir, conf)
    assert out.returncode == 1, out.stdout
    assert out.stderr == (f"berthd: {conf}:7: [service d] upstream: "
                          f"127.0.0.1:53 is given twice (in the same list)\n")

    conf.write_text("[pool]\nsize = 10\n\n[service k]\nprotocol = kerberos\n"
                    "listen = 127.0.0.1:8899\n"
                    "upstream = 127.0.0.8, [::ffff:127.0.0.8]:88\n")
    out = check(build_dir, conf)
    assert out.returncode == 1, out.stdout
    assert f"{conf}:7: [service k] upstream: [::ffff:127.0.0.8]:88 is given " \
           f"twice (in the same list, as 127.0.0.8:88)" in out.stderr


def test_a_resolv_conf_may_repeat_an_address(build_dir, berthd, berthctl,
                                             tmp_path):
    """glibc takes repeats in resolv.conf; berthd uses the address once."""
    path = resolv(tmp_path, "nameserver 127.0.0.11", "nameserver 127.0.0.11",
                  "nameserver 127.0.0.12")
    conf = tmp_path / "repeat.conf"
    conf.write_text(service(5399, f"127.0.0.12, {path}"))
    out = check(build_dir, conf)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{conf}: ok\n"
    assert out.stderr == ""

    # The forwarder has one upstream per address (status counts each).
    port = free_port("both")
    daemon = berthd(service(port, f"127.0.0.12, {path}") +
                    f"[control]\nsocket = {tmp_path}/berth.sock\n",
                    lambda d: port_held(port, "udp"))
    status = berthctl("-c", daemon.config, "status")
    assert status.returncode == 0, status.stderr
    upstreams = re.findall(r"^ *upstream_(\d+)_failures:", status.stdout, re.M)
    assert upstreams == ["0", "1"], status.stdout


def test_a_long_resolv_conf_is_cut_with_a_warning(build_dir, berthd, tmp_path):
    path = resolv(tmp_path, *(f"nameserver 127.0.0.{i}" for i in range(11, 20)))
    conf = tmp_path / "nine.conf"
    conf.write_text(service(5399, str(path)))
    out = check(build_dir, conf)
    warning = (f"berthd: {conf}:7: [service d] upstream: 1 nameserver of "
               f"{path} left out: a dns service uses at most 8 upstreams\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{conf}: ok\n"
    assert out.stderr == warning

    # The config's own addresses are kept; the file fills the room left.
    conf.write_text(service(5399, f"127.0.0.2, 127.0.0.3, {path}"))
    out = check(build_dir, conf)
    assert out.returncode == 0, out.stderr
    assert "3 nameservers of" in out.stderr

    # Nine written in the config stay an error.
    nine = ", ".join(f"127.0.0.{i}" for i in range(21, 30))
    conf.write_text(service(5399, nine))
    out = check(build_dir, conf)
    assert out.returncode == 1, out.stdout
    assert f"{conf}:7: [service d] upstream: at most 8 upstreams, has 9" \
        in out.stderr

    # berthd starts with the file and says the same.
    port = free_port("both")
    daemon = berthd(service(port, str(path)) +
                    f"[control]\nsocket = {tmp_path}/berth.sock\n",
                    lambda d: port_held(port, "udp"))
    assert (f"upstream: 1 nameserver of {path} left out: a dns service uses "
            f"at most 8 upstreams") in daemon.stderr()


def test_scoped_and_commented_nameserver_lines(build_dir, tmp_path):
    path = resolv(tmp_path, "nameserver fe80::1%lo", "nameserver 127.0.0.11 # one",
                  "nameserver 127.0.0.12 trailing text", "nameserver 127.0.0.13;x")
    conf = tmp_path / "scope.conf"
    conf.write_text(service(5399, str(path)))
    out = check(build_dir, conf)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""

    path = resolv(tmp_path, "nameserver fe80::1%nosuch0", name="bad")
    conf.write_text(service(5399, str(path)))
    out = check(build_dir, conf)
    assert out.returncode == 1, out.stdout
    assert out.stderr == (f"berthd: {conf}:7: [service d] upstream: {path}:1: "
                          f"nameserver 'fe80::1%nosuch0': this host has no "
                          f"interface 'nosuch0' (the scope after %)\n")


def test_upstream_timeout_is_at_most_60s(build_dir, tmp_path):
    conf = tmp_path / "timeout.conf"
    conf.write_text(service(5399, "127.0.0.11", "upstream_timeout = 60s\n"))
    out = check(build_dir, conf)
    assert out.returncode == 0, out.stderr
    conf.write_text(service(5399, "127.0.0.11", "upstream_timeout = 100000h\n"))
    out = check(build_dir, conf)
    assert out.returncode == 1, out.stdout
    assert f"{conf}:8: [service d] upstream_timeout: '100000h' is too long: " \
           f"at most 60s" in out.stderr
