"""labcluster's Jupyter server extension (labcluster/server/) against a real Jupyter server (pytest-jupyter) and
real clusters: the sidebar's REST API, its errors, and that every route and verb requires Jupyter's auth."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

import labcluster as lc
from labcluster.cluster import registry
from labcluster.server.manager import CREATE_FIELDS, MODEL_FIELDS, SCALE_FIELDS, groups_from_request


@pytest.fixture
def jp_server_config() -> Config:
    # with unauthenticated access disallowed, a handler verb without @authenticated fails at start-up
    return Config({"ServerApp": {"jpserver_extensions": {"labcluster.server": True, "jupyter_server_terminals": False},
                                 "allow_unauthenticated_access": False}})


async def _call(jp_fetch: Any, *path: str, method: str = "GET", body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
    if method in ("POST", "PUT", "PATCH") and data is None:
        data = "{}"
    try:
        response = await jp_fetch("labcluster", "api", *path, method=method, body=data,
                                  allow_nonstandard_methods=True, **kwargs)
    except HTTPClientError as e:
        assert e.response is not None
        return e.code, json.loads(e.response.body or b"null") if e.response.body.startswith(b"{") else None
    return response.code, json.loads(response.body) if response.body else None


@pytest.fixture
def kernel_cluster() -> Iterator[lc.Session]:
    """A cluster some other process started (here: this one, as a script would): the registry lists it."""
    lc.shutdown()
    session = lc.init(num_cpus=2, dashboard_address="127.0.0.1:0")
    yield session
    lc.shutdown()


async def test_the_list_shows_a_cluster_another_process_started(jp_fetch: Any, jp_serverapp: Any,
                                                                kernel_cluster: lc.Session) -> None:
    from conftest import wait_until

    code, clusters = await _call(jp_fetch, "clusters")
    assert code == 200
    assert jp_serverapp.identity_provider.token not in json.dumps(clusters)
    (model,) = [c for c in clusters if c["address"] == kernel_cluster.address]
    assert tuple(model) == MODEL_FIELDS
    assert model["status"] == "running" and model["owner"]["kind"] == "process" and model["processes"]
    assert model["workers"] == 1 and model["totals"]["cpus"] == 2.0 and model["totals"]["memory"] > 0
    assert [g["name"] for g in model["groups"]] == ["cpu"]
    assert model["dashboard_port"] and model["dashboards"][0]["path"].startswith(f"proxy/{model['dashboard_port']}/")
    assert f"lc.init(address={kernel_cluster.address!r})" in model["connect_code"]
    code, one = await _call(jp_fetch, "clusters", model["id"])
    assert code == 200 and one["id"] == model["id"]
    # someone else's cluster: stopping it needs a confirmation, and nothing stops without one
    code, error = await _call(jp_fetch, "clusters", model["id"], method="DELETE")
    assert code == 409 and "confirm" in error["error"]
    assert len(lc.nodes()) == 1
    code, _ = await _call(jp_fetch, "clusters", model["id"], method="DELETE", params={"confirm": "1"})
    assert code == 204
    # its scheduler closed, its head process exits: the registry drops it, and its owner's session says so
    assert wait_until(lambda: model["id"] not in {e["id"] for e in registry.entries()}, timeout=30)
    # within moments (its head says why it stops, its client sees the scheduler go), not Dask's 60 s of retries
    deadline = time.monotonic() + 15
    while True:
        try:
            lc.nodes()
        except lc.exceptions.ClusterError as e:
            assert "the local cluster stopped: its scheduler closed" in str(e), e
            break
        assert time.monotonic() < deadline, "the owner's session did not say its cluster was stopped"
        await asyncio.sleep(0.2)


async def test_a_cluster_started_from_the_server_scales_and_stops(jp_fetch: Any) -> None:
    code, model = await _call(jp_fetch, "clusters", method="POST",
                              body={"name": "class", "workers": 1, "threads": 1, "gpus": 1, "simulate_gpus": True,
                                    "resources": {"special": 2}})
    assert code == 201, model
    try:
        assert model["name"] == "class" and model["owner"]["kind"] == "server" and model["processes"]
        groups = {g["name"]: g for g in model["groups"]}
        assert groups["cpu"]["resources"] == {"special": 2.0} and groups["gpu"]["simulated_gpus"] == 1.0
        assert model["totals"]["gpus"] == 0.0 and model["totals"]["simulated_gpus"] == 1.0
        code, scaled = await _call(jp_fetch, "clusters", model["id"], method="PATCH", body={"group": "cpu", "workers": 2})
        assert code == 200 and {g["name"]: g["workers"] for g in scaled["groups"]}["cpu"] == 2
        code, error = await _call(jp_fetch, "clusters", model["id"], method="PATCH", body={"group": "tpu", "workers": 1})
        assert code == 400 and "tpu" in error["error"]
        # a group scaled to 0 stays in the model (the scale dialog lists it), and scales back up
        code, scaled = await _call(jp_fetch, "clusters", model["id"], method="PATCH", body={"group": "gpu", "workers": 0})
        assert code == 200 and {g["name"]: g["workers"] for g in scaled["groups"]} == {"cpu": 2, "gpu": 0}
        assert scaled["totals"]["simulated_gpus"] == 0.0
        code, scaled = await _call(jp_fetch, "clusters", model["id"], method="PATCH", body={"group": "gpu", "workers": 1})
        assert code == 200 and {g["name"]: g["workers"] for g in scaled["groups"]} == {"cpu": 2, "gpu": 1}
    finally:
        code, _ = await _call(jp_fetch, "clusters", model["id"], method="DELETE")
    assert code == 204
    code, error = await _call(jp_fetch, "clusters", model["id"])
    assert code == 404 and model["id"] in error["error"]


@pytest.mark.parametrize(("body", "field"), [
    ({"workers": -1}, "workers"), ({"workers": 10_000}, "workers"), ({"workers": "2"}, "workers"),
    ({"workers": True}, "workers"), ({"threads": 0}, "threads"), ({"gpus": 1.5}, "gpus"),
    ({"simulate_gpus": "yes"}, "simulate_gpus"), ({"resources": {"GPU": 1}}, "resources"),
    ({"resources": {"x": -1}}, "resources"), ({"resources": {"memory": 2}}, "resources"), ({"resources": {"a b": 1}}, "resources"),
    ({"resources": [1, 2]}, "resources"), ({"name": ""}, "name"), ({"nodes": 3}, "nodes"), ([1, 2], "body"),
    ("{not json", "body"), ("x" * (1024 * 1024), "body"), ("[" * 30_000 + "]" * 30_000, "body"),
])
async def test_a_bad_body_is_a_400_naming_the_field_and_starts_nothing(jp_fetch: Any, body: Any, field: str) -> None:
    before = len(registry.entries())
    code, error = await _call(jp_fetch, "clusters", method="POST", body=body)
    assert code == 400 and error["field"] == field and error["error"].startswith(f"{field}: ")
    assert len(registry.entries()) == before


async def test_an_unknown_id_is_a_404_and_a_bad_scale_body_a_400(jp_fetch: Any) -> None:
    for method, body in (("GET", None), ("PATCH", {"workers": 1}), ("DELETE", None)):
        code, error = await _call(jp_fetch, "clusters", "abc123", method=method, body=body)
        assert code == 404 and "abc123" in error["error"]
    code, error = await _call(jp_fetch, "clusters", "abc123", method="PATCH", body={"workers": -2})
    assert code == 400 and error["field"] == "workers"


async def test_stopping_a_kernels_in_process_cluster_drops_it_from_the_list(jp_fetch: Any) -> None:
    """The kernel lives on after its in-process cluster is stopped from the panel: the card goes anyway."""
    lc.shutdown()
    session = lc.init(num_cpus=1, processes=False, dashboard_address="127.0.0.1:0")
    try:
        _, clusters = await _call(jp_fetch, "clusters")
        (model,) = [c for c in clusters if c["address"] == session.address]
        code, _ = await _call(jp_fetch, "clusters", model["id"], method="DELETE", params={"confirm": "1"})
        assert code == 204
        _, clusters = await _call(jp_fetch, "clusters")
        assert model["id"] not in {c["id"] for c in clusters}
    finally:
        lc.shutdown()


class _ReadOnly(Authorizer):
    """An Authorizer that lets everyone read and no one write, and notes what it was asked (in ``asked``)."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        self.asked.append((action, resource))
        return action == "read"


async def test_jupyters_authorizer_decides_who_may_start_scale_and_stop(jp_fetch: Any, jp_serverapp: Any) -> None:
    settings = jp_serverapp.web_app.settings
    authorizer = _ReadOnly(parent=jp_serverapp, identity_provider=jp_serverapp.identity_provider)
    authorizer.asked = []
    settings["authorizer"] = authorizer
    before = len(registry.entries())
    code, _ = await _call(jp_fetch, "clusters")
    assert code == 200
    for method, path, body in (("POST", ("clusters",), {"workers": 1}), ("PATCH", ("clusters", "abc123"),
                                                                          {"workers": 1}),
                               ("DELETE", ("clusters", "abc123"), None)):
        code, error = await _call(jp_fetch, *path, method=method, body=body)
        assert code == 403, (method, code)
        assert "not authorized to write on resource: labcluster" in (error or {}).get("message", ""), error
    assert len(registry.entries()) == before
    assert ("read", "labcluster") in authorizer.asked and ("write", "labcluster") in authorizer.asked


ROUTES = [("info",), ("clusters",), ("clusters", "abc123")]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@pytest.mark.parametrize("path", ROUTES)
async def test_every_route_and_verb_needs_jupyters_auth(jp_fetch: Any, path: tuple[str, ...]) -> None:
    for method in METHODS:
        for token in ("", "token wrong-token"):
            code, body = await _call(jp_fetch, *path, method=method, headers={"Authorization": token})
            assert code in (401, 403), (path, method, token, code)
            assert "clusters" not in json.dumps(body or {})  # nothing of ours answered
        code, _ = await _call(jp_fetch, *path, method=method, body={"workers": 0} if method == "POST" else None)
        assert code not in (401, 403), (path, method, code)  # the right token passes (405, 404, 400: our answers)


def _cookies(response: Any, jar: dict[str, str]) -> dict[str, str]:
    for header in response.headers.get_list("Set-Cookie"):
        name, value = header.split(";")[0].split("=", 1)
        jar[name] = value
    return jar


async def test_a_cross_site_write_without_the_xsrf_token_is_refused(jp_fetch: Any, jp_serverapp: Any) -> None:
    # log in as a browser does (the login form, with the token as password): it then holds the login and _xsrf
    # cookies, and sends no token
    import urllib.parse

    anonymous = {"Authorization": ""}
    form = await jp_fetch("login", headers=anonymous)
    jar = _cookies(form, {})
    login = await jp_fetch("login", method="POST", headers={**anonymous, "Cookie": f"_xsrf={jar['_xsrf']}"},
                           body=urllib.parse.urlencode({"password": jp_serverapp.identity_provider.token,
                                                        "_xsrf": jar["_xsrf"]}),
                           follow_redirects=False, raise_error=False)
    assert login.code == 302
    cookie = "; ".join(f"{k}={v}" for k, v in _cookies(login, jar).items())
    code, _ = await _call(jp_fetch, "clusters", "abc123", headers={**anonymous, "Cookie": cookie})
    assert code == 404  # the cookie alone logs in: a read is ours to answer
    code, _ = await _call(jp_fetch, "clusters", "abc123", method="DELETE", headers={**anonymous, "Cookie": cookie})
    assert code == 403  # a write without the XSRF token is refused
    code, _ = await _call(jp_fetch, "clusters", "abc123", method="DELETE",
                          headers={**anonymous, "Cookie": cookie, "X-XSRFToken": jar["_xsrf"]})
    assert code == 404  # the same request with it is ours to answer


def test_the_create_and_scale_fields_are_documented() -> None:
    assert set(CREATE_FIELDS) == {"name", "workers", "threads", "gpus", "simulate_gpus", "resources"}
    assert set(SCALE_FIELDS) == {"group", "workers"}
    name, groups = groups_from_request({"workers": 3, "threads": 2})
    assert name is None and [(g.name, g.n, g.nthreads) for g in groups] == [("cpu", 3, 2)]
