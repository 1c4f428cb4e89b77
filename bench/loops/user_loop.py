"""The loop a user would write instead of livelearn: confluent-kafka + msgpack + river, a prediction produced
for every event before it is learned. No livelearn code: river's primitives, as ``tests/reference.py`` builds them.

Run by ``bench/learner.py``: ``python bench/loops/user_loop.py BOOTSTRAP TOPIC PREDICTIONS_TOPIC N``. Reads the N
events of partition 0 from its start, then flushes its predictions and exits.
"""

from __future__ import annotations

import numbers
import sys

import msgpack
from confluent_kafka import Consumer, Producer, TopicPartition
from river import compose, linear_model, optim, preprocessing


def pipeline() -> compose.Pipeline:
    return compose.Pipeline(
        compose.TransformerUnion(
            compose.SelectType(numbers.Number) | preprocessing.StandardScaler(),
            compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True),
        ),
        linear_model.LogisticRegression(optimizer=optim.SGD(0.01)),
    )


def main() -> None:
    bootstrap, topic, predictions, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-user-loop", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    model = pipeline()
    seen = 0
    while seen < n:
        for message in consumer.consume(num_messages=1000, timeout=1.0):
            if message.error():
                continue
            event = msgpack.unpackb(message.value(), raw=False)
            x = {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in event["features"].items()}
            p = model.predict_proba_one(x).get(True, 0.0)
            doc = {"event_id": event["event_id"], "probability": p, "label": p > 0.5}
            while True:
                try:
                    producer.produce(predictions, msgpack.packb(doc), key=message.key())
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            if event.get("label") is not None:
                model.learn_one(x, event["label"])
            seen += 1
    producer.flush()
    consumer.close()


if __name__ == "__main__":
    main()
