"""Live state in the real Redis: progress, locks, the server_configs cache, sessions, revoked tokens."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from include.db.configs import set_config
from include.search.live import (ConfigCache, LockBusy, PlatformLock, Sessions, TokenRevocations, ingest_progress,
                                 round_progress)


def _all_keys_have_ttl(r, ns: str) -> None:
    keys = list(r.scan_iter(f"{ns}:*"))
    assert keys
    assert all(r.ttl(k) > 0 for k in keys), {k: r.ttl(k) for k in keys}


def test_round_and_ingestion_progress_with_ttls(redis_conn, rns):
    rid = uuid.uuid4()
    p = round_progress(redis_conn, rid, ns=rns)
    p.update(phase="share_keys", invited=3, level=1)
    assert p.answered("share_keys", "store:a") == 1
    assert p.answered("share_keys", "store:b") == 2
    assert p.answered("share_keys", "store:a") == 2      # idempotent
    got = p.get()
    assert got["phase"] == "share_keys" and got["invited"] == "3"
    assert got["answered"] == {"share_keys": ["store:a", "store:b"]}
    i = ingest_progress(redis_conn, uuid.uuid4(), ns=rns)
    i.update(phase="validating", rows_read=1000)
    assert i.incr("rows_rejected", 4) == 4
    _all_keys_have_ttl(redis_conn, rns)


def test_lock_is_exclusive_and_expires_with_its_ttl(redis_conn, rns):
    a = PlatformLock(redis_conn, "round:region:eu", ttl_s=1, ns=rns).acquire()
    with pytest.raises(LockBusy, match="round:region:eu"):
        PlatformLock(redis_conn, "round:region:eu", ttl_s=1, ns=rns).acquire()
    assert 0 < redis_conn.pttl(f"{rns}:lock:round:region:eu") <= 1000
    time.sleep(1.3)                                   # the holder "died": the TTL frees the lock
    b = PlatformLock(redis_conn, "round:region:eu", ttl_s=30, ns=rns).acquire()
    a.release()                                       # not the owner any more: must not free b's lock
    assert redis_conn.exists(f"{rns}:lock:round:region:eu")
    b.release()
    assert not redis_conn.exists(f"{rns}:lock:round:region:eu")
    with PlatformLock(redis_conn, "mining:store:x", ttl_s=30, ns=rns):
        assert redis_conn.ttl(f"{rns}:lock:mining:store:x") > 0


def test_config_cache_is_invalidated_on_every_change(redis_conn, rns, fresh_dsn):
    cache = ConfigCache(redis_conn, ns=rns)
    with psycopg.connect(fresh_dsn, autocommit=True) as reader, psycopg.connect(fresh_dsn) as writer:
        first = cache.get_all(reader)
        assert first["max_pattern_length"] == 0 and cache.misses == 1
        assert cache.get(reader, "max_pattern_length") == 0 and cache.hits == 1
        assert 0 < redis_conn.ttl(f"{rns}:configs") <= 3600
        set_config(writer, "max_pattern_length", 4)
        writer.commit()
        assert cache.get(reader, "max_pattern_length") == 4 and cache.misses == 2
        set_config(writer, "search_test_flag", True, description="test")
        writer.commit()
        assert cache.get(reader, "search_test_flag") is True
        # the LISTEN path: a notification drops the cached copy (for readers that skip the version check)
        handled = []
        t = threading.Thread(target=lambda: handled.append(cache.listen(fresh_dsn, stop_after_s=20, max_events=1)))
        t.start()
        time.sleep(1.0)
        assert redis_conn.exists(f"{rns}:configs")
        writer.execute("DELETE FROM server_configs WHERE config_key = 'search_test_flag'")
        writer.commit()
        t.join(25)
        assert handled == [1] and not redis_conn.exists(f"{rns}:configs")
        assert "search_test_flag" not in cache.get_all(reader, check_version=False)


def test_revoked_tokens_survive_a_redis_flush_and_expire_with_the_token(redis_conn, rns, fresh_dsn):
    revs = TokenRevocations(redis_conn, ns=rns)
    exp = datetime.now(timezone.utc) + timedelta(minutes=30)
    with psycopg.connect(fresh_dsn) as conn:
        revs.revoke(conn, "jti-1", exp, reason="logout")
        revs.revoke(conn, "jti-old", datetime.now(timezone.utc) - timedelta(minutes=1))
        conn.commit()
        assert revs.is_revoked(conn, "jti-1") and not revs.is_revoked(conn, "jti-2")
        assert not revs.is_revoked(conn, "jti-old")          # expired: nothing to keep
        assert 0 < redis_conn.ttl(f"{rns}:revoked:jti-1") <= 30 * 60 + 1
        redis_conn.delete(*redis_conn.scan_iter(f"{rns}:*"))  # Redis lost everything
        assert revs.is_revoked(conn, "jti-1")                 # reloaded from token_revocations
        assert redis_conn.exists(f"{rns}:revoked:__loaded__")
        assert TokenRevocations.purge_expired(conn) == 1
        conn.commit()


def test_sessions_slide_and_end(redis_conn, rns):
    s = Sessions(redis_conn, ns=rns, ttl_s=60)
    user = uuid.uuid4()
    a = s.create(user, {"role": "store_manager", "store_id": "s1"})
    b = s.create(user, ttl_s=10)
    assert s.get(a)["role"] == "store_manager" and redis_conn.ttl(f"{rns}:session:{a}") > 50
    assert redis_conn.ttl(f"{rns}:session:{b}") <= 10
    s.end(a)
    assert s.get(a) is None and s.get(b) is not None
    assert s.end_user(user) == 1 and s.get(b) is None
