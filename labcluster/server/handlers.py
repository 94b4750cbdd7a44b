"""The sidebar's REST API: tornado handlers that translate HTTP to :class:`~labcluster.server.manager.ClusterManager`
calls and back, and nothing else. Every verb is ``@tornado.web.authenticated`` (Jupyter's auth: token or cookie;
its XSRF check refuses cross-site writes) and ``@authorized`` (the server's ``Authorizer`` decides who may
``read`` the resource ``labcluster``, the clusters, and who may ``write`` it: start, scale, stop).

==========================================  ======  =========================================================
route (under the server's base URL)         verb    what
==========================================  ======  =========================================================
labcluster/api/info                         GET     this extension's version (the sidebar checks it is there)
labcluster/api/clusters                     GET     every cluster's model
labcluster/api/clusters                     POST    start one (body: ``manager.CREATE_FIELDS``); 201
labcluster/api/clusters/<id>                GET     one cluster's model
labcluster/api/clusters/<id>                PATCH   scale a group (body: ``manager.SCALE_FIELDS``)
labcluster/api/clusters/<id>[?confirm=1]    DELETE  stop it; one a kernel started only with confirm=1; 204
==========================================  ======  =========================================================

Errors answer ``{"error": <text>, "field": <the bad field or null>}`` with one status per exception: 404
ClusterNotFound, 400 InvalidRequest, 409 ClusterConflict, 500 anything else (a start that failed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .. import __version__
from ..exceptions import LabclusterError
from .manager import ClusterConflict, ClusterManager, ClusterNotFound, InvalidRequest

logger = logging.getLogger("labcluster.server")

#: a request body larger than this is refused before it is parsed
MAX_BODY = 64 * 1024
STATUS = {ClusterNotFound: 404, InvalidRequest: 400, ClusterConflict: 409}
#: the 500s that were logged already (a misconfiguration would otherwise be logged with every poll)
_SAID: set[str] = set()


class _Handler(APIHandler):
    #: what Jupyter's Authorizer is asked about: ``read`` on it for GET, ``write`` for the verbs that change things
    auth_resource = "labcluster"

    @property
    def manager(self) -> ClusterManager:
        return self.settings["labcluster_manager"]  # type: ignore[no-any-return]

    def body(self) -> Any:
        raw = self.request.body or b"{}"
        if len(raw) > MAX_BODY:
            raise InvalidRequest("body", f"is {len(raw):,} bytes; a request takes at most {MAX_BODY:,}")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("body", "is not JSON: send a JSON object") from None
        except RecursionError:
            raise InvalidRequest("body", "is nested too deeply: send a flat JSON object") from None

    async def respond(self, call: Callable[[], Awaitable[Any]], status: int = 200) -> None:
        """Answer what ``call`` returns (JSON; ``None``: no body) with ``status``, or its error (see ``fail``)."""
        try:
            model = await call()
        except Exception as e:
            self.fail(e)
            return
        self.set_status(status)
        if model is None:
            self.finish()
        else:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(model))

    def fail(self, error: Exception) -> None:
        status = next((code for cls, code in STATUS.items() if isinstance(error, cls)), 500)
        if status == 500 and not isinstance(error, LabclusterError):  # a bug: the server's log keeps the traceback
            logger.error("labcluster: %s %s failed", self.request.method, self.request.path, exc_info=error)
        elif status == 500 and str(error) not in _SAID:  # ours says its fix (a registry directory others may
            _SAID.add(str(error))                         # write): once, not with every poll
            logger.error("labcluster: %s", error)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": str(error) or type(error).__name__, "field": getattr(error, "field", None)}))


class InfoHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"version": __version__}))


class ClustersHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.respond(self.manager.list_clusters)

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        await self.respond(lambda: self.manager.create_cluster(self.body()), 201)


class ClusterHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    async def get(self, cluster_id: str) -> None:
        await self.respond(lambda: self.manager.get_cluster(cluster_id))

    @tornado.web.authenticated
    @authorized
    async def patch(self, cluster_id: str) -> None:
        await self.respond(lambda: self.manager.scale_cluster(cluster_id, self.body()))

    @tornado.web.authenticated
    @authorized
    async def delete(self, cluster_id: str) -> None:
        confirm = self.get_query_argument("confirm", "0") in ("1", "true", "yes")
        await self.respond(lambda: self.manager.delete_cluster(cluster_id, confirm=confirm), 204)


def routes(base_url: str) -> list[tuple[str, type[_Handler]]]:
    api = url_path_join(base_url, "labcluster", "api")
    return [(url_path_join(api, "info"), InfoHandler),
            (url_path_join(api, "clusters"), ClustersHandler),
            (url_path_join(api, "clusters", r"([A-Za-z0-9]{1,64})"), ClusterHandler)]
