"""The two front doors of the HTTP functions, served by one set of routes.

* the REST API (the default: API key + usage plan) invokes a function with a proxy event of payload
  format 1.0 (``httpMethod``, ``path``, ``multiValueHeaders``) and reads ``multiValueHeaders`` back;
* a Lambda function URL (template parameter ``FunctionUrls=iam``, SigV4-signed callers) invokes it with
  payload format 2.0 (``version: "2.0"``, ``requestContext.http.method``, ``rawPath``) and reads
  ``headers`` back (it ignores ``multiValueHeaders``).

:class:`FrontDoorResolver` decides once per event which one it got, so every handler registers its routes
and error handlers once and answers both doors with the same status and body. Powertools picks the event
class, and with it the response's header shape, from the resolver's proxy type; this resolver picks it
from the event instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, LambdaFunctionUrlEvent
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent


def is_function_url_event(event: Mapping[str, Any]) -> bool:
    """A payload format 2.0 event, as function URLs send (HTTP APIs send the same shape)."""
    context = event.get("requestContext")
    return event.get("version") == "2.0" and isinstance(context, Mapping) and "http" in context


class FrontDoorResolver(APIGatewayRestResolver):
    """APIGatewayRestResolver (routes, trailing-slash tolerance, REST answers) that also resolves function
    URL events: their routes are the same paths (``rawPath``), their answers the same status and body."""

    # both event classes give what the routes read: http_method, path, body, is_base64_encoded,
    # query_string_parameters (a function URL joins repeated keys with commas, as the REST API's
    # single-value map keeps the last). Wider than the base's declaration, which assumes one event class.
    current_event: APIGatewayProxyEvent | LambdaFunctionUrlEvent  # type: ignore[assignment]

    def _to_proxy_event(self, event: dict[str, Any]) -> BaseProxyEvent:
        if is_function_url_event(event):
            return LambdaFunctionUrlEvent(event, self._json_body_deserializer)
        return super()._to_proxy_event(event)

    def _get_base_path(self) -> str:
        if isinstance(self.current_event, LambdaFunctionUrlEvent):
            return ""  # a function URL has no stage: rawPath is the route's path
        return super()._get_base_path()
