"""Which Kafka client to use, and the kafka each one is given (no I/O here).

One set of kafka (``LIVELEARN_KAFKA_*``) maps to each library's own names: kafka-python takes keyword
arguments, confluent-kafka (librdkafka) takes a dict of dotted properties.

>>> from pydantic import SecretStr
>>> s = Settings(kafka_bootstrap="k1:9093,k2:9093", kafka_security_protocol="SASL_SSL",
...              kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="app",
...              kafka_sasl_password=SecretStr("pw"), kafka_ssl_cafile="/etc/ca.pem")
>>> c = confluent_config(s)
>>> c["bootstrap.servers"], c["security.protocol"], c["sasl.mechanisms"], c["sasl.password"], c["ssl.ca.location"]
('k1:9093,k2:9093', 'SASL_SSL', 'SCRAM-SHA-512', 'pw', '/etc/ca.pem')
>>> k = kafka_python_config(s)
>>> k["bootstrap_servers"], k["sasl_mechanism"], k["sasl_plain_password"], k["ssl_cafile"]
(['k1:9093', 'k2:9093'], 'SCRAM-SHA-512', 'pw', '/etc/ca.pem')
>>> choose_client(Settings(kafka_client="kafka-python"))
'kafka-python'
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from streaming.config import KafkaSettings, Settings

__all__ = ["Client", "choose_client", "confluent_config", "kafka_python_config"]

Client = Literal["confluent", "kafka-python"]


def choose_client(settings: KafkaSettings | Settings) -> Client:
    """``LIVELEARN_KAFKA_CLIENT``, with ``auto`` meaning confluent-kafka when it can be imported."""
    kafka = KafkaSettings.of(settings)
    if kafka.client != "auto":
        return kafka.client
    return "confluent" if importlib.util.find_spec("confluent_kafka") is not None else "kafka-python"


def kafka_python_config(settings: KafkaSettings | Settings) -> dict[str, Any]:
    """Keyword arguments shared by every kafka-python client this process creates."""
    kafka = KafkaSettings.of(settings)
    options: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in kafka.bootstrap.split(",") if s.strip()],
        "security_protocol": kafka.security_protocol,
        "client_id": f"livelearn-{kafka.model_name}",
        "bootstrap_timeout_ms": int(kafka.bootstrap_timeout_seconds * 1000),
    }
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    ssl = {
        "ssl_cafile": kafka.ssl_cafile,
        "ssl_certfile": kafka.ssl_certfile,
        "ssl_keyfile": kafka.ssl_keyfile,
        "ssl_password": _secret(kafka.ssl_key_password),
    }
    options.update({name: value for name, value in ssl.items() if value is not None})
    return options


def confluent_config(settings: KafkaSettings | Settings) -> dict[str, Any]:
    """librdkafka properties shared by every confluent-kafka client this process creates."""
    kafka = KafkaSettings.of(settings)
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(s.strip() for s in kafka.bootstrap.split(",") if s.strip()),
        "security.protocol": kafka.security_protocol,
        "client.id": f"livelearn-{kafka.model_name}",
        "socket.connection.setup.timeout.ms": int(kafka.bootstrap_timeout_seconds * 1000),
    }
    optional = {
        "sasl.mechanisms": kafka.sasl_mechanism,
        "sasl.username": kafka.sasl_username if kafka.sasl_mechanism else None,
        "sasl.password": _secret(kafka.sasl_password) if kafka.sasl_mechanism else None,
        "ssl.ca.location": kafka.ssl_cafile,
        "ssl.certificate.location": kafka.ssl_certfile,
        "ssl.key.location": kafka.ssl_keyfile,
        "ssl.key.password": _secret(kafka.ssl_key_password),
    }
    config.update({name: value for name, value in optional.items() if value is not None})
    return config


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())
