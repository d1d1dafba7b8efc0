"""Smoke tests of each real service through the same provider hooks the DAGs use."""
from __future__ import annotations

import json
import time
import uuid

from include import connections


def test_postgres_hook_queries_the_platform_database():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=connections.POSTGRES)
    (user, db, ssl_port), = hook.get_records("SELECT current_user, current_database(), inet_server_port()")
    assert (user, db) == ("platform", "platform")
    assert ssl_port == hook.get_connection(connections.POSTGRES).port
    # psycopg 3 is the driver the hook picked (COPY for bulk loads depends on it)
    with hook.get_conn() as conn:
        assert type(conn).__module__.startswith("psycopg")


def test_s3_hook_put_and_get_roundtrip(bucket):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=connections.S3)
    key = f"smoke/{uuid.uuid4()}.txt"
    hook.load_string("utilité 12.50\n", key=key, bucket_name=bucket)
    try:
        assert hook.check_for_key(key, bucket_name=bucket)
        assert hook.read_key(key, bucket_name=bucket) == "utilité 12.50\n"
        assert key in hook.list_keys(bucket_name=bucket, prefix="smoke/")
    finally:
        hook.delete_objects(bucket, [key])
    assert not hook.check_for_key(key, bucket_name=bucket)


def test_kafka_hooks_create_produce_consume():
    from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook
    from airflow.providers.apache.kafka.hooks.consume import KafkaConsumerHook
    from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook

    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClientHook(kafka_config_id=connections.KAFKA)
    admin.create_topic([(topic, 1, 1)])
    try:
        producer = KafkaProducerHook(kafka_config_id=connections.KAFKA_PRODUCER).get_producer()
        sent = [{"n": i, "id": str(uuid.uuid4())} for i in range(20)]
        for m in sent:
            producer.produce(topic, key=m["id"].encode(), value=json.dumps(m).encode())
        assert producer.flush(30) == 0
        consumer = KafkaConsumerHook(topics=[topic], kafka_config_id=connections.KAFKA).get_consumer()
        got, deadline = [], time.monotonic() + 60
        try:
            while len(got) < len(sent) and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is not None and msg.error() is None:
                    got.append(json.loads(msg.value()))
        finally:
            consumer.close()
        assert got == sent
    finally:
        admin.delete_topic([topic])


def test_elasticsearch_hook_index_and_search():
    from airflow.providers.elasticsearch.hooks.elasticsearch import ElasticsearchSQLHook

    es = ElasticsearchSQLHook(elasticsearch_conn_id=connections.ELASTICSEARCH).get_conn().es
    index = f"smoke-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=index, settings={"number_of_replicas": 0},
                      mappings={"properties": {"items": {"type": "keyword"}, "utility": {"type": "long"}}})
    try:
        es.index(index=index, id="1", document={"items": ["wine", "cheese"], "utility": 1200}, refresh=True)
        es.index(index=index, id="2", document={"items": ["bread"], "utility": 30}, refresh=True)
        hits = es.search(index=index, query={"term": {"items": "cheese"}})["hits"]["hits"]
        assert [h["_id"] for h in hits] == ["1"]
        assert es.cluster.health(index=index)["status"] == "green"
    finally:
        es.indices.delete(index=index)


def test_redis_hook_set_get_with_ttl():
    from airflow.providers.redis.hooks.redis import RedisHook

    r = RedisHook(redis_conn_id=connections.REDIS).get_conn()
    key = f"smoke:{uuid.uuid4()}"
    assert r.set(key, "phase=share_keys", ex=60)
    assert r.get(key) == b"phase=share_keys"
    assert 0 < r.ttl(key) <= 60
    r.delete(key)
    assert r.get(key) is None
