"""Which Kafka client to use, and the settings each one is given (no I/O here).

One set of settings (``LIVELEARN_KAFKA_*``) maps to each library's own names: kafka-python takes keyword
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

from streaming.config import Settings

__all__ = ["Client", "choose_client", "confluent_config", "kafka_python_config"]

Client = Literal["confluent", "kafka-python"]


def choose_client(settings: Settings) -> Client:
    """``LIVELEARN_KAFKA_CLIENT``, with ``auto`` meaning confluent-kafka when it can be imported."""
    if settings.kafka_client != "auto":
        return settings.kafka_client
    return "confluent" if importlib.util.find_spec("confluent_kafka") is not None else "kafka-python"


def kafka_python_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by every kafka-python client this process creates."""
    options: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in settings.kafka_bootstrap.split(",") if s.strip()],
        "security_protocol": settings.kafka_security_protocol,
        "client_id": f"livelearn-{settings.model_name}",
        "bootstrap_timeout_ms": int(settings.kafka_bootstrap_timeout_seconds * 1000),
    }
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    ssl = {
        "ssl_cafile": settings.kafka_ssl_cafile,
        "ssl_certfile": settings.kafka_ssl_certfile,
        "ssl_keyfile": settings.kafka_ssl_keyfile,
        "ssl_password": _secret(settings.kafka_ssl_key_password),
    }
    options.update({name: value for name, value in ssl.items() if value is not None})
    return options


def confluent_config(settings: Settings) -> dict[str, Any]:
    """librdkafka properties shared by every confluent-kafka client this process creates."""
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(s.strip() for s in settings.kafka_bootstrap.split(",") if s.strip()),
        "security.protocol": settings.kafka_security_protocol,
        "client.id": f"livelearn-{settings.model_name}",
        "socket.connection.setup.timeout.ms": int(settings.kafka_bootstrap_timeout_seconds * 1000),
    }
    optional = {
        "sasl.mechanisms": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username if settings.kafka_sasl_mechanism else None,
        "sasl.password": _secret(settings.kafka_sasl_password) if settings.kafka_sasl_mechanism else None,
        "ssl.ca.location": settings.kafka_ssl_cafile,
        "ssl.certificate.location": settings.kafka_ssl_certfile,
        "ssl.key.location": settings.kafka_ssl_keyfile,
        "ssl.key.password": _secret(settings.kafka_ssl_key_password),
    }
    config.update({name: value for name, value in optional.items() if value is not None})
    return config


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())
