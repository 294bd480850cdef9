"""berthctl's own description of itself: `berthctl --help` and the SYNOPSIS
of man/berthctl.8 must match what the code accepts and how it exits."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_help_names_every_option_and_exit_status(berthctl, free_port):
    out = berthctl("--help")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0] == "usage: berthctl [-c FILE] [-s PATH] VERB [ARGS]"
    for opt in ("-c, --config FILE", "-s, --socket PATH", "-h, --help",
                "-V, --version"):
        assert opt in out.stdout, opt
    exit_text = " ".join(out.stdout.split("Exit status:", 1)[1].split())
    assert "1 conflicts found (check), nobody holds the port (who)" in exit_text

    # ... and who does exit 1 when nobody holds the port.
    nobody = berthctl("who", f"{free_port('both')}/udp")
    assert nobody.returncode == 1


def test_man_synopsis_names_every_option():
    text = (REPO / "man" / "berthctl.8").read_text()
    synopsis = text.split(".SH SYNOPSIS", 1)[1].split(".SH", 1)[0]
    flat = re.sub(r"\s+", " ", synopsis.replace("\\-", "-"))
    assert "-c" in flat and "FILE" in flat
    assert "-s" in flat and "PATH" in flat
    # The usage line of --help, in the man page's words.
    assert flat.index("-c") < flat.index("-s") < flat.index("VERB")
