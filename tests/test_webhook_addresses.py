"""Which URLs webhooks may be delivered to (issue 13, part 1): only http/https; no credentials,
fragment, zone index or character outside RFC 3986; loopback, link-local, private, shared
(CGNAT), unique-local, unspecified and reserved addresses refused unless
WORKFLOW_AUTHZ_WEBHOOK_ALLOW_PRIVATE, also inside an IPv6 address (mapped, NAT64, 6to4) and
behind a name (`localhost`); an IPv4 address spelled other than a.b.c.d (decimal, octal,
hexadecimal, short: the C resolver reads `http://2130706433/` as 127.0.0.1) refused whatever
the setting; a host that does not resolve refused with words saying so.

No network: IP literals, `localhost` and the reserved `.invalid` top-level domain only (adding
an endpoint resolves its host but never connects). The oracle for "not public" is the list of
networks below, written from the IANA special-purpose registries, not the service's code."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.limits import MAX_URL
from service.webhooks.addresses import form_problem, is_public, private_problem, problem

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None)
NOT_PUBLIC = [
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]
UNSURE = [  # special ranges neither drawn as public nor as private by the properties
    ipaddress.IPv4Network(n)
    for n in ("192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.51.100.0/24", "203.0.113.0/24")
]
HINT = "refused unless WORKFLOW_AUTHZ_WEBHOOK_ALLOW_PRIVATE=true"
PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:4700:4700::1111"


def inside(network: ipaddress.IPv4Network) -> st.SearchStrategy[ipaddress.IPv4Address]:
    first = int(network.network_address)
    return st.integers(first, first + network.num_addresses - 1).map(ipaddress.IPv4Address)


private_v4 = st.sampled_from(NOT_PUBLIC).flatmap(inside)
public_v4 = (
    st.integers(0, 2**32 - 1)
    .map(ipaddress.IPv4Address)
    .filter(lambda ip: not any(ip in n for n in NOT_PUBLIC + UNSURE))
)
any_v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


def as_v6(ip: ipaddress.IPv4Address) -> list[str]:
    """IPv6 literals that carry the IPv4 address: mapped, NAT64 (RFC 6052), 6to4 (RFC 3056)."""
    n = int(ip)
    return [f"[::ffff:{ip}]", f"[64:ff9b::{ip}]", f"[2002:{n >> 16:x}:{n & 0xFFFF:x}::1]"]


def odd_spellings(ip: ipaddress.IPv4Address) -> list[str]:
    """The IPv4 address as inet_aton reads it but not as a.b.c.d: one decimal number, hex,
    octal parts, the short forms a.b.cd and a.bcd."""
    a, b, c, d = ip.packed
    n = int(ip)
    return [
        str(n),
        f"0x{n:x}",
        ".".join(f"0{part:o}" for part in ip.packed),
        f"{a}.{b}.{(c << 8) + d}",
        f"{a}.{(b << 16) + (c << 8) + d}",
    ]


# -- the form of a URL, whatever the setting ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://93.184.215.14/", "must be an http:// or https:// URL"),
        ("javascript:alert(1)", "must be an http:// or https:// URL"),
        ("file:///etc/passwd", "must be an http:// or https:// URL"),
        ("http:///hook", "must be an http:// or https:// URL with a host"),
        ("93.184.215.14/hook", "must be an http:// or https:// URL"),
        ("http://user:secret@93.184.215.14/", "must not hold a user name or password"),
        ("http://token@93.184.215.14/", "must not hold a user name or password"),
        ("http://93.184.215.14/hook#part", "must not have a fragment"),
        ("http://93.184.215.14\\@10.0.0.1/", "percent-encode character 21 (U+005C)"),
        ("http://93.184.215.14/a b", "percent-encode character 23 (U+0020)"),
        ("http://93.184.215.14/\n", "percent-encode character 22 (U+000A)"),
        ("http://exämple.com/", "percent-encode character 10 (U+00E4)"),
        ("http://93.184.215.14:0/", "must not name port 0"),
        ("http://93.184.215.14:99999/", "is not a URL: Port out of range"),
        ("http://93.184.215.14:http/", "is not a URL"),
        ("http://[fe80::1%25eth0]/", "has a zone index"),
        ("http://[v1.fe80]/", "is not an IPv6 address"),
        ("http://[93.184.215.14]/", "is not a URL"),
        ("http://exa..mple.com/", "is not a host name (label ''"),
        ("http://-sis.example.com/", "is not a host name (label '-sis'"),
        ("http://%31.1.1.1/", "an IPv4 address in an unusual spelling"),
        ("http://93.184.215.14./", "an IPv4 address in an unusual spelling"),
        ("http://" + "a" * 64 + ".com/", "is not a host name"),
        ("http://" + "a." * 127 + "com/", "has a host longer than 253 characters"),
        ("http://93.184.215.14/" + "a" * MAX_URL, f"is longer than {MAX_URL} characters"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_a_url_that_programs_could_read_otherwise_is_refused_whatever_the_setting(
    url: str, words: str, allow_private: bool
) -> None:
    found = problem(url, allow_private=allow_private)
    assert found is not None and words in found, found


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://2130706433/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://0/", "0.0.0.0"),
        ("http://1572394766/", PUBLIC_V4),  # a public address too: what is shown must be it
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_an_ipv4_address_spelled_other_than_abcd_is_refused_naming_what_it_reads_as(
    url: str, canonical: str, allow_private: bool
) -> None:
    found = problem(url, allow_private=allow_private)
    assert found is not None, url
    assert f"the resolver reads it as {canonical}" in found and "a.b.c.d" in found


# -- private addresses, refused unless the setting allows them -------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data", "a link-local address"),
        ("http://[fe80::1]/", "a link-local address"),
        ("http://10.1.2.3/", "a private address"),
        ("http://172.16.0.1/", "a private address"),
        ("https://192.168.1.10/", "a private address"),
        ("http://100.64.0.1/", "a shared (CGNAT) address"),
        ("http://[fd12:3456::1]/", "a private address"),
        ("http://[::ffff:127.0.0.1]/", "a loopback address"),
        ("http://[::ffff:10.0.0.1]/", "a private address"),
        ("http://[64:ff9b::10.0.0.1]/", "a private address"),
        ("http://[2002:7f00:1::]/", "a loopback address"),
        ("http://[::127.0.0.1]/", "a reserved address"),  # IPv4-compatible: Python calls it global
        ("http://[fec0::1]/", "a reserved address"),  # site-local: Python calls it global
        ("http://0.0.0.0/", "the unspecified address"),
        ("http://[::]/", "the unspecified address"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://[ff02::1]/", "a multicast address"),
        ("http://localhost:9000/", "'localhost', which resolves to 127.0.0.1, is a loopback"),
    ],
)
def test_a_private_address_is_refused_unless_the_setting_allows_it(url: str, kind: str) -> None:
    refused = problem(url, allow_private=False)
    assert refused is not None and kind in refused and HINT in refused, refused
    assert problem(url, allow_private=True) is None


@pytest.mark.parametrize(
    "url", [f"http://{PUBLIC_V4}/hook", f"https://[{PUBLIC_V6}]:8443/h?tenant=a", "HTTPS://1.1.1.1"]
)
def test_a_public_address_is_accepted(url: str) -> None:
    assert problem(url, allow_private=False) is None


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    found = private_problem("sis.example.org", [PUBLIC_V4, "10.0.0.7", PUBLIC_V6])
    assert found is not None and "'sis.example.org', which resolves to 10.0.0.7," in found
    assert private_problem("sis.example.org", [PUBLIC_V4, PUBLIC_V6]) is None


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_host_that_does_not_resolve_is_refused_in_words(allow_private: bool) -> None:
    found = problem("https://sis.school.invalid/hook", allow_private=allow_private)
    assert found is not None and "'sis.school.invalid' that does not resolve" in found
    assert "check its spelling" in found and "Errno" not in found


# -- properties -----------------------------------------------------------------------------------


@SETTINGS
@given(private_v4, st.sampled_from([False, True]))
def test_every_spelling_of_a_private_ipv4_address_is_refused_without_the_setting(
    ip: ipaddress.IPv4Address, allow_private: bool
) -> None:
    literals = [str(ip), *as_v6(ip)]
    for host in literals:
        found = problem(f"http://{host}/", allow_private=allow_private)
        assert (found is None) == allow_private, (host, found)
        if found is not None:
            assert HINT in found
    for host in odd_spellings(ip):
        assert problem(f"http://{host}/", allow_private=allow_private) is not None, host


@SETTINGS
@given(public_v4)
def test_a_public_ipv4_address_is_accepted_as_abcd_and_in_ipv6_but_never_spelled_oddly(
    ip: ipaddress.IPv4Address,
) -> None:
    for host in [str(ip), *as_v6(ip)]:
        assert problem(f"https://{host}/hook", allow_private=False) is None, host
    for host in odd_spellings(ip):
        found = problem(f"https://{host}/hook", allow_private=False)
        assert found is not None and f"reads it as {ip}" in found, host


@SETTINGS
@given(any_v4)
def test_an_ipv6_address_carrying_an_ipv4_one_is_judged_as_it(ip: ipaddress.IPv4Address) -> None:
    n = int(ip)
    carriers = [f"::ffff:{ip}", f"64:ff9b::{ip}", f"2002:{n >> 16:x}:{n & 0xFFFF:x}::"]
    assert {is_public(c) for c in carriers} == {is_public(str(ip))}


url_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from("/:@[]%#.\\?"),
    max_size=60,
)


@SETTINGS
@given(st.sampled_from(["http://", "https://", "", "HTTP://"]), url_text)
def test_any_text_gets_an_answer_and_an_accepted_form_has_one_reading(
    scheme: str, rest: str
) -> None:
    url = scheme + rest
    found = form_problem(url)  # no resolving: pure
    if found is None:
        assert url.isascii() and "\\" not in url and "#" not in url and " " not in url
        assert "@" not in url.split("/")[2]


@SETTINGS
@given(st.from_regex(r"[a-z0-9._~-]{1,12}(:[a-z0-9._~-]{0,12})?", fullmatch=True))
def test_any_credentials_in_the_url_are_refused(userinfo: str) -> None:
    found = form_problem(f"https://{userinfo}@{PUBLIC_V4}/hook")
    assert found is not None and "must not hold a user name or password" in found
