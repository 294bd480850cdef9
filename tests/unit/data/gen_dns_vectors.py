#!/usr/bin/python3
"""Generate the DNS wire test vectors used by tests/unit/test_dns_wire.c.

The messages are built with dnspython, an independent encoder, so the C
parser is checked against bytes it did not produce itself.  The same files
seed the dns_wire fuzz corpus.  Run from anywhere; output is deterministic:

    /usr/bin/python3 tests/unit/data/gen_dns_vectors.py

Vectors (the unit test relies on the values noted here):
  dns_query_a.bin         ID 0x1234, RD, www.example.com A/IN, no OPT
  dns_query_opt.bin       ID 0xbeef, RD+CD, www.Example.COM AAAA/IN,
                          EDNS0 payload 4096, DO, one cookie option
  dns_response_cname.bin  ID 0x1234 response to the first query: CNAME to
                          web.example.com, two A records, an NS record in
                          authority, glue in additional, OPT 1232;
                          dnspython compresses every repeated suffix
  dns_response_nxdomain.bin  ID 0x0001, NXDOMAIN for nope.example. A with SOA

The fuzz corpus also gets a few hostile messages (hostile_seeds) that only
the fuzzer uses; the unit test builds its own hostile cases.
"""
import os
import shutil

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "fuzz", "corpus", "dns_wire")


def query_a():
    q = dns.message.make_query("www.example.com.", "A", use_edns=False)
    q.id = 0x1234
    q.flags = dns.flags.RD
    return q


def query_opt():
    q = dns.message.make_query("www.Example.COM.", "AAAA", use_edns=0,
                               payload=4096, want_dnssec=True,
                               options=[dns.edns.GenericOption(
                                   10, bytes(range(8)))])
    q.id = 0xBEEF
    q.flags = dns.flags.RD | dns.flags.CD
    return q


def response_cname():
    r = dns.message.make_response(query_a())
    r.flags |= dns.flags.RA
    r.answer.append(dns.rrset.from_text(
        "www.example.com.", 300, "IN", "CNAME", "web.example.com."))
    r.answer.append(dns.rrset.from_text(
        "web.example.com.", 300, "IN", "A", "192.0.2.1", "192.0.2.2"))
    r.authority.append(dns.rrset.from_text(
        "example.com.", 3600, "IN", "NS", "ns1.example.com."))
    r.additional.append(dns.rrset.from_text(
        "ns1.example.com.", 3600, "IN", "A", "192.0.2.53"))
    r.use_edns(0, payload=1232)
    return r


def response_nxdomain():
    q = dns.message.make_query("nope.example.", "A", use_edns=False)
    q.id = 1
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.NXDOMAIN)
    r.authority.append(dns.rrset.from_text(
        "example.", 900, "IN", "SOA",
        "ns.example. host.example. 1 7200 3600 1209600 900"))
    return r


def hostile_seeds():
    """Malformed messages no encoder writes: fuzz seeds only."""
    header = bytes.fromhex("4242 0000 0001 0001 0000 0000".replace(" ", ""))
    question = b"\x03foo\x00\x00\x01\x00\x01"
    rr_tail = b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x00"
    return {
        # Two pointers that each point backwards, yet loop (see the test).
        "loop_two_pointers.bin": header + question + b"\x05abc\xc0\x15\xc0\x19"
        + rr_tail,
        # An OPT whose option claims more octets than its RDATA holds.
        "opt_bad_option.bin": header[:6] + b"\x00\x00\x00\x00\x00\x01"
        + question + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x06"
        + b"\x00\x0a\x00\x03\xaa\xbb",
    }


def main():
    vectors = {
        "dns_query_a.bin": query_a(),
        "dns_query_opt.bin": query_opt(),
        "dns_response_cname.bin": response_cname(),
        "dns_response_nxdomain.bin": response_nxdomain(),
    }
    os.makedirs(CORPUS, exist_ok=True)
    for name, msg in vectors.items():
        path = os.path.join(HERE, name)
        with open(path, "wb") as f:
            f.write(msg.to_wire())
        shutil.copyfile(path, os.path.join(CORPUS, name[len("dns_"):]))
    for name, wire in hostile_seeds().items():
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(wire)


if __name__ == "__main__":
    main()
