"""Every route x each role x target (own / other / missing) -> the expected status, from ONE table,
against the real api-server. Also: no token -> 401 everywhere, and one activity_logs row per request.

Targets: a store manager's own store is a, other b; the coordinator of r1 owns a (and c), other is b of
r2; an admin's "own" is a, "other" b; missing is an id that does not exist. Files and rounds follow
their store/region. Row ``file_cross`` asks for another store's file under the caller's own store path
(row-level security hides it: 404)."""
from __future__ import annotations

import uuid

import pytest

SM, CO, AD = "sm_a", "coord_r1", "admin"
ALL_OK = {SM: (200, 200, 200), CO: (200, 200, 200), AD: (200, 200, 200)}
STORE_ONLY = {SM: (200, 403, 404), CO: (403, 403, 403), AD: (200, 200, 404)}
DENIED = (403, 403, 403)

#  name             method  path                                       expected {role: (own, other, missing)}
MATRIX = [
    ("me",            "GET",  "/me",                                      ALL_OK),
    ("stores",        "GET",  "/stores",                                  ALL_OK),
    ("store",         "GET",  "/stores/{store}",                          {SM: (200, 403, 404), CO: (200, 403, 404),
                                                                           AD: (200, 200, 404)}),
    ("files",         "GET",  "/stores/{store}/files",                    STORE_ONLY),
    ("upload",        "POST", "/stores/{store}/files?filename=day.csv",   {SM: (201, 403, 404), CO: DENIED,
                                                                           AD: (201, 201, 404)}),
    ("file",          "GET",  "/stores/{store}/files/{file}",             STORE_ONLY),
    ("file_cross",    "GET",  "/stores/{own}/files/{file}",               {SM: (200, 404, 404), CO: DENIED,
                                                                           AD: (200, 404, 404)}),
    ("rejects",       "GET",  "/stores/{store}/files/{file}/rejects",     STORE_ONLY),
    ("mine",          "POST", "/stores/{store}/mining-jobs",              {SM: (202, 403, 404), CO: DENIED,
                                                                           AD: (202, 202, 404)}),
    ("mining_jobs",   "GET",  "/stores/{store}/mining-jobs",              STORE_ONLY),
    ("patterns",      "GET",  "/stores/{store}/patterns",                 STORE_ONLY),
    ("privacy",       "GET",  "/stores/{store}/privacy",                  STORE_ONLY),
    ("ledger",        "GET",  "/stores/{store}/privacy/ledger",           STORE_ONLY),
    ("start_round",   "POST", "/rounds",                                  {SM: DENIED, CO: (202, 403, 403),
                                                                           AD: (202, 202, 422)}),
    ("rounds",        "GET",  "/rounds",                                  {SM: DENIED, CO: (200, 200, 200),
                                                                           AD: (200, 200, 200)}),
    ("round",         "GET",  "/rounds/{round}",                          {SM: DENIED, CO: (200, 403, 404),
                                                                           AD: (200, 200, 404)}),
    ("round_patterns", "GET", "/rounds/{round}/patterns",                 {SM: DENIED, CO: (200, 403, 404),
                                                                           AD: (200, 200, 404)}),
    ("configs",       "GET",  "/configs",                                 {SM: DENIED, CO: DENIED, AD: (200, 200, 200)}),
    ("set_config",    "PUT",  "/configs/{key}",                           {SM: DENIED, CO: DENIED, AD: (200, 200, 404)}),
]
TARGETS = ("own", "other", "missing")
CASES = [pytest.param(name, method, path, who, t, exp[who][i], id=f"{name}-{who}-{t}")
         for name, method, path, exp in MATRIX for who in (SM, CO, AD) for i, t in enumerate(TARGETS)]


def request_for(world, name: str, path: str, target: str) -> tuple[str, dict]:
    """The path and request kwargs of one cell."""
    store = {"own": world.stores["a"], "other": world.stores["b"], "missing": uuid.uuid4()}[target]
    file = {"own": world.files["a"], "other": world.files["b"], "missing": uuid.uuid4()}[target]
    rnd = {"own": world.rounds["r1"], "other": world.rounds["r2"], "missing": uuid.uuid4()}[target]
    key = "no_such_key" if target == "missing" else "api_max_upload_mb"
    path = path.format(store=store, own=world.stores["a"], file=file, round=rnd, key=key)
    kw: dict = {}
    if name == "upload":
        kw = {"data": f"transaction_id,item,quantity,unit_utility\n{uuid.uuid4().hex},tea,1,2.5\n".encode(),
              "headers": {"Content-Type": "text/csv"}}
    elif name == "mine":
        kw = {"json": {"min_utility_ratio": 0.01}}
    elif name == "start_round":
        ids = {"own": [world.stores["a"], world.stores["c"]], "other": [world.stores["b"]],
               "missing": [uuid.uuid4(), world.stores["a"]]}[target]
        kw = {"json": {"store_ids": [str(i) for i in ids], "epsilon": 0.5}}
    elif name == "set_config":
        kw = {"json": {"config_value": "100"}}
    return path, kw


@pytest.mark.parametrize("name,method,path,who,target,expected", CASES)
def test_matrix(api, world, name, method, path, who, target, expected):
    url, kw = request_for(world, name, path, target)
    r = api.call(method, url, api.token(world, who), **kw)
    assert r.status_code == expected, f"{method} {url} as {who}: {r.status_code} {r.text[:300]}"
    if expected >= 400:
        assert r.json()["detail"], r.text  # every refusal says why


@pytest.mark.parametrize("name,method,path", [(n, m, p) for n, m, p, _ in MATRIX])
def test_no_token_is_401(api, world, name, method, path):
    url, kw = request_for(world, name, path, "own")
    r = api.call(method, url, None, **kw)
    assert r.status_code == 401, r.text


def test_every_request_writes_one_activity_row(api, world, db):
    token = api.token(world, SM)
    before = db.execute("SELECT count(*) FROM activity_logs WHERE action_type LIKE 'api_%'").fetchone()[0]
    db.commit()
    calls = [("GET", f"/stores/{world.stores['a']}/files"), ("GET", f"/stores/{world.stores['b']}/files"),
             ("GET", "/configs"), ("GET", f"/stores/{world.stores['a']}/patterns")]
    for method, path in calls:
        api.call(method, path, token, headers={"User-Agent": "access-test/1"})
    rows = db.execute(
        """SELECT action_type, user_id, store_id, ip_address::text, user_agent, additional_data->>'status',
                  additional_data->>'outcome'
             FROM activity_logs WHERE action_type LIKE 'api_%' ORDER BY created_at DESC LIMIT 4""").fetchall()
    after = db.execute("SELECT count(*) FROM activity_logs WHERE action_type LIKE 'api_%'").fetchone()[0]
    assert after - before == len(calls)
    by_status = sorted((r[0], r[5]) for r in rows)
    assert by_status == sorted([("api_list_files", "200"), ("api_list_files", "403"), ("api_list_configs", "403"),
                                ("api_list_local_patterns", "200")])
    for action, user_id, store_id, ip, agent, status, outcome in rows:
        assert user_id == world.users[SM] and ip.startswith("127.0.0.1") and agent == "access-test/1"
        assert outcome == "ok" if status == "200" else outcome and outcome != "ok"
    assert {r[2] for r in rows if r[0] == "api_list_files"} == {world.stores["a"], world.stores["b"]}
