"""Redis: the live progress of a round and the lock allowing one running round per region.

Nothing lives only here: the round's state of record is ``federated_rounds`` (status, phase, error).
The lock has a TTL so a crashed coordinator cannot block its region for ever.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

# key names of the platform's live-state conventions (include/search/live.py): progress of kind
# "round", the lock "round:region:<region>"
LOCK_KEY = "platform:lock:round:region:{region}"
PROGRESS_KEY = "platform:progress:round:{round_id}"
PROGRESS_TTL = 24 * 3600

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


def redis_client(conn_extra_or_url):
    import redis

    if isinstance(conn_extra_or_url, str):
        return redis.Redis.from_url(conn_extra_or_url, socket_timeout=10)
    c = conn_extra_or_url
    from include.connections import redis_ssl_kwargs

    # TLS mode: the connection's ssl* extras ride along in the settings dict (docs/tls.md)
    return redis.Redis(host=c.get("host", "127.0.0.1"), port=int(c.get("port") or 6379), db=int(c.get("db", 0)),
                       password=c.get("password"), socket_timeout=10, **redis_ssl_kwargs(c))


class RoundLive:
    def __init__(self, client, round_id: str) -> None:
        self.r = client
        self.round_id = str(round_id)
        self.key = PROGRESS_KEY.format(round_id=self.round_id)
        self._phase: str | None = None

    def acquire(self, region: str, ttl_seconds: int) -> str | None:
        """Take the region's lock for this round; returns None, or the round holding it."""
        key = LOCK_KEY.format(region=region)
        if self.r.set(key, self.round_id, nx=True, ex=int(ttl_seconds)):
            return None
        holder = self.r.get(key)
        holder = holder.decode() if isinstance(holder, bytes) else holder
        if holder == self.round_id:          # a retried task of the same round
            self.r.expire(key, int(ttl_seconds))
            return None
        return holder or "?"

    def release(self, region: str) -> bool:
        return bool(self.r.eval(_RELEASE, 1, LOCK_KEY.format(region=region), self.round_id))

    def progress(self, **fields) -> None:
        """Update the round's hash (phase, level, ...); ``answered`` (a list of parties) also fills the
        set ``<key>:answered:<phase>`` and the count ``answered_<phase>``."""
        answered = fields.pop("answered", None)
        data = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in fields.items() if v is not None}
        data["updated_at"] = datetime.now(timezone.utc).isoformat()
        phase = fields.get("phase") or self._phase
        self._phase = phase
        pipe = self.r.pipeline()
        if answered is not None and phase:
            akey = f"{self.key}:answered:{phase}"
            if answered:
                pipe.sadd(akey, *answered)
            pipe.expire(akey, PROGRESS_TTL)
            data[f"answered_{phase}"] = str(len(answered))
        pipe.hset(self.key, mapping=data)
        pipe.expire(self.key, PROGRESS_TTL)
        pipe.execute()

    def read(self) -> dict:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(self.key).items()}
