"""The web UI's files, page, config, avatars and login redirects, over real HTTP (treq on 127.0.0.1).

The UI is the installed buildbot-www package, served unmodified; these tests read its own
index.html to know which files it asks for.
"""

from __future__ import annotations

import base64
import gzip
import importlib.metadata
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from apiclient import Api, serve
from twisted.internet import reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.www.auth import Auth, Authenticator
from master.www.login import LoginPages
from master.www.rest import RestApi
from master.www.site import build_root, build_site
from master.www.ui import WebUi, find_static_dir, initials

CONFIG_SCRIPT = re.compile(rb'<script id="bb-config">window\.buildbotFrontendConfig = (.*?);</script>', re.S)


def static_dir() -> Path:
    folder = find_static_dir()
    assert folder is not None, "buildbot-www is not installed: pip install --no-deps buildbot-www"
    return folder


def frontend_config(page: bytes) -> dict[str, Any]:
    found = CONFIG_SCRIPT.search(page)
    assert found, page[:500]
    return json.loads(found.group(1))


class Served:
    """A site with the API at /api, /auth and the UI, on a free port; ``url`` ends without a slash."""

    def __init__(self, api: Api, ui: WebUi) -> None:
        self.api = api
        self.ui = ui
        self.url = api.url

    async def get(self, path: str, **kw: Any) -> tuple[int, bytes, Any]:
        response = await treq.get(self.url + path, pool=self.api.pool, **kw)
        return response.code, await response.content(), response


@pytest.fixture
def data() -> DataAPI:
    # the UI's own routes never read storage: a DataAPI without one serves them
    data = DataAPI(None)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    return data


async def _serve(data: DataAPI, auth: Authenticator, title: str = "UI test") -> AsyncIterator[Served]:
    root = build_root({"api": RestApi(data, auth=auth).resource(), "auth": LoginPages(auth).resource()})
    site = build_site(root)
    async with serve(data, site, in_memory=True) as api:
        root.ui = WebUi(static_dir(), title, api.url + "/", auth, ui_default_config={"Builders.buildFetchLimit": 50})
        yield Served(api, root.ui)


@pytest_twisted.async_yield_fixture()
async def site(data: DataAPI, tmp_path: Path) -> AsyncIterator[Served]:
    async for served in _serve(data, Authenticator(None, tmp_path), title="Nightly <CI> & co"):
        yield served


@pytest_twisted.async_yield_fixture()
async def auth_site(data: DataAPI, tmp_path: Path) -> AsyncIterator[Served]:
    auth = Authenticator(Auth(), tmp_path)
    auth.users.add_user("ann", "pw", ["admin"])
    async for served in _serve(data, auth):
        yield served


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- the page and its config -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_page_is_the_packages_index_with_the_config_injected(site: Served) -> None:
    code, page, response = await site.get("/")
    assert code == 200
    assert response.headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    # it names the user: never cached, by the browser or a proxy
    assert "no-store" in response.headers.getRawHeaders("cache-control")[0]
    original = (static_dir() / "index.html").read_bytes()
    assert b'<div id="root"></div>' in page and b"<!-- BUILDBOT_CONFIG_PLACEHOLDER -->" not in page
    assert page.count(b"window.buildbotFrontendConfig") == 1
    config = frontend_config(page)
    assert config["title"] == "Nightly <CI> & co"
    assert config["buildbotURL"] == config["titleURL"] == site.url + "/"
    assert config["auth"] == {"name": "NoAuth"} and config["user"] == {"anonymous": True}
    assert config["plugins"] == {} and config["project_widgets"] == []
    assert config["ui_default_config"] == {"Builders.buildFetchLimit": 50}
    assert config["avatar_methods"] and all(len(pair) == 2 for pair in config["versions"])
    assert dict(config["versions"])["buildbot-www"] == importlib.metadata.version("buildbot-www")
    # the title shows escaped, and nothing else of the package's page changed
    assert b"<title>Nightly &lt;CI&gt; &amp; co</title>" in page
    assert CONFIG_SCRIPT.sub(b"", page).replace(b"<title>Nightly &lt;CI&gt; &amp; co</title>", b"") == (
        original.replace(b"<!-- BUILDBOT_CONFIG_PLACEHOLDER -->", b"").replace(b"<title>Buildbot</title>", b"")
    )
    # /index.html is the same page; HEAD has the headers and no body
    code, same, _ = await site.get("/index.html")
    assert code == 200 and frontend_config(same) == config
    response = await treq.head(site.url + "/", pool=site.api.pool)
    assert response.code == 200 and await response.content() == b""


@pytest_twisted.ensureDeferred
async def test_config_is_the_same_as_json(site: Served) -> None:
    _, page, _ = await site.get("/")
    code, body, response = await site.get("/config")
    assert code == 200 and json.loads(body) == frontend_config(page)
    assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    assert "no-store" in response.headers.getRawHeaders("cache-control")[0]


@pytest_twisted.ensureDeferred
async def test_a_title_cannot_end_the_config_script(data: DataAPI, tmp_path: Path) -> None:
    title = "</script><script>alert(1)</script><!--"
    async for served in _serve(data, Authenticator(None, tmp_path), title=title):
        _, page, _ = await served.get("/")
        assert b"<script>alert(1)" not in page and page.count(b"</script>") == (
            (static_dir() / "index.html").read_bytes().count(b"</script>") + 1
        )
        assert frontend_config(page)["title"] == title


@pytest_twisted.ensureDeferred
async def test_a_reconfigured_title_and_url_show_on_the_next_page(site: Served) -> None:
    site.ui.reconfigure("Renamed", "https://ci.example.org/", ui_default_config={"x": 1})
    _, page, _ = await site.get("/")
    config = frontend_config(page)
    assert (config["title"], config["buildbotURL"], config["ui_default_config"]) == (
        "Renamed", "https://ci.example.org/", {"x": 1}
    )


# -- static files ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_every_file_the_page_names_is_served_with_caching_headers(site: Served) -> None:
    _, page, _ = await site.get("/")
    names = re.findall(rb'(?:src|href)="(?:\./)?([^"#:]+)"', page)
    assert any(name.startswith(b"assets/") for name in names) and b"browser-warning.js" in names
    for name in names:
        code, body, response = await site.get("/" + name.decode())
        assert code == 200, name
        assert body == (static_dir() / name.decode()).read_bytes(), name
        cache = response.headers.getRawHeaders("cache-control")[0]
        if name.startswith(b"assets/"):
            # hashed names: a new UI has new names, so these never need asking again
            assert cache == "public, max-age=31536000, immutable", name
        else:
            assert "must-revalidate" in cache and response.headers.getRawHeaders("last-modified"), name


@pytest_twisted.ensureDeferred
async def test_text_files_are_gzipped_for_browsers_that_accept_it(site: Served) -> None:
    # a plain Agent: treq's client would decode the body and drop Content-Encoding
    agent = Agent(reactor, pool=site.api.pool)
    accept_gzip = Headers({"Accept-Encoding": ["gzip"]})
    bundle = next((static_dir() / "assets").glob("index-*.js"))
    response = await agent.request(b"GET", f"{site.url}/assets/{bundle.name}".encode(), accept_gzip)
    body = await readBody(response)
    assert response.code == 200 and response.headers.getRawHeaders("content-encoding") == ["gzip"]
    assert gzip.decompress(body) == bundle.read_bytes() and len(body) < bundle.stat().st_size / 2
    # the picture is sent as it is
    response = await agent.request(b"GET", f"{site.url}/icon.png".encode(), accept_gzip)
    assert not response.headers.hasHeader("content-encoding")
    assert await readBody(response) == (static_dir() / "icon.png").read_bytes()


@pytest_twisted.ensureDeferred
async def test_an_unchanged_file_is_not_sent_again(site: Served) -> None:
    _, _, first = await site.get("/icon.svg")
    stamp = first.headers.getRawHeaders("last-modified")[0]
    code, body, _ = await site.get("/icon.svg", headers={"If-Modified-Since": stamp})
    assert (code, body) == (304, b"")


@pytest_twisted.ensureDeferred
async def test_a_double_slash_is_the_top_again(site: Served) -> None:
    # the UI asks for <buildbotURL>/icon.svg, that is //icon.svg
    code, body, _ = await site.get("//icon.svg")
    assert code == 200 and body == (static_dir() / "icon.svg").read_bytes()
    code, page, _ = await site.get("//")
    assert code == 200 and frontend_config(page)["title"]


@pytest_twisted.ensureDeferred
async def test_other_paths_are_json_404s_and_the_api_is_not_shadowed(site: Served) -> None:
    for path in ("/assets/", "/assets", "/assets/nope.js", "/nope", "/index.html/x", "/assets/../../setup.py",
                 "/assets/%2e%2e/%2e%2e/etc/passwd", "/config/x", "/%ff"):
        code, body, response = await site.get(path)
        assert code == 404, path
        assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"], path
        assert "no such path" in json.loads(body)["error"], path
    bundle = next((static_dir() / "assets").glob("index-*.js")).name
    for path in ("/", "/config", "/avatar", "/icon.png", f"/assets/{bundle}"):
        response = await treq.post(site.url + path, data=b"{}", pool=site.api.pool)
        assert response.code == 405 and response.headers.getRawHeaders("allow") == ["GET, HEAD"], path
        assert "not allowed" in json.loads(await response.content())["error"]
    code, body, _ = await site.get("/api/v2/application.spec")
    assert code == 200 and json.loads(body)["specs"]
    code, body, _ = await site.get("/api/v2/nosuch")
    assert code == 404 and "invalid path" in json.loads(body)["error"]


@pytest_twisted.ensureDeferred
async def test_without_the_ui_the_top_is_a_json_404(data: DataAPI) -> None:
    async with serve(data, in_memory=True) as api:
        response = await treq.get(api.url + "/", pool=api.pool)
        assert response.code == 404 and "error" in json.loads(await response.content())
        response = await treq.get(api.url + "/config", pool=api.pool)
        assert response.code == 404


def test_the_ui_is_found_without_importing_buildbot(tmp_path: Path) -> None:
    import sys

    folder = static_dir()
    assert (folder / "index.html").is_file() and "buildbot" not in sys.modules
    ui = WebUi.if_installed("t", "http://127.0.0.1:1", Authenticator(None, tmp_path))
    assert ui is not None and ui.static_dir == folder and ui.base_url == "http://127.0.0.1:1/"


# -- avatars ---------------------------------------------------------------------------------------


def test_initials() -> None:
    assert initials("Ada Lovelace <ada@example.org>") == "AL"
    assert initials("ada.lovelace@example.org") == "AL"
    assert initials("bob") == "B"
    assert initials("") == initials("<>") == "?"


@pytest_twisted.ensureDeferred
async def test_avatars_draw_initials_on_the_master(site: Served) -> None:
    code, body, response = await site.get("/avatar?email=ada.lovelace%40example.org")
    assert code == 200 and response.headers.getRawHeaders("content-type") == ["image/svg+xml"]
    assert body.startswith(b"<svg") and b">AL</text>" in body
    assert "max-age" in response.headers.getRawHeaders("cache-control")[0]
    # the UI asks avatar?username=x&amp;email=y (sic) for the logged-in user
    _, body, _ = await site.get("/avatar?username=bob&amp;email=")
    assert b">B</text>" in body
    _, body, _ = await site.get("/avatar?email=unknown")
    assert b">?</text>" in body
    _, body, _ = await site.get("/avatar?username=x%3Cscript%3Ealert(1)")
    assert b"<script" not in body and b">X</text>" in body
    # the same person always gets the same picture
    assert (await site.get("/avatar?username=bob"))[1] == (await site.get("/avatar?username=bob"))[1]


# -- logging in from the UI ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_with_auth_on_the_page_offers_login_and_names_the_logged_in_user(auth_site: Served) -> None:
    _, page, _ = await auth_site.get("/")
    config = frontend_config(page)
    assert config["auth"]["name"] != "NoAuth" and config["auth"]["oauth2"] is False
    assert config["user"] == {"anonymous": True}

    # the UI's Login link: the browser is asked for a password, then sent back where it was
    code, _, response = await auth_site.get("/auth/login?redirect=/builders/1", allow_redirects=False)
    assert code == 401 and response.headers.getRawHeaders("www-authenticate") == ['Basic realm="ci-master"']
    code, _, response = await auth_site.get(
        "/auth/login?redirect=/builders/1", headers=basic("ann", "pw"), allow_redirects=False
    )
    assert code == 302 and response.headers.getRawHeaders("location") == ["../#/builders/1"]
    cookies = response.cookies()
    _, page, _ = await auth_site.get("/", cookies=cookies)
    assert frontend_config(page)["user"] == {"username": "ann", "roles": ["admin"], "anonymous": False}
    _, body, _ = await auth_site.get("/config", cookies=cookies)
    assert json.loads(body)["user"]["username"] == "ann"

    # Logout: the cookie is cleared and the browser goes back
    code, _, response = await auth_site.get("/auth/logout?redirect=/", cookies=cookies, allow_redirects=False)
    assert code == 302 and response.headers.getRawHeaders("location") == ["../#/"]
    assert any("Max-Age=0" in c for c in response.headers.getRawHeaders("set-cookie"))

    # a wrong password in a stale header reads as anonymous on the page, not as an error
    code, page, _ = await auth_site.get("/", headers=basic("ann", "wrong"))
    assert code == 200 and frontend_config(page)["user"] == {"anonymous": True}


@pytest_twisted.ensureDeferred
async def test_login_redirects_stay_on_the_site(auth_site: Served) -> None:
    for target in ("https://evil.example.org/", "//evil.example.org/x", "javascript:alert(1)", "/\\evil"):
        code, _, response = await auth_site.get(
            "/auth/login", params={"redirect": target}, headers=basic("ann", "pw"), allow_redirects=False
        )
        assert code == 302 and response.headers.getRawHeaders("location") == ["../#/"], target
    # without redirect, the JSON answer of scripts is unchanged
    code, body, _ = await auth_site.get("/auth/login", headers=basic("ann", "pw"))
    assert code == 200 and json.loads(body)["user"]["username"] == "ann"
