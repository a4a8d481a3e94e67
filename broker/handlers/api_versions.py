"""ApiVersions (18): advertise what the registry serves.

A request of a version we do not serve gets a v0 response with UNSUPPORTED_VERSION (35) and our
ranges, as Kafka does, so a newer client retries with a version we know (the server calls
`unsupported_version_response`). From v3 the client's software name and version must match
Kafka's pattern (ApiVersionsRequest.isValid: letters, digits, '-' and '.', starting and ending
with a letter or digit); otherwise the answer is INVALID_REQUEST (42) with no ranges, as Kafka's.
"""

from __future__ import annotations

import re
from typing import Any

from kio.schema.api_versions.v0 import response as v0

from ._util import make, response_module

API_KEY = 18
MIN_VERSION, MAX_VERSION = 0, 4
UNSUPPORTED_VERSION = 35
INVALID_REQUEST = 42
_SOFTWARE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


def _valid_software(request: Any) -> bool:
    name = getattr(request, "client_software_name", None)
    if name is None:            # v0-2 carry none
        return True
    ver = request.client_software_version
    return bool(_SOFTWARE.fullmatch(name)) and ver is not None and bool(_SOFTWARE.fullmatch(ver))


async def api_versions(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    if not _valid_software(request):
        return make(mod.ApiVersionsResponse, error_code=INVALID_REQUEST, api_keys=())
    keys = tuple(make(mod.ApiVersion, api_key=k, min_version=lo, max_version=hi)
                 for k, lo, hi in ctx.server.registry.advertised())
    return make(mod.ApiVersionsResponse, error_code=0, api_keys=keys)


def unsupported_version_response(registry: Any) -> Any:
    keys = tuple(v0.ApiVersion(api_key=k, min_version=lo, max_version=hi) for k, lo, hi in registry.advertised())
    return make(v0.ApiVersionsResponse, error_code=UNSUPPORTED_VERSION, api_keys=keys)


def register(registry: Any) -> None:
    registry.register(API_KEY, api_versions, min_version=MIN_VERSION, max_version=MAX_VERSION)
