"""The two Kafka adapters: settings mapped to each library's names, neutral records, delivery handles, errors.

Unit tests (no broker): confluent-kafka's own ``Message`` and ``KafkaError`` objects are built directly;
an unreachable address checks the error each adapter raises. The adapters' behaviour against a real broker
is in ``test_transport_contract.py``.
"""

from __future__ import annotations

import importlib.util

import pytest
from confluent_kafka import KafkaError, KafkaException, Message
from pydantic import SecretStr

from streaming.config import Settings
from streaming.errors import BrokerUnavailableError
from streaming.transport import Record, TopicPartition, choose_client, make_consumer, make_producer
from streaming.transport.confluent import ConfluentConsumer
from streaming.transport.confluent_producer import Delivery
from streaming.transport.options import confluent_config, kafka_python_config

SECURE = Settings(
    kafka_bootstrap=" k1:9093 , k2:9093 ",
    kafka_security_protocol="SASL_SSL",
    kafka_sasl_mechanism="SCRAM-SHA-512",
    kafka_sasl_username="learner",
    kafka_sasl_password=SecretStr("s3cret"),
    kafka_ssl_cafile="/etc/kafka/ca.pem",
    kafka_ssl_certfile="/etc/kafka/client.pem",
    kafka_ssl_keyfile="/etc/kafka/client.key",
    kafka_ssl_key_password=SecretStr("k3y"),
    model_name="shop",
)


def test_security_settings_map_to_librdkafka_names():
    assert confluent_config(SECURE) == {
        "bootstrap.servers": "k1:9093,k2:9093",
        "security.protocol": "SASL_SSL",
        "client.id": "livelearn-shop",
        "socket.connection.setup.timeout.ms": 30_000,
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "learner",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/kafka/ca.pem",
        "ssl.certificate.location": "/etc/kafka/client.pem",
        "ssl.key.location": "/etc/kafka/client.key",
        "ssl.key.password": "k3y",
    }


def test_security_settings_map_to_kafka_python_names():
    assert kafka_python_config(SECURE) == {
        "bootstrap_servers": ["k1:9093", "k2:9093"],
        "security_protocol": "SASL_SSL",
        "client_id": "livelearn-shop",
        "bootstrap_timeout_ms": 30_000,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "learner",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_certfile": "/etc/kafka/client.pem",
        "ssl_keyfile": "/etc/kafka/client.key",
        "ssl_password": "k3y",
    }


def test_plaintext_sends_no_credentials_to_either_client():
    plain = Settings(kafka_sasl_username="ignored-without-a-mechanism", kafka_sasl_password=SecretStr("x"))
    assert not any(name.startswith(("sasl", "ssl")) for name in confluent_config(plain))
    assert not any(name.startswith(("sasl", "ssl")) for name in kafka_python_config(plain))
    assert "s3cret" not in repr(SECURE) and "k3y" not in repr(SECURE)  # secrets only in the client configs


def test_auto_picks_confluent_when_importable_and_falls_back_to_kafka_python(monkeypatch):
    assert choose_client(Settings(kafka_client="auto")) == "confluent"
    assert choose_client(Settings(kafka_client="kafka-python")) == "kafka-python"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "confluent_kafka" else real(name))
    assert choose_client(Settings(kafka_client="auto")) == "kafka-python"
    assert choose_client(Settings(kafka_client="confluent")) == "confluent"  # asked for: its import error says so


def test_confluent_messages_become_neutral_records_grouped_by_partition():
    consumer = ConfluentConsumer.__new__(ConfluentConsumer)  # no client: only the conversion runs
    consumer.positions = {}
    messages = [
        Message(topic="e", partition=0, offset=4, key=b"u1", value=b"a", headers=[("h", b"1")], timestamp=(1, 10)),
        Message(topic="e", partition=1, offset=9, key=None, value=b"b", timestamp=(1, 11)),
        Message(error=KafkaError(KafkaError._TRANSPORT)),  # informational: librdkafka retries, the watch decides
        Message(topic="e", partition=0, offset=5, key=b"u2", value=b"c", timestamp=(1, 12)),
    ]
    batch = consumer._records(messages)
    assert batch == {
        TopicPartition("e", 0): [
            Record("e", 0, 4, b"u1", b"a", [("h", b"1")], 10),
            Record("e", 0, 5, b"u2", b"c", [], 12),
        ],
        TopicPartition("e", 1): [Record("e", 1, 9, None, b"b", [], 11)],
    }
    assert consumer.positions == {("e", 0): 6, ("e", 1): 10}  # the next offset poll returns, as kafka-python says


def test_a_fatal_consumer_error_is_raised_as_broker_unavailable():
    consumer = ConfluentConsumer.__new__(ConfluentConsumer)
    consumer.positions, consumer.kafka = {}, Settings().kafka
    fatal = Message(error=KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    with pytest.raises(BrokerUnavailableError, match="fenced"):
        consumer._records([fatal])


class _Client:
    """A producer's poll: runs the delivery reports queued so far (as librdkafka's would)."""

    def __init__(self) -> None:
        self.reports: list[tuple[Delivery, KafkaError | None]] = []
        self.polls = 0

    def poll(self, timeout: float) -> int:
        self.polls += 1
        served, self.reports = self.reports, []
        for delivery, err in served:
            delivery.report(err, None)
        return len(served)


def test_a_pending_delivery_serves_reports_without_blocking_then_tells_success_from_failure():
    client = _Client()
    ok, bad = Delivery(client), Delivery(client)  # type: ignore[arg-type]
    assert not ok.is_done and not ok.failed() and ok.exception is None  # nothing reported yet: pending
    client.reports = [(ok, None), (bad, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))]
    assert ok.is_done and not ok.failed() and ok.exception is None
    assert bad.is_done and bad.failed()
    assert isinstance(bad.exception, KafkaException)
    polls = client.polls
    assert ok.is_done and client.polls == polls  # once done, checking costs no poll


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_an_unreachable_broker_is_broker_unavailable_for_both_clients(client):
    settings = Settings(kafka_bootstrap="127.0.0.1:1", kafka_bootstrap_timeout_seconds=1, kafka_client=client)
    with pytest.raises(
        BrokerUnavailableError, match=r"cannot reach Kafka at 127\.0\.0\.1:1.*LIVELEARN_KAFKA_BOOTSTRAP"
    ):
        make_consumer(settings)
    with pytest.raises(BrokerUnavailableError, match="LIVELEARN_KAFKA_BOOTSTRAP"):
        make_producer(settings)
