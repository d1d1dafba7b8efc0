"""Platform users sign in to Airflow's UI at /dashboards/login (plugins/platform_ui/signin.py, docs/dashboards.md
"Sign-in"), on the real api-server of the real pipeline run (``server``, ``pipeline_world``) and in headless
Chromium:

* a dashboards page without a sign-in answers 401 and shows the link to the form, back to that page; the form
  signs a store manager in (typed and submitted in the browser): they land on ``next`` with their own data,
  in the dashboards and inside Airflow's own UI; the ``_token`` cookie has Airflow's flags (path, HttpOnly,
  SameSite=Lax, Secure in TLS mode); ``users.last_login``, the audit row and the token's session are written;
* a wrong password re-renders the form with the error (email kept, password never), no cookie, the failure
  audited; repeated failures give 429 with Retry-After, on the platform API's JSON login too (one throttle);
* ``next`` outside this origin (``//host``, ``https://...``, ``/\\host``, ...) falls back to Airflow's home;
  a form not served by this site is refused (login CSRF);
* sign-out revokes the token (on Airflow's list and the platform's: refused with 403 everywhere) and
  deletes the cookie.
"""
from __future__ import annotations

import re
import uuid
from urllib.parse import quote

import jwt
import psycopg
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests import tlsmode
from tests.ui.conftest import PASSWORD
from tests.ui.pages import TABLE_JS, shot

OWN_PASSWORD = "a password of this module's own user"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def adb(pipeline_world):
    """Autocommit: each statement sees what the api-server committed, now() is the statement's time."""
    with psycopg.connect(pipeline_world.dsn, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def own_user(server, pipeline_world):
    """A user of this module (admin: no store or region binding) with its FAB user, to throttle without
    locking anybody else out; its FAB user is removed at the end (the database goes with the world)."""
    from include.access import accounts, airflow_sync
    from include.security.crypto import Keyring

    email = f"t-login-{uuid.uuid4().hex[:8]}@t-ui.example"
    with psycopg.connect(pipeline_world.dsn) as c:
        uid = accounts.add_user(c, Keyring.from_connection(), email, OWN_PASSWORD, "admin")
        c.commit()
    airflow_sync.sync_users([airflow_sync.FabUser(uid, "admin", True)])
    try:
        yield uid, email
    finally:
        airflow_sync.delete_users([uid])


def _signed_out(driver, server) -> None:
    driver.get(f"{server.base}/dashboards/static/style.css")   # any same-origin URL, then no cookie at all
    driver.delete_all_cookies()


def _submit(driver, email: str, password: str) -> None:
    """Type the credentials into the sign-in form and submit it, as a user does."""
    WebDriverWait(driver, 30).until(EC.presence_of_element_located((By.ID, "signin")))
    field = driver.find_element(By.ID, "email")
    field.clear()
    field.send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "submit").click()


def _rendered(driver, url: str) -> None:
    WebDriverWait(driver, 60).until(EC.url_to_be(url))
    WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))


def _form(server, next_: str | None = None) -> tuple[requests.Session, str]:
    """A client that opened the form: its anti-CSRF cookie and the form's token."""
    s = requests.Session()
    # TLS mode: the project CA. A session's own `verify` loses to REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the
    # environment (set on these machines) unless the session ignores the environment: loopback, no proxies
    s.trust_env = False
    s.verify = tlsmode.http_verify()
    r = s.get(f"{server.base}/dashboards/login", params={"next": next_} if next_ else None, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (r.status_code, r.text[:300])
    return s, CSRF.search(r.text)[1]


def _post(s: requests.Session, server, csrf: str, email: str, password: str, next_: str = "") -> requests.Response:
    return s.post(f"{server.base}/dashboards/login", data={"email": email, "password": password, "next": next_,
                                                            "csrf": csrf}, allow_redirects=False, timeout=60)


def _set_cookies(r: requests.Response, name: str) -> list[str]:
    return [v for v in r.raw.headers.getlist("Set-Cookie") if v.startswith(f"{name}=")]


def test_page_without_sign_in_links_to_the_form_which_signs_in(driver, server, pipeline_world, adb):
    w = pipeline_world
    uid, email = w.users["sm_a"], w.emails["sm_a"]
    r = requests.get(f"{server.base}/dashboards/privacy", timeout=60, verify=tlsmode.http_verify())
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    # in the browser: the page says so and links to the form, back to this page
    _signed_out(driver, server)
    driver.get(f"{server.base}/dashboards/privacy")
    WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-error") == "401"
    link = driver.find_element(By.ID, "signin-link")
    assert link.get_attribute("href") == f"{server.base}/dashboards/login?next={quote('/dashboards/privacy', safe='')}"
    shot(driver, "signin-hint")
    t0 = adb.execute("SELECT now()").fetchone()[0]
    link.click()
    WebDriverWait(driver, 30).until(EC.url_contains("/dashboards/login?next="))
    assert driver.find_element(By.NAME, "next").get_attribute("value") == "/dashboards/privacy"
    shot(driver, "login")
    _submit(driver, email, PASSWORD)
    # back on the page, now with the store manager's data: their store only
    _rendered(driver, f"{server.base}/dashboards/privacy")
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-error") is None
    assert [row["id"] for row in driver.execute_script(TABLE_JS, "budgets")] == [str(w.stores["a"])]
    # Airflow's UI cookie, with the flags of Airflow's own login
    cookie = driver.get_cookie("_token")
    assert cookie is not None, driver.get_cookies()
    assert (cookie["path"], cookie["httpOnly"], cookie["secure"], cookie.get("sameSite")) == \
        ("/", True, tlsmode.tls_on(), "Lax")
    assert "expiry" not in cookie                      # a session cookie, as Airflow's; the JWT expires by itself
    assert driver.get_cookie("_dashboards_signin") is None   # the form's anti-CSRF cookie is spent
    token = cookie["value"]
    me = server.get("/platform/v1/me", token)
    assert me.status_code == 200 and me.json()["user_id"] == str(uid)
    # the platform login ran: last_login, the audit row, the token recorded as a session (for revocation)
    assert adb.execute("SELECT last_login FROM users WHERE id = %s", (uid,)).fetchone()[0] >= t0
    rows = adb.execute("""SELECT additional_data FROM activity_logs WHERE action_type = 'api_dashboard_login'
                            AND user_id = %s AND created_at >= %s""", (uid, t0)).fetchall()
    assert [(d["method"], d["status"], d["outcome"], d["role"]) for (d,) in rows] == \
        [("POST", 303, "ok", "store_manager")]
    from include.search.clients import redis_client

    rc = redis_client()
    jtis = {rc.hget(f"{w.redis_ns}:session:{sid}", "jti") for sid in rc.smembers(f"{w.redis_ns}:user_sessions:{uid}")}
    assert jwt.decode(token, options={"verify_signature": False})["jti"] in jtis


def test_sign_in_lands_on_next_inside_airflow_ui(driver, server, pipeline_world):
    """``next`` an Airflow UI route: Airflow's own UI accepts the cookie and shows the view with their data."""
    w = pipeline_world
    _signed_out(driver, server)
    driver.get(f"{server.base}/dashboards/login?next={quote('/plugin/platform-privacy', safe='')}")
    _submit(driver, w.emails["sm_a"], PASSWORD)
    WebDriverWait(driver, 60).until(EC.url_to_be(f"{server.base}/plugin/platform-privacy"))
    try:
        frame = WebDriverWait(driver, 90).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='Privacy budget']")))
    except Exception:
        shot(driver, "login-airflow-ui-failed")
        raise AssertionError(f"no Privacy budget view in Airflow's UI at {driver.current_url}") from None
    driver.switch_to.frame(frame)
    try:
        WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-error") is None
        assert [row["id"] for row in driver.execute_script(TABLE_JS, "budgets")] == [str(w.stores["a"])]
    finally:
        driver.switch_to.default_content()
    shot(driver, "login-airflow-ui")


def test_wrong_password_is_refused_then_throttled(driver, server, own_user, adb):
    uid, email = own_user
    limit = int(adb.execute("SELECT config_value FROM server_configs WHERE config_key = 'api_login_max_failures'")
                .fetchone()[0])
    t0 = adb.execute("SELECT now()").fetchone()[0]
    # in the browser: the form again, with the error, the email kept and the password not
    _signed_out(driver, server)
    driver.get(f"{server.base}/dashboards/login?next=%2Fdashboards%2Fprivacy")
    _submit(driver, email, "wrong password 0")
    err = WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.ID, "error")))
    assert "wrong email or password" in err.text
    assert driver.find_element(By.ID, "email").get_attribute("value") == email
    assert driver.find_element(By.ID, "password").get_attribute("value") == ""
    assert driver.find_element(By.NAME, "next").get_attribute("value") == "/dashboards/privacy"
    assert "wrong password 0" not in driver.page_source
    assert driver.get_cookie("_token") is None
    shot(driver, "login-error")
    # the remaining failures over HTTP: 401 each, then 429 even with the right password
    s, csrf = _form(server)
    for i in range(1, limit):
        r = _post(s, server, csrf, email, f"wrong password {i}")
        assert r.status_code == 401 and "wrong email or password" in r.text, (i, r.status_code, r.text[-500:])
        assert f"wrong password {i}" not in r.text and not _set_cookies(r, "_token")
    r = _post(s, server, csrf, email, OWN_PASSWORD)
    assert r.status_code == 429, (r.status_code, r.text[-500:])
    assert int(r.headers["Retry-After"]) > 0 and "too many failed logins" in r.text
    assert f'value="{email}"' in r.text and OWN_PASSWORD not in r.text and not _set_cookies(r, "_token")
    # one throttle for both doors: the platform API's JSON login refuses the account too
    api = requests.post(f"{server.base}/platform/v1/auth/token", json={"email": email, "password": OWN_PASSWORD},
                        timeout=60, verify=tlsmode.http_verify())
    assert api.status_code == 429 and "Retry-After" in api.headers
    # audited: every failure (with the count in the window) and the throttled attempt; never a login
    rows = adb.execute("""SELECT additional_data FROM activity_logs WHERE action_type = 'api_dashboard_login'
                            AND created_at >= %s AND additional_data->>'status' IN ('401', '429')""", (t0,)).fetchall()
    statuses = sorted(d["status"] for (d,) in rows)
    assert statuses == [401] * limit + [429], statuses
    assert max(d.get("failures_in_window", 0) for (d,) in rows) == limit
    assert all(d["outcome"] != "ok" for (d,) in rows)
    assert adb.execute("SELECT last_login FROM users WHERE id = %s", (uid,)).fetchone()[0] is None


def test_form_escapes_what_it_shows_back(server):
    s, csrf = _form(server, next_='/x"><script>alert(1)</script>')
    payload = '<img src=x onerror=alert(1)>"@t-ui.example'
    r = _post(s, server, csrf, payload, "wrong password", next_='/x"><script>alert(1)</script>')
    assert r.status_code == 401
    assert "<img src=x" not in r.text and "<script>alert" not in r.text
    assert 'value="&lt;img src=x onerror=alert(1)&gt;&quot;@t-ui.example"' in r.text


@pytest.mark.parametrize("next_", ["//example.com", "https://example.com", "/\\example.com", "\\\\example.com",
                                   "/\t/example.com", "javascript:alert(1)", "example.com/x", ""])
def test_next_outside_this_origin_goes_home(server, pipeline_world, next_):
    s, csrf = _form(server)
    r = _post(s, server, csrf, pipeline_world.emails["sm_b"], PASSWORD, next_)
    assert r.status_code == 303 and r.headers["Location"] == "/", (next_, r.status_code, r.headers.get("Location"))
    assert _set_cookies(r, "_token")


def test_next_on_this_origin_is_kept(server, pipeline_world):
    s, csrf = _form(server)
    r = _post(s, server, csrf, pipeline_world.emails["sm_b"], PASSWORD, "/dashboards/ingestion?store_id=x&y=1")
    assert r.status_code == 303 and r.headers["Location"] == "/dashboards/ingestion?store_id=x&y=1"
    (c,) = _set_cookies(r, "_token")
    flags = [f.strip().lower() for f in c.split(";")[1:]]
    assert "path=/" in flags and "httponly" in flags and "samesite=lax" in flags
    assert ("secure" in flags) == tlsmode.tls_on()


def test_form_not_served_by_this_site_is_refused(server, pipeline_world):
    """Login CSRF: a post without the form's cookie (another site's page) or with another token signs nobody in."""
    plain = requests.post(f"{server.base}/dashboards/login", data={"email": pipeline_world.emails["sm_b"],
                          "password": PASSWORD, "csrf": "forged"}, allow_redirects=False, timeout=60,
                          verify=tlsmode.http_verify())
    assert plain.status_code == 403 and "form has expired" in plain.text and not _set_cookies(plain, "_token")
    s, _ = _form(server)
    r = _post(s, server, "another token", pipeline_world.emails["sm_b"], PASSWORD)
    assert r.status_code == 403 and not _set_cookies(r, "_token")


def test_sign_out_revokes_the_token_and_deletes_the_cookie(driver, server, pipeline_world, adb):
    w = pipeline_world
    uid = w.users["sm_a"]
    _signed_out(driver, server)
    driver.get(f"{server.base}/dashboards/login?next=%2Fdashboards%2Fingestion")
    _submit(driver, w.emails["sm_a"], PASSWORD)
    _rendered(driver, f"{server.base}/dashboards/ingestion")
    token = driver.get_cookie("_token")["value"]
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert server.get("/platform/v1/me", token).status_code == 200
    t0 = adb.execute("SELECT now()").fetchone()[0]
    driver.find_element(By.ID, "signout").click()       # the pages' "Sign out" link
    WebDriverWait(driver, 30).until(EC.url_to_be(f"{server.base}/dashboards/login"))
    assert driver.get_cookie("_token") is None
    # revoked on Airflow's list and the platform's: the platform API, the dashboards and Airflow's own REST API
    # refuse it (Airflow's token check first: 403)
    for path in ("/platform/v1/me", "/dashboards/api/me", "/api/v2/dags"):
        r = server.get(path, token)
        assert (r.status_code, r.json()["detail"]) == (403, "Invalid JWT token"), (path, r.status_code, r.text)
    assert adb.execute("SELECT user_id, reason FROM token_revocations WHERE jti = %s", (jti,)).fetchone() == \
        (uid, "logout")
    assert adb.execute("""SELECT count(*) FROM activity_logs WHERE action_type = 'api_dashboard_logout'
                            AND user_id = %s AND created_at >= %s""", (uid, t0)).fetchone()[0] == 1
    # the browser is signed out: the page asks to sign in again
    driver.get(f"{server.base}/dashboards/ingestion")
    WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-error") == "401"
    assert driver.find_element(By.ID, "signin-link").is_displayed()


def test_sign_out_deletes_the_cookie_with_its_flags(server, pipeline_world):
    s, csrf = _form(server)
    assert _post(s, server, csrf, pipeline_world.emails["sm_b"], PASSWORD).status_code == 303
    token = s.cookies.get("_token")
    r = s.get(f"{server.base}/dashboards/logout", allow_redirects=False, timeout=60)
    assert r.status_code == 303 and r.headers["Location"] == "login"
    (c,) = _set_cookies(r, "_token")
    flags = [f.strip().lower() for f in c.split(";")[1:]]
    assert "max-age=0" in flags and "path=/" in flags and "httponly" in flags
    assert ("secure" in flags) == tlsmode.tls_on()
    assert server.get("/platform/v1/me", token).status_code == 403
    # signing out again (no cookie, or a revoked one) still just lands on the form
    again = requests.get(f"{server.base}/dashboards/logout", cookies={"_token": token}, allow_redirects=False,
                         timeout=60, verify=tlsmode.http_verify())
    assert again.status_code == 303 and again.headers["Location"] == "login"
