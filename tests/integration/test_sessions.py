"""`berthctl sessions` and the new-connection deadline on a real berthd.

A DNS service answering only from a hosts file needs no upstream; silent TCP
connections to it show up in `berthctl sessions` with their peer, state and
time to deadline, and are closed at the deadline, never before.
"""
import socket
import time

from conftest import port_held


def test_sessions_lists_silent_connections_and_closes_them(berthd, berthctl,
                                                           free_port, tmp_path):
    port = free_port("both")
    sock = str(tmp_path / "berth.sock")
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.7 seven.example\n")
    berthd(f"""
[service dns]
protocol = dns
listen = 127.0.0.1:{port}
hosts = {hosts}
new_connection_timeout = 1500ms

[control]
socket = {sock}
""", ready=lambda d: port_held(port, "tcp"))

    clients, started = [], []
    try:
        for _ in range(3):
            # Taken before connect: berthd cannot accept earlier, so a close
            # seen less than 1.5 s after this would be early.
            started.append(time.monotonic())
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            clients.append(c)
        opened = time.monotonic()
        peers = {f"127.0.0.1:{c.getsockname()[1]}" for c in clients}

        # berthd accepts on its next loop iteration: poll, bounded.
        for _ in range(50):
            out = berthctl("-s", sock, "sessions")
            assert out.returncode == 0, out.stderr
            rows = [line.split() for line in out.stdout.splitlines()[1:]]
            listed = {row[1]: row for row in rows}
            if peers <= set(listed):
                break
            time.sleep(0.02)
        assert peers <= set(listed), out.stdout
        for peer in peers:
            service, _, state, age_ms, deadline_in = listed[peer]
            assert service == "dns"
            assert state == "new"
            assert 0 <= int(age_ms) <= 1500
            assert 0 < int(deadline_in) <= 1500

        # Never before the deadline: still open at 1.2 s ...
        time.sleep(max(0.0, 1.2 - (time.monotonic() - opened)))
        for c in clients:
            c.setblocking(False)
            try:
                assert c.recv(1) != b"", "closed before its deadline"
            except BlockingIOError:
                pass  # open and silent, as it should be
        # ... and closed (EOF) soon after 1.5 s.
        for c, t0 in zip(clients, started):
            c.settimeout(5)
            assert c.recv(1) == b""
            assert time.monotonic() - t0 >= 1.5

        out = berthctl("-s", sock, "sessions")
        assert not any(p in out.stdout for p in peers), out.stdout

        # berthctl status counts them for the dns service, as for kerberos.
        out = berthctl("-s", sock, "status")
        assert out.returncode == 0, out.stderr
        dns_part = out.stdout.split("service dns (dns)", 1)[1]
        assert "  sessions_accepted: 3\n" in dns_part, out.stdout
        assert "  sessions_active: 0\n" in dns_part, out.stdout
        assert "  closes_new_timeout: 3\n" in dns_part, out.stdout
        assert "  evictions: 0\n" in dns_part, out.stdout
    finally:
        for c in clients:
            c.close()
