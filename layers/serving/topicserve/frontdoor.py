"""The two front doors of the HTTP functions, served by one set of routes.

* the REST API (the default: API key + usage plan) invokes a function with a proxy event of payload
  format 1.0 (``httpMethod``, ``path``, ``multiValueHeaders``) and reads ``multiValueHeaders`` back;
* a Lambda function URL (template parameter ``FunctionUrls=iam``, SigV4-signed callers) invokes it with
  payload format 2.0 (``version: "2.0"``, ``requestContext.http.method``, ``rawPath``) and reads
  ``headers`` back (it ignores ``multiValueHeaders``).

:class:`FrontDoorResolver` decides once per event which one it got, so every handler registers its routes
and error handlers once and answers both doors with the same status and body.

Why not Powertools' ``APIGatewayRestResolver``, which this class used to extend: importing
``aws_lambda_powertools.event_handler`` runs that package's ``__init__``, which imports every resolver it
has (AppSync's pulls in asyncio, ssl and subprocess), the OpenAPI models and every event class of
``utilities.data_classes``; measured under the function's interpreter (``bench/init_breakdown.py``), that was
the largest single block of a predict function's init imports, for routing that two or five rules need.
This class keeps the part of its interface the handlers use (``get``/``post`` with ``<param>`` rules,
trailing-slash tolerance, ``exception_handler`` by exception class, ``not_found``, ``current_event``,
``resolve``) and its answers byte for byte (``tests/unit/test_frontdoor.py`` pins them for both doors).
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Handler = Callable[..., Any]
ExceptionHandler = Callable[[Any], "Response[Any]"]

#: a ``<name>`` part of a rule matches what API Gateway passes in a path segment (Powertools' class)
_PARAM = re.compile(r"<(\w+)>")
_SEGMENT = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"
APPLICATION_JSON = "application/json"


def is_function_url_event(event: Mapping[str, Any]) -> bool:
    """A payload format 2.0 event, as function URLs send (HTTP APIs send the same shape)."""
    context = event.get("requestContext")
    return event.get("version") == "2.0" and isinstance(context, Mapping) and "http" in context


class _Encoder(json.JSONEncoder):
    """Decimals (DynamoDB numbers) as strings and dataclasses as objects, as Powertools' encoder does."""

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            return str(o)
        if is_dataclass(o) and not isinstance(o, type):
            return asdict(o)
        return super().default(o)


def to_json(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), cls=_Encoder)


@dataclass
class Response(Generic[T]):
    """A route's answer with a status of its own (a route that returns a dict answers 200 with it)."""

    status_code: int
    body: T
    content_type: str = APPLICATION_JSON
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class ProxyEvent:
    """What a route reads of its request, the same for both doors."""

    raw_event: dict[str, Any]
    http_method: str
    path: str
    body: str | None
    is_base64_encoded: bool
    query_string_parameters: dict[str, str] | None

    @classmethod
    def of(cls, event: dict[str, Any]) -> ProxyEvent:
        if is_function_url_event(event):
            method, path = event["requestContext"]["http"]["method"], event.get("rawPath") or "/"
        else:
            method, path = event.get("httpMethod") or "", event.get("path") or "/"
        return cls(
            raw_event=event,
            http_method=str(method).upper(),
            path=str(path),
            body=event.get("body"),
            is_base64_encoded=bool(event.get("isBase64Encoded")),
            query_string_parameters=event.get("queryStringParameters"),
        )


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class FrontDoorResolver:
    """Routes for both front doors: REST API events (answered with ``multiValueHeaders``) and function URL
    events (answered with ``headers``), one set of rules and error handlers for both."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._exception_handlers: dict[type[BaseException], ExceptionHandler] = {}
        self._not_found: ExceptionHandler | None = None
        self.current_event: ProxyEvent = ProxyEvent({}, "", "/", None, False, None)
        self.lambda_context: Any = None

    # -- registration ------------------------------------------------------------------------------------

    def route(self, rule: str, method: str) -> Callable[[Handler], Handler]:
        """``rule`` like ``/v1/batches/<batch_id>``: each ``<name>`` becomes a keyword argument of the
        handler; a trailing slash on the request is tolerated, as API Gateway users expect."""
        regex = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>{_SEGMENT})", rule.rstrip("/"))
        pattern = re.compile(f"^{regex}/*$")

        def register(handler: Handler) -> Handler:
            self._routes.append(_Route(method.upper(), pattern, handler))
            return handler

        return register

    def get(self, rule: str) -> Callable[[Handler], Handler]:
        return self.route(rule, "GET")

    def post(self, rule: str) -> Callable[[Handler], Handler]:
        return self.route(rule, "POST")

    def exception_handler(self, exc_class: type[BaseException]) -> Callable[[T], T]:
        def register(handler: T) -> T:
            self._exception_handlers[exc_class] = handler  # type: ignore[assignment]
            return handler

        return register

    def not_found(self, handler: T) -> T:
        self._not_found = handler  # type: ignore[assignment]
        return handler

    # -- one event ---------------------------------------------------------------------------------------

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.current_event = ProxyEvent.of(event)
        self.lambda_context = context
        try:
            response = self._answer()
        except Exception as exc:
            handler = self._handler_for(type(exc))
            if handler is None:
                raise
            response = handler(exc)
        return self._shape(response, url=is_function_url_event(event))

    def _answer(self) -> Response[Any]:
        event = self.current_event
        for route in self._routes:
            match = route.pattern.match(event.path)
            if match and route.method == event.http_method:
                result = route.handler(**match.groupdict())
                return result if isinstance(result, Response) else Response(200, result)
        if self._not_found is None:
            return Response(404, {"statusCode": 404, "message": "Not found"})
        return self._not_found(LookupError(f"no route {event.http_method} {event.path}"))

    def _handler_for(self, exc_type: type[BaseException]) -> ExceptionHandler | None:
        for cls in exc_type.__mro__:
            if cls in self._exception_handlers:
                return self._exception_handlers[cls]
        return None

    @staticmethod
    def _shape(response: Response[Any], *, url: bool) -> dict[str, Any]:
        headers = {"Content-Type": response.content_type, **(response.headers or {})}
        body = response.body if isinstance(response.body, str) else to_json(response.body)
        out: dict[str, Any] = {"statusCode": response.status_code, "body": body, "isBase64Encoded": False}
        if url:
            out |= {"headers": headers, "cookies": []}
        else:
            out["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
        return out
