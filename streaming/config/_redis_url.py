"""The Redis URL livelearn accepts: one grammar (a JSON-schema ``pattern`` the chart's values schema shares) and a
checker that says in one line what is wrong with a URL.

>>> redis_url_problem("redis://redis:6379/0") is None
True
>>> redis_url_problem("redis://redis:99999/0")
"port '99999' is not a number from 1 to 65535"
"""

from __future__ import annotations

import re
import urllib.parse
from typing import NamedTuple

__all__ = ["REDIS_URL_PATTERN", "redis_url_problem"]


# --- the Redis URL ------------------------------------------------------------------------------------
# redis-py (``Redis.from_url``) takes a URL apart late, at the first connection, and a mistake there is a
# traceback: a port that is not a number, an option whose value does not parse, an unknown option (passed on as
# a keyword argument). Other mistakes it lets through silently: no host (then localhost), a database path that
# is not a number (then 0), a timeout of NaN, 0 or -1. So the URL is checked here, before anything connects:
# the grammar below is one regular expression (the chart's values schema refuses what it refuses; it is
# written for Python's re, Go's RE2 and ECMAScript alike), and :func:`_redis_url_problem` says what is wrong.


class _Option(NamedTuple):
    """A query option of a Redis URL: the pattern of its value, that pattern in words, the schemes taking it."""

    pattern: str
    meaning: str
    schemes: tuple[str, ...]


def _printable_except(excluded: str) -> str:
    """A character class of the printable ASCII characters (``!`` to ``~``) but ``excluded``.

    >>> print(_printable_except("/?#"))
    [!-"$-.0->@-~]
    """
    allowed = [c for c in map(chr, range(0x21, 0x7F)) if c not in excluded]
    runs: list[list[str]] = []
    for c in allowed:
        if runs and ord(c) == ord(runs[-1][-1]) + 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    escape = {c: "\\" + c for c in "\\]^-["}
    parts = (escape.get(r[0], r[0]) + (f"-{escape.get(r[-1], r[-1])}" if len(r) > 1 else "") for r in runs)
    return "[" + "".join(parts) + "]"


def _any_case(word: str) -> str:
    """``word`` in any mix of upper and lower case (no inline flags: the engines differ on those)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


_INDEX = "0|[1-9][0-9]{0,8}"
_COUNT = "[1-9][0-9]{0,8}"
_SECONDS = r"60(?:\.0+)?|(?:[1-9]|[1-5][0-9])(?:\.[0-9]+)?|0?\.[0-9]*[1-9][0-9]*"  # (0, 60], like the setting
_BOOL = "[Tt]rue|[Ff]alse|[Yy]es|[Nn]o|[Oo]n|[Oo]ff|[01]"
_TEXT = _printable_except("#&") + "+"
_VERIFY_FLAG = (  # ssl.VerifyFlags
    "VERIFY_(?:DEFAULT|CRL_CHECK_LEAF|CRL_CHECK_CHAIN|X509_STRICT|X509_TRUSTED_FIRST|ALLOW_PROXY_CERTS|X509_PARTIAL_CHAIN)"
)
_VERIFY_FLAGS = f"\\[?{_VERIFY_FLAG}(?:,{_VERIFY_FLAG})*\\]?"  # redis-py drops the brackets
_ANY, _TCP, _TLS = ("redis", "rediss", "unix"), ("redis", "rediss"), ("rediss",)
_BOOLEAN = "true or false (also True/False, yes/no, on/off, 1/0)"
_NAME = "not empty (percent-encode '#', '&' and spaces)"
#: The query options livelearn takes: redis-py's, each checked as the type redis-py parses it into
#: (``redis.connection.URL_QUERY_ARGUMENT_PARSERS``) and within sensible bounds, and only with the schemes whose
#: connections take it. Left out: what would break livelearn (``decode_responses``, ``protocol=3``),
#: what livelearn sets itself (``retry_on_error``) and what ``Redis.from_url`` cannot use (``timeout``).
_REDIS_OPTIONS: dict[str, _Option] = {
    "db": _Option(_INDEX, "a database number from 0", _ANY),
    "username": _Option(_TEXT, _NAME, _ANY),
    "password": _Option(_TEXT, _NAME, _ANY),
    "socket_timeout": _Option(_SECONDS, "seconds above 0, at most 60", _ANY),
    "socket_connect_timeout": _Option(_SECONDS, "seconds above 0, at most 60", _ANY),
    "socket_keepalive": _Option(_BOOL, _BOOLEAN, _TCP),
    "socket_read_size": _Option(_COUNT, "a whole number of bytes from 1", _ANY),
    "retry_on_timeout": _Option(_BOOL, _BOOLEAN, _ANY),
    "health_check_interval": _Option(_INDEX, "whole seconds from 0", _ANY),
    "max_connections": _Option(_COUNT, "a whole number from 1", _ANY),
    "protocol": _Option("2", "2 (livelearn speaks RESP2)", _ANY),
    "client_name": _Option(_TEXT, _NAME, _ANY),
    "lib_name": _Option(_TEXT, _NAME, _ANY),
    "lib_version": _Option(_TEXT, _NAME, _ANY),
    "ssl_ca_certs": _Option(_TEXT, _NAME, _TLS),
    "ssl_ca_path": _Option(_TEXT, _NAME, _TLS),
    "ssl_ca_data": _Option(_TEXT, _NAME, _TLS),
    "ssl_certfile": _Option(_TEXT, _NAME, _TLS),
    "ssl_keyfile": _Option(_TEXT, _NAME, _TLS),
    "ssl_password": _Option(_TEXT, _NAME, _TLS),
    "ssl_ciphers": _Option(_TEXT, _NAME, _TLS),
    "ssl_cert_reqs": _Option("none|optional|required", "none, optional or required", _TLS),
    "ssl_check_hostname": _Option(_BOOL, _BOOLEAN, _TLS),
    "ssl_validate_ocsp": _Option(_BOOL, _BOOLEAN, _TLS),
    "ssl_validate_ocsp_stapled": _Option(_BOOL, _BOOLEAN, _TLS),
    "ssl_min_version": _Option("769|77[0-2]", "a ssl.TLSVersion number: 769 (TLSv1) to 772 (TLSv1_3)", _TLS),
    "ssl_include_verify_flags": _Option(_VERIFY_FLAGS, "ssl.VerifyFlags names, comma-separated", _TLS),
    "ssl_exclude_verify_flags": _Option(_VERIFY_FLAGS, "ssl.VerifyFlags names, comma-separated", _TLS),
}
_USERINFO = _printable_except("/?#[]\\")  # up to the last '@' before the path, as urllib and redis-py read it
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+"
_PORT = "6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}"
_DB_PATH = f"(?:/(?:{_INDEX})?)?"


def _query(scheme: str) -> str:
    """The optional query of a ``scheme`` URL: ``?name=value&name=value`` of the options that scheme takes."""
    option = "|".join(f"{name}=(?:{o.pattern})" for name, o in _REDIS_OPTIONS.items() if scheme in o.schemes)
    return f"(?:\\?(?:{option})(?:&(?:{option}))*)?"


#: A Redis URL livelearn can use, whole (a JSON-schema ``pattern``, anchored).
REDIS_URL_PATTERN = (
    "^(?:"
    + "|".join(
        [
            *(f"{_any_case(s)}://(?:{_USERINFO}*@)?(?:{_HOST})(?::(?:{_PORT}))?{_DB_PATH}{_query(s)}" for s in _TCP),
            f"{_any_case('unix')}://(?:{_USERINFO}*@)?/{_printable_except('?#')}+{_query('unix')}",
        ]
    )
    + ")$"
)
_REDIS_URL = re.compile(REDIS_URL_PATTERN)


def redis_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as livelearn's Redis URL, in words that say how to fix it; ``None``: nothing.

    It never repeats the URL (it may hold a password), only the part that is wrong.

    >>> redis_url_problem("redis://redis:6379/0?socket_timeout=0.5") is None
    True
    >>> redis_url_problem("redis://redis:abc/0")
    "port 'abc' is not a number from 1 to 65535"
    >>> redis_url_problem("redis://redis/0?socket_timeout=nan")
    "option socket_timeout='nan' must be seconds above 0, at most 60"
    """
    if not all("!" <= c <= "~" for c in url):
        return "the URL contains a space, a control or a non-ASCII character; percent-encode it (a space is %20)"
    scheme, sep, _rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _ANY:
        return "use a redis://, rediss:// (TLS) or unix:// URL"
    if "#" in url:
        return "the URL has a '#', which would end the URL there; percent-encode it as %23 (e.g. in a password)"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        return f"its host is not a host name or [IPv6] address ({exc})"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and not re.fullmatch(f"{_USERINFO}*", userinfo):
        return "the user name or password holds '[', ']' or '\\'; percent-encode it"
    if scheme == "unix":
        if hostport or len(parts.path) < 2:
            return "unix:// takes the socket's absolute path and no host, e.g. unix:///run/redis.sock"
    else:
        host, port = _host_and_port(hostport)
        if not host and port is not None and ":" in port:
            return f"write an IPv6 address in brackets, e.g. {scheme}://[::1]:6379/0"
        if not host:
            return f"the URL names no host; e.g. {scheme}://redis:6379/0"
        if not re.fullmatch(_HOST, host):
            return f"host {host!r} is not a host name or [IPv6] address"
        if port is not None and not re.fullmatch(_PORT, port):
            return f"port {port!r} is not a number from 1 to 65535"
        if not re.fullmatch(_DB_PATH, parts.path):
            return f"database {parts.path!r} is not a number from 0 (e.g. /0)"
    if url.endswith("?"):
        return "the URL has an empty query; drop the '?' or add options (name=value&name=value)"
    seen: set[str] = set()
    for item in parts.query.split("&") if parts.query else ():
        name, eq, value = item.partition("=")
        option = _REDIS_OPTIONS.get(name)
        if option is None or scheme not in option.schemes:
            takes = ", ".join(n for n, o in _REDIS_OPTIONS.items() if scheme in o.schemes)
            return f"option {name!r} is not one livelearn takes in a {scheme}:// URL (it takes {takes})"
        if not eq:
            return f"option {name!r} has no value; write {name}=VALUE"
        if name in seen:
            return f"option {name!r} is given twice"
        seen.add(name)
        if not re.fullmatch(option.pattern, value):
            shown = repr(value) if option.pattern != _TEXT else "''"  # a text value fails only when empty
            return f"option {name}={shown} must be {option.meaning}"
    if not _REDIS_URL.fullmatch(url):  # every rule above passed: only the grammar can tell (no case is known)
        return "not a Redis URL livelearn can use; e.g. redis://redis:6379/0"
    return None


def _host_and_port(hostport: str) -> tuple[str, str | None]:
    """``host[:port]`` or ``[IPv6][:port]`` split as written (the port as text, ``None`` when absent)."""
    if hostport.startswith("["):
        address, bracket, rest = hostport.partition("]")
        if bracket and rest.startswith(":"):
            return address + bracket, rest[1:]
        return hostport, None  # "[::1]", or not an address: the host's check says so
    host, colon, port = hostport.partition(":")
    return host, port if colon else None
