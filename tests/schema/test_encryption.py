"""Column encryption (AES-256-GCM with key ids) and password hashing (argon2id)."""
from __future__ import annotations

import json
import uuid
from decimal import Decimal

import psycopg
import pytest

from include.db import mining, privacy, stores, users
from include.db.rotation import keys_in_use, rotate_encryption_keys
from include.security.crypto import DecryptionError, Keyring, KeyringError
from include.security.passwords import hash_password, needs_rehash, verify_password


def _email() -> str:
    return f"Jane.Doe+{uuid.uuid4().hex[:8]}@Example.com"


# ----------------------------------------------------------------------------------- users.email
def test_email_is_not_stored_in_plaintext_and_decrypts(conn, keyring):
    email = _email()
    uid = users.create_user(conn, keyring, email, "s3cret!", "store_manager")
    raw = conn.execute("SELECT email, email_ciphertext, email_key_id, password_hash FROM users WHERE id = %s",
                       (uid,)).fetchone()
    row_text = " ".join(map(str, raw)).lower()
    local = email.split("@")[0].lower()
    assert local not in row_text and "example.com" not in row_text and "@" not in row_text
    assert "s3cret" not in row_text
    assert raw[1].startswith("g1:") and raw[2] == "k1"
    assert users.get_user_by_email(conn, keyring, email.upper()).email == email.lower()
    assert users.get_user(conn, keyring, uid).email == email.lower()


def test_email_stays_unique(conn, keyring):
    email = _email()
    users.create_user(conn, keyring, email, "pw", "admin")
    with pytest.raises(psycopg.errors.UniqueViolation):
        users.create_user(conn, keyring, email.upper(), "pw", "admin")


def test_database_rejects_plaintext_email_and_password(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="users_email_blind_index"):
        conn.execute("""INSERT INTO users (email, email_ciphertext, email_key_id, password_hash, role)
                        VALUES ('bob@example.com', 'g1:AAAA', 'k1', '$argon2id$v=19$x', 'admin')""")
    with pytest.raises(psycopg.errors.CheckViolation, match="users_password_hash_slow"):
        conn.execute("""INSERT INTO users (email, email_ciphertext, email_key_id, password_hash, role)
                        VALUES (%s, 'g1:AAAA', 'k1', 'hunter2', 'admin')""", ("i1:" + "0" * 64,))


def test_ciphertext_is_bound_to_its_row(conn, keyring):
    a = users.create_user(conn, keyring, _email(), "pw", "admin")
    b = users.create_user(conn, keyring, _email(), "pw", "admin")
    conn.execute("UPDATE users SET email_ciphertext = (SELECT email_ciphertext FROM users WHERE id = %s) WHERE id = %s",
                 (a, b))
    with pytest.raises(DecryptionError):
        users.get_user(conn, keyring, b)


# ----------------------------------------------------------------------------------- passwords
def test_argon2id_hashes_and_login(conn, keyring):
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse") and not verify_password(h, "wrong")
    assert not verify_password("not-a-hash", "x")
    assert not needs_rehash(h)
    email = _email()
    uid = users.create_user(conn, keyring, email, "correct horse", "regional_coordinator")
    assert users.authenticate(conn, keyring, email, "wrong") is None
    assert users.authenticate(conn, keyring, "nobody@example.com", "x") is None
    u = users.authenticate(conn, keyring, email, "correct horse")
    assert u.id == uid and u.last_login is not None


# ----------------------------------------------------------------------------------- local_patterns
@pytest.fixture
def encrypted_store(conn):
    s = stores.create_store(conn, "secretive")
    privacy.upsert_privacy_config(conn, s, encrypt_patterns=True)
    return s


def _patterns():
    return [mining.Pattern(["Organic Milk 1L", "Sourdough Bread"], Decimal("12.5"), Decimal("0.1"), Decimal("0.8")),
            mining.Pattern(["Organic Milk 1L"], Decimal("7"), Decimal("0.3"), Decimal(1))]


def test_pattern_items_encrypted_when_the_store_asks(conn, keyring, encrypted_store):
    job = mining.create_job(conn, encrypted_store, Decimal(1), Decimal("0.01"))
    with pytest.raises(mining.EncryptionRequired):
        mining.copy_local_patterns(conn, job, encrypted_store, _patterns())
    assert mining.copy_local_patterns(conn, job, encrypted_store, _patterns(), keyring=keyring) == 2
    raw = conn.execute("SELECT pattern_items, items_key_id, pattern_length FROM local_patterns WHERE store_id = %s",
                       (encrypted_store,)).fetchall()
    text = json.dumps([r[0] for r in raw])
    assert "Milk" not in text and "Sourdough" not in text
    assert all(i.startswith("g1:") for r in raw for i in r[0]) and {r[1] for r in raw} == {"k1"}
    assert sorted(r[2] for r in raw) == [1, 2]
    got = mining.read_local_patterns(conn, encrypted_store, keyring=keyring)
    assert [p.items for p in got] == [["Organic Milk 1L", "Sourdough Bread"], ["Organic Milk 1L"]]


def test_database_refuses_plaintext_patterns_for_an_encrypting_store(conn, encrypted_store):
    job = mining.create_job(conn, encrypted_store, Decimal(1), Decimal("0.01"))
    with pytest.raises(psycopg.errors.CheckViolation, match="must be encrypted"):
        conn.execute("""INSERT INTO local_patterns (mining_job_id, store_id, pattern_items, utility, support,
                        confidence, pattern_length) VALUES (%s, %s, '{milk}', 1, 1, 1, 1)""", (job, encrypted_store))


def test_plaintext_patterns_for_other_stores(conn, keyring):
    s = stores.create_store(conn, "open")
    job = mining.create_job(conn, s, Decimal(1), Decimal("0.01"))
    mining.copy_local_patterns(conn, job, s, _patterns())
    assert conn.execute("SELECT DISTINCT items_key_id FROM local_patterns WHERE store_id = %s", (s,)).fetchall() == [(None,)]


# ----------------------------------------------------------------------------------- rotation
def test_key_rotation(migrated_dsn, keyring):
    k1 = keyring
    with psycopg.connect(migrated_dsn, autocommit=True) as c:
        emails = [_email() for _ in range(3)]
        uids = [users.create_user(c, k1, e, "pw", "store_manager") for e in emails]
        s = stores.create_store(c, "rotating")
        privacy.upsert_privacy_config(c, s, encrypt_patterns=True)
        job = mining.create_job(c, s, Decimal(1), Decimal("0.01"))
        mining.copy_local_patterns(c, job, s, _patterns(), keyring=k1)
        before = dict(c.execute("SELECT id, email_ciphertext FROM users").fetchall())

        k2 = k1.with_new_active_key("k2")
        counts = rotate_encryption_keys(c, k2)
        assert counts == {"users": 3, "local_patterns": 2}
        assert keys_in_use(c) == {"k2": 5}
        after = dict(c.execute("SELECT id, email_ciphertext FROM users").fetchall())
        assert all(after[u] != before[u] for u in uids)

        k2_only = k2.without_key("k1")
        assert [users.get_user_by_email(c, k2_only, e).email for e in emails] == [e.lower() for e in emails]
        assert {tuple(p.items) for p in mining.read_local_patterns(c, s, keyring=k2_only)} == \
            {("Organic Milk 1L", "Sourdough Bread"), ("Organic Milk 1L",)}
        with pytest.raises(KeyringError, match="'k2' is not in the keyring"):
            users.get_user(c, k1, uids[0])
        assert rotate_encryption_keys(c, k2) == {"users": 0, "local_patterns": 0}


def test_rotating_the_blind_index_key(migrated_dsn, keyring):
    with psycopg.connect(migrated_dsn, autocommit=True) as c:
        e = _email()
        users.create_user(c, keyring, e, "pw", "admin")
        new_index = Keyring(dict(keyring.keys), keyring.active_key_id, Keyring.generate().index_key, "i2")
        assert rotate_encryption_keys(c, new_index)["users"] == 1
        assert users.get_user_by_email(c, new_index, e) is not None
        assert users.get_user_by_email(c, keyring, e) is None


# ----------------------------------------------------------------------------------- keyring
def test_keyring_from_connection_and_never_printed(monkeypatch):
    kr = Keyring.generate("k7")
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_ENCRYPTION", json.dumps({"conn_type": "generic", "extra": kr.to_dict()}))
    loaded = Keyring.from_connection()
    assert loaded.active_key_id == "k7" and loaded.keys == kr.keys and loaded.index_key == kr.index_key
    text = repr(loaded) + str(loaded)
    for secret in [*kr.to_dict()["keys"].values(), kr.to_dict()["index_key"]]:
        assert secret not in text
    monkeypatch.delenv("AIRFLOW_CONN_PLATFORM_ENCRYPTION")
    with pytest.raises(KeyringError, match="AIRFLOW_CONN_PLATFORM_ENCRYPTION is not set"):
        Keyring.from_connection()


def test_keyring_validation():
    with pytest.raises(KeyringError, match="32"):
        Keyring({"k1": b"short"}, "k1", b"x" * 32)
    with pytest.raises(KeyringError, match="active key id"):
        Keyring({"k1": b"x" * 32}, "k2", b"x" * 32)
