"""berthctl against the real kernel's ip_local_reserved_ports, in a network
namespace the test creates (the list is per namespace), so the machine's
own list is never read or written.

The kernel shows a long list in one read only and takes it a page per
write; berth read it through stdio (1 KiB) and wrote it in one write(2), so
a long list was cut on the way in and on the way out.
"""
import json
import os
import subprocess

import pytest

SYSCTL = "/proc/sys/net/ipv4/ip_local_reserved_ports"

# Run inside the namespace: set the kernel's list, run berthctl, read the
# list back.  os.write is looped because the kernel takes a page at a time.
NETNS_SCRIPT = r"""
import json, os, subprocess, sys
sysctl, berthctl, conf, kernel_list = sys.argv[1:5]
fd = os.open(sysctl, os.O_WRONLY)
data = kernel_list.encode() + b"\n"
while data:
    data = data[os.write(fd, data):]
os.close(fd)
def read_list():
    fd = os.open(sysctl, os.O_RDONLY)
    text = os.read(fd, 1 << 20).decode()
    os.close(fd)
    return text.strip()
before = read_list()
show = subprocess.run([berthctl, "-c", conf, "show", "reserved"],
                      capture_output=True, text=True, timeout=10)
apply = subprocess.run([berthctl, "-c", conf, "apply"],
                       capture_output=True, text=True, timeout=10)
print(json.dumps({"before": before, "show": show.stdout + show.stderr,
                  "show_rc": show.returncode,
                  "apply": apply.stdout + apply.stderr,
                  "apply_rc": apply.returncode, "after": read_list()}))
"""


def ports_of(text):
    """The set of ports a kernel list ("1,3-5") names."""
    ports = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        ports.update(range(int(lo), int(hi or lo) + 1))
    return ports


def in_new_netns(build_dir, conf, kernel_list):
    if os.geteuid() != 0:
        pytest.fail("needs root to create a network namespace (CI runs as root)")
    out = subprocess.run(["unshare", "-n", "/usr/bin/python3", "-c", NETNS_SCRIPT,
                          SYSCTL, str(build_dir / "berthctl"), str(conf),
                          kernel_list],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_long_kernel_list_read_whole_and_merged_whole(build_dir, tmp_path):
    # 2,000 single ports (about 10 KB of text) and a range at the end:
    # past the first kilobyte and past the page the kernel takes per write.
    kernel = set(range(20000, 24000, 2)) | set(range(60000, 60011))
    kernel_list = ",".join(str(p) for p in sorted(range(20000, 24000, 2))) + \
        ",60000-60010"
    conf = tmp_path / "berth.conf"
    conf.write_text("[ports]\nfrom_kernel = yes\n"
                    "reserved = 4500, 61000\n")
    r = in_new_netns(build_dir, conf, kernel_list)
    assert ports_of(r["before"]) == kernel

    # Read whole: the last of the kernel's ports is in the plan.
    assert r["show_rc"] == 0, r["show"]
    assert "60000       60010    kernel" in r["show"], r["show"]
    assert "23998       23998    kernel" in r["show"], r["show"]

    # Merged whole: the kernel keeps all it had and gains the plan's two.
    assert r["apply_rc"] == 0, r["apply"]
    after = ports_of(r["after"])
    assert after == kernel | {4500, 61000}, sorted(after ^ (kernel | {4500, 61000}))[:10]


def test_many_ports_added_over_several_writes(build_dir, tmp_path):
    """1,000 single ports to add (about 6 KB, more than the kernel takes
    per write): every one arrives, and the kernel keeps what it had."""
    planned = list(range(20001, 22001, 2))
    lines = []
    for i in range(0, len(planned), 25):
        lines.append(", ".join(str(p) for p in planned[i:i + 25]))
    conf = tmp_path / "berth.conf"
    conf.write_text("[ports]\nfrom_kernel = yes\nreserved =\n" +
                    ",\n".join("  " + line for line in lines) + "\n")
    r = in_new_netns(build_dir, conf, "60000-60010")
    assert r["apply_rc"] == 0, r["apply"]
    assert "1000 ports added" in r["apply"], r["apply"]
    assert ports_of(r["after"]) == set(planned) | set(range(60000, 60011))
