"""Password hashing for ``users.password_hash``: argon2id (argon2-cffi, RFC 9106 low-memory profile).

The database accepts only encoded argon2/bcrypt hashes (CHECK ``users_password_hash_slow``).
"""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2-cffi's defaults: time_cost=3, memory_cost=64 MiB, parallelism=4, 16-byte salt, 32-byte hash
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("password must not be empty")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; False on mismatch or a malformed hash (never raises for those)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's (rehash at next login)."""
    return _hasher.check_needs_rehash(password_hash)
