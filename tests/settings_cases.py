"""Settings values that must be refused, and their look-alikes that must still pass: shared by the settings tests
(tests/test_settings_bounds.py) and the chart's values-schema tests (tests/test_chart.py)."""

from __future__ import annotations

#: Redis URLs livelearn must refuse up front, each with a piece of the one-line error that says what is wrong.
REFUSED_REDIS_URLS: list[tuple[str, str]] = [
    ("redis://localhost:abc/0", "port 'abc'"),
    ("redis://localhost:99999/0", "port '99999'"),
    ("redis://localhost:0/0", "port '0'"),
    ("redis://localhost:-1/0", "port '-1'"),
    ("redis://localhost:+1/0", "port '+1'"),
    ("redis://localhost:/0", "port ''"),
    ("redis://localhost:6379/0?socket_timeout=abc", "socket_timeout='abc'"),
    ("redis://localhost:6379/0?socket_timeout=-1", "socket_timeout='-1'"),
    ("redis://localhost:6379/0?socket_timeout=0", "socket_timeout='0'"),
    ("redis://localhost:6379/0?socket_timeout=nan", "socket_timeout='nan'"),
    ("redis://localhost:6379/0?socket_timeout=inf", "socket_timeout='inf'"),
    ("redis://localhost:6379/0?socket_timeout=61", "socket_timeout='61'"),
    ("redis://localhost:6379/0?socket_connect_timeout=1e999", "socket_connect_timeout='1e999'"),
    ("redis://localhost:6379/abc", "database '/abc'"),
    ("redis://localhost:6379/-1", "database '/-1'"),
    ("redis://localhost:6379/1/2", "database '/1/2'"),
    ("redis://localhost:6379/0?db=abc", "db='abc'"),
    ("redis://localhost:6379?db=-1", "db='-1'"),
    ("redis://localhost:6379?db=", "db=''"),
    ("redis://localhost:6379?db=1&db=2", "'db' is given twice"),
    ("redis://:6379/0", "names no host"),
    ("redis:///0", "names no host"),
    ("redis://", "names no host"),
    ("redis://local host:6379/0", "space"),
    ("redis://localhost:6379/0\n", "control"),
    ("redis://[::1/0", "host"),
    ("redis:localhost:6379", "redis://"),
    ("http://localhost:6379/0", "redis://"),
    ("redis+sentinel://localhost:26379/0", "redis://"),
    ("redis://:pa#ss@localhost:6379/0", "%23"),
    ("redis://localhost:6379/0?", "empty"),
    ("redis://localhost:6379/0?db", "option 'db' has no value"),
    ("redis://localhost:6379/0?foo=bar", "option 'foo'"),
    ("redis://localhost:6379/0?timeout=1", "option 'timeout'"),
    ("redis://localhost:6379/0?decode_responses=1", "option 'decode_responses'"),
    ("redis://localhost:6379/0?retry_on_error=Nope", "option 'retry_on_error'"),
    ("redis://localhost:6379/0?max_connections=0", "max_connections='0'"),
    ("redis://localhost:6379/0?health_check_interval=-5", "health_check_interval='-5'"),
    ("redis://localhost:6379/0?protocol=5", "protocol='5'"),
    ("redis://localhost:6379/0?retry_on_timeout=maybe", "retry_on_timeout='maybe'"),
    ("redis://localhost:6379/0?ssl_cert_reqs=required", "option 'ssl_cert_reqs'"),  # TLS option, plain redis://
    ("rediss://localhost:6380/0?ssl_cert_reqs=bogus", "ssl_cert_reqs='bogus'"),
    ("rediss://localhost:6380/0?ssl_min_version=99", "ssl_min_version='99'"),
    ("rediss://localhost:6380/0?ssl_include_verify_flags=VERIFY_NOTHING", "ssl_include_verify_flags="),
    ("unix://", "socket"),
    ("unix://redis.sock", "socket"),
    ("unix://localhost/run/redis.sock", "socket"),
    ("unix:///run/redis.sock?socket_keepalive=1", "option 'socket_keepalive'"),
    ("unix:///run/redis.sock?ssl_ca_certs=/ca.pem", "option 'ssl_ca_certs'"),
]

#: Redis URLs that must keep working (redis-py builds a connection from each).
ACCEPTED_REDIS_URLS: list[str] = [
    "redis://127.0.0.1:6379/0",
    "redis://localhost",
    "redis://redis:6379",
    "redis://redis:6379/",
    "redis://redis:65535/15",
    "REDIS://Redis.Example.com:6379/0",
    "redis://livelearn:s3cret@redis:6379/0",
    "redis://:s3cret@redis:6379/0",
    "redis://:p@ss@redis:6379/0",
    "redis://redis:6379/0?password=s3cret&db=1",
    "redis://[::1]:6379/0",
    "redis://redis_1.internal:6379/0",
    "redis://redis:6379/0?socket_timeout=0.5&socket_connect_timeout=60&health_check_interval=0&max_connections=20"
    "&retry_on_timeout=Yes&socket_keepalive=off&protocol=2&client_name=shop&username=livelearn",
    "rediss://:p%40ss:w0rd@redis:6380/0?ssl_ca_certs=/etc/ca.pem",
    "rediss://livelearn@redis.example.com:6380/0?ssl_ca_certs=/etc/livelearn/tls/redis/ca.crt&ssl_cert_reqs=required",
    "rediss://redis:6380/0?ssl_check_hostname=false&ssl_min_version=771"
    "&ssl_include_verify_flags=VERIFY_X509_STRICT,VERIFY_X509_PARTIAL_CHAIN&ssl_certfile=/tls/c.pem&ssl_keyfile=/tls/k.pem",
    "unix:///run/redis.sock",
    "unix:///run/redis.sock?db=0",
    "unix://:s3cret@/run/redis.sock?db=3&socket_timeout=2",
    "unix:///run/redis%20server.sock",
]

#: (metric, threshold) pairs the monitor cannot judge by: not a number, infinite, or outside the metric's range.
REFUSED_THRESHOLDS: list[tuple[str, str]] = [
    ("accuracy", "nan"),
    ("accuracy", "inf"),
    ("accuracy", "-inf"),
    ("accuracy", "-0.1"),
    ("accuracy", "1.5"),
    ("roc_auc", "1.01"),
    ("f1", "-1e-9"),
    ("log_loss", "nan"),
    ("log_loss", "inf"),
    ("log_loss", "-0.5"),
    ("log_loss", "1e309"),
]

#: ...and pairs that are fine.
ACCEPTED_THRESHOLDS: list[tuple[str, str]] = [
    ("accuracy", "0"),
    ("accuracy", "1"),
    ("balanced_accuracy", "0.55"),
    ("log_loss", "0"),
    ("log_loss", "0.4"),
    ("log_loss", "2.5"),
]
