"""Airflow's own keys (issue 12 item 4: JWT signing key, Fernet key, session secret) come from the stack's
secrets through Airflow's ``_CMD`` options, never from airflow.cfg or a plain environment variable; a key
airflow.cfg already held is adopted, not replaced, and then blanked there (scripts/settings.py)."""
from __future__ import annotations

import base64
import importlib.util
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"API_AUTH__JWT_SECRET": ("api_auth", "jwt_secret"), "CORE__FERNET_KEY": ("core", "fernet_key"),
        "API__SECRET_KEY": ("api", "secret_key")}


def airflow_config(section: str, key: str) -> str:
    """The value the real Airflow config resolves (a subprocess: this process may have it cached)."""
    code = f"from airflow.configuration import conf; import sys; sys.stdout.write(conf.get({section!r}, {key!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout


def load_settings_module(monkeypatch, state: Path):
    """A fresh copy of scripts/settings.py bound to ``state`` as its PLATFORM_STATE_DIR."""
    monkeypatch.setenv("PLATFORM_STATE_DIR", str(state))
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    spec = importlib.util.spec_from_file_location("settings_under_test", ROOT / "scripts" / "settings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("option", sorted(KEYS))
def test_the_stack_reads_each_key_from_its_secret_file(option):
    section, key = KEYS[option]
    assert f"AIRFLOW__{option}" not in os.environ, "a plain variable would put the key in every process's environment"
    cmd = shlex.split(os.environ[f"AIRFLOW__{option}_CMD"])
    assert cmd[0] == "cat" and len(cmd) == 2
    f = Path(cmd[1])
    assert f.parent.name == "secrets" and stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700
    value = f.read_text()
    assert len(value) >= 24 and value == value.strip()
    assert airflow_config(section, key) == value
    cfg = Path(os.environ["AIRFLOW_HOME"]) / "airflow.cfg"
    assert value not in cfg.read_text(), f"{section}.{key} is still in {cfg}"


def test_the_fernet_key_is_a_valid_key_airflow_uses():
    from cryptography.fernet import Fernet

    key = airflow_config("core", "fernet_key")
    assert len(base64.urlsafe_b64decode(key)) == 32
    code = ("from airflow.models.crypto import get_fernet; import sys;"
            "sys.stdout.write(get_fernet().encrypt(b'round 7').decode())")
    token = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert Fernet(key.encode()).decrypt(token.encode()) == b"round 7"


def test_keys_in_an_existing_airflow_cfg_are_adopted_then_blanked(tmp_path, monkeypatch):
    (tmp_path / "airflow").mkdir()
    cfg = tmp_path / "airflow" / "airflow.cfg"
    fernet = base64.urlsafe_b64encode(b"k" * 32).decode()
    cfg.write_text("[core]\ndags_folder = /x\nfernet_key = " + fernet + "\n\n[api]\nsecret_key = s3ss10n\n"
                   "port = 8080\n\n[api_auth]\njwt_expiration_time = 86400\njwt_secret = jwt-from-cfg\n"
                   "\n[fab]\nsecret_key = not-ours\n")
    os.chmod(cfg, 0o640)
    s = load_settings_module(monkeypatch, tmp_path)
    files = s.airflow_key_files()
    assert {o: f.read_text() for o, f in files.items()} == {
        "CORE__FERNET_KEY": fernet, "API__SECRET_KEY": "s3ss10n", "API_AUTH__JWT_SECRET": "jwt-from-cfg"}
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files.values())
    assert sorted(s.blank_airflow_cfg_keys()) == ["api.secret_key", "api_auth.jwt_secret", "core.fernet_key"]
    text = cfg.read_text()
    assert "fernet_key =\n" in text and "jwt_secret =\n" in text and "[api]\nsecret_key =\nport = 8080" in text
    assert "secret_key = not-ours" in text and "dags_folder = /x" in text   # other sections untouched
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640
    assert s.blank_airflow_cfg_keys() == []                                   # idempotent
    # the files are kept: a second call (after blanking) does not replace the adopted keys
    assert s.airflow_key_files()["CORE__FERNET_KEY"].read_text() == fernet


def test_fresh_keys_when_there_is_no_airflow_cfg(tmp_path, monkeypatch):
    s = load_settings_module(monkeypatch, tmp_path)
    a = {o: f.read_text() for o, f in s.airflow_key_files().items()}
    assert len(base64.urlsafe_b64decode(a["CORE__FERNET_KEY"])) == 32
    assert len(set(a.values())) == 3 and all(len(v) >= 32 for v in a.values())
    assert s.blank_airflow_cfg_keys() == []
    other = load_settings_module(monkeypatch, tmp_path / "other")
    assert not set(a.values()) & {f.read_text() for f in other.airflow_key_files().values()}
