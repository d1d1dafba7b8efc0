"""Clients of Elasticsearch and Redis for code outside Airflow, and the health checks that turn an
outage into one clear error naming the service.

Inside Airflow tasks build the clients with the provider hooks (``ElasticsearchSQLHook(...).get_conn().es``,
``RedisHook(...).get_conn()``) and pass them to the functions of this package; everything here takes a
client, so both paths run the same code.

The local Elasticsearch is the integ-test-zip: ``GET /`` answers 405, so ``ping()``/``info()`` cannot be
used; health is ``_cluster/health``.
"""
from __future__ import annotations

from typing import Any

from include.connections import ELASTICSEARCH, REDIS, es_tls_kwargs, get_connection, redis_ssl_kwargs


class ServiceUnavailable(RuntimeError):
    """Elasticsearch or Redis cannot be reached (or answered with an error); the message names it."""

    def __init__(self, service: str, where: str, detail: str):
        self.service, self.where, self.detail = service, where, detail
        super().__init__(f"{service} is unavailable at {where}: {detail}")


def es_url(conn_id: str = ELASTICSEARCH) -> str:
    c = get_connection(conn_id)
    scheme = c.schema if c.schema in ("http", "https") else c.extra.get("scheme", "http")
    return f"{scheme}://{c.host or '127.0.0.1'}:{c.port or 9200}"


def es_client(conn_id: str = ELASTICSEARCH, *, url: str | None = None, request_timeout: float = 30.0,
              max_retries: int = 2):
    """An elasticsearch-py 8 client for connection ``conn_id`` (or ``url``)."""
    from elasticsearch import Elasticsearch

    kwargs: dict[str, Any] = {"request_timeout": request_timeout, "max_retries": max_retries,
                              "retry_on_timeout": True}
    if url is None:
        c = get_connection(conn_id)
        url = es_url(conn_id)
        if c.login:
            kwargs["basic_auth"] = (c.login, c.password or "")
        kwargs.update(es_tls_kwargs(c.extra))  # TLS mode: the project CA (docs/tls.md)
    return Elasticsearch(url, **kwargs)


def redis_client(conn_id: str = REDIS, *, socket_timeout: float = 5.0):
    """A redis-py client for connection ``conn_id`` (strings decoded)."""
    import redis

    c = get_connection(conn_id)
    return redis.Redis(host=c.host or "127.0.0.1", port=c.port or 6379, db=int(c.extra.get("db", 0)),
                       username=c.login or None, password=c.password or None, decode_responses=True,
                       socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                       **redis_ssl_kwargs(c.extra))  # TLS mode: ssl + ssl_ca_certs (docs/tls.md)


def describe_es(es) -> str:
    """host:port list of a client (for error messages; never credentials)."""
    try:
        nodes = es.transport.node_pool.all()
        return ",".join(f"{n.config.scheme}://{n.config.host}:{n.config.port}" for n in nodes)
    except Exception:  # noqa: BLE001 - best effort description
        return "<elasticsearch>"


def describe_redis(r) -> str:
    try:
        kw = r.connection_pool.connection_kwargs
        scheme = "rediss" if r.connection_pool.connection_class.__name__ == "SSLConnection" else "redis"
        return f"{scheme}://{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}"
    except Exception:  # noqa: BLE001
        return "<redis>"


def check_es(es, *, timeout: str = "5s") -> dict:
    """``_cluster/health``; raises :class:`ServiceUnavailable` naming Elasticsearch when it is down or red."""
    from elasticsearch import ApiError, TransportError

    try:
        health = es.options(request_timeout=10, max_retries=0).cluster.health(timeout=timeout)
    except (TransportError, ApiError, OSError) as e:
        raise ServiceUnavailable("Elasticsearch", describe_es(es), f"{type(e).__name__}: {e}") from e
    body = dict(health.body if hasattr(health, "body") else health)
    if body.get("status") == "red":
        raise ServiceUnavailable("Elasticsearch", describe_es(es), "cluster health is red")
    return body


def check_redis(r) -> None:
    """PING; raises :class:`ServiceUnavailable` naming Redis when it is down."""
    import redis

    try:
        r.ping()
    except (redis.RedisError, OSError) as e:
        raise ServiceUnavailable("Redis", describe_redis(r), f"{type(e).__name__}: {e}") from e
