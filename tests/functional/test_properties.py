"""Property-based tests: the real Lambda handlers, in-process (moto for AWS), fed arbitrary JSON documents.

The property of every HTTP route: whatever the body, path segment or query string, the handler returns a
response dict (no exception escapes it: on Lambda that is a 502), the status is below 500, every 4xx carries
a JSON ``{"error": {"type", "message"}}`` and every 2xx body is JSON. The property of the SQS batcher: it
returns, and every message is either answered (a row in the results table) or reported in
``batchItemFailures`` -- the latter only when it cannot be tied to a request at all (not a JSON object, or
batch_id/request_id missing or not matching the id pattern in full). "JSON" there is RFC 8259's: a message
with valid ids that elsewhere nests thousands deep or holds a 5,000-digit integer is still a JSON object
(Python's json cannot read it, but it must get an error result, not a trip to the DLQ); NaN/Infinity
literals are not JSON, but Python reads them, so such a message may go either way.

Two checks stand in for AWS behaviour moto does not have: what ``POST /v1/batches`` enqueues must be a body
real SQS accepts (its character set excludes lone surrogates, U+FFFE/U+FFFF and most C0 controls), and a
response must survive the python3.12+ runtime's serialisation (``ensure_ascii=False``, then UTF-8).

"Arbitrary" is built by hand below, because hypothesis' default text strategy leaves out lone surrogates:
every string JSON can carry (lone and misordered surrogates, C0/C1 controls, format characters, private use,
unassigned code points and noncharacters, strings up to 50,000 characters, empty and whitespace-only ones),
JSON text written ASCII-escaped and raw, as base64 and as text (a text body carrying a raw lone surrogate
only reaches a function by direct invocation), UTF-16/32, text that is not JSON, invalid UTF-8, huge and
non-finite numbers, nesting up to 50,000 deep, and the documented shapes with a value (at any key or list
item) replaced by any JSON value, a key dropped or an extra key added.

PROPERTY_EXAMPLES (default 150) sets the examples per test; the ``slow`` parametrisation runs
PROPERTY_SLOW_EXAMPLES (default 10,000) per route: ``pytest -m slow tests/functional/test_properties.py``.
PROPERTY_SHRINK_SECONDS (default 20) bounds how long hypothesis shrinks a failure, per test.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import re
import sys
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from tests.functional.conftest import MODELS, api_event, body_of, invoke, sqs_event
from topicserve.results import ResultChunk

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "150"))
SLOW_EXAMPLES = int(os.environ.get("PROPERTY_SLOW_EXAMPLES", "10000"))
#: Hypothesis shrinks a failure for up to 300 s per test; a failing batcher example costs ~0.1-0.2 s a run,
#: so that alone would blow the file's ~2-minute budget. The best example found by then is still reported.
SHRINK_SECONDS = int(os.environ.get("PROPERTY_SHRINK_SECONDS", "20"))
COUNTS = [
    pytest.param(EXAMPLES, id="default"),
    pytest.param(SLOW_EXAMPLES, id="slow", marks=pytest.mark.slow),
]
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # the documented id pattern, anchored at both ends
SQS_MAX_BYTES = 256 * 1024


def property_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
        database=None,
    )


def pick(draw: Callable[[st.SearchStrategy[Any]], Any], *options: tuple[int, st.SearchStrategy[Any]]) -> Any:
    """Draw from one of ``options`` chosen by weight; shrinks towards the first."""
    n = draw(st.integers(0, sum(weight for weight, _ in options) - 1))
    for weight, strategy in options:
        if n < weight:
            return draw(strategy)
        n -= weight
    raise AssertionError("unreachable")


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """one_of with weights (hypothesis' one_of neither weights nor repeats a branch); shrinks to the first."""

    @st.composite
    def strategy(draw: Any) -> Any:
        return pick(draw, *options)

    return strategy()


# -- characters --------------------------------------------------------------------------------------------


def _code_points(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(chr)


SURROGATE = _code_points(0xD800, 0xDFFF)
CONTROL = st.one_of(_code_points(0x00, 0x1F), _code_points(0x7F, 0x9F))
FORMAT = st.sampled_from(
    [
        "\u200b",  # zero-width space
        "\u200c",  # zero-width non-joiner
        "\u200d",  # zero-width joiner
        "\u2060",  # word joiner
        "\ufeff",  # BOM / zero-width no-break space
        "\u200e",  # left-to-right mark
        "\u200f",  # right-to-left mark
        "\u061c",  # arabic letter mark
        "\u202a",
        "\u202b",
        "\u202c",
        "\u202d",
        "\u202e",  # bidi embeddings and overrides
        "\u2066",
        "\u2067",
        "\u2068",
        "\u2069",  # bidi isolates
        "\u00ad",  # soft hyphen
        "\u034f",  # combining grapheme joiner
        "\u180e",  # mongolian vowel separator
        "\ufffd",  # replacement character
        "\ufffc",  # object replacement character
        "\U000e0001",  # language tag
    ]
)
PRIVATE_USE = st.one_of(
    _code_points(0xE000, 0xF8FF), _code_points(0xF0000, 0xFFFFD), _code_points(0x100000, 0x10FFFD)
)
_NONCHARACTERS = [chr(c) for c in range(0xFDD0, 0xFDF0)] + [
    chr(plane * 0x10000 + last) for plane in range(17) for last in (0xFFFE, 0xFFFF)
]
_UNASSIGNED = [chr(c) for c in range(0x0378, 0x110000, 61) if unicodedata.category(chr(c)) == "Cn"]
UNASSIGNED = st.sampled_from(_UNASSIGNED)
NONCHARACTER = st.sampled_from(_NONCHARACTERS)  # U+FFFE, U+FFFF (not in SQS's character set), ...
WHITESPACE = st.sampled_from([chr(c) for c in range(0x3001) if chr(c).isspace()])
COMBINING = st.sampled_from(["\u0301", "\u0308", "\u0327", "\u0345", "\u20dd", "\u1ab0", "\ufe0f", "\u0e47"])
ASCII = _code_points(0x20, 0x7E)
ANY_CHAR = _code_points(0, 0x10FFFF)
CHAR = weighted(
    (6, ASCII),
    (2, ANY_CHAR),
    (1, SURROGATE),
    (1, CONTROL),
    (1, FORMAT),
    (1, PRIVATE_USE),
    (1, UNASSIGNED),
    (1, NONCHARACTER),
    (1, WHITESPACE),
    (1, COMBINING),
)
# what SQS accepts in a message body: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF
_SQS_BAD_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sqs_deliverable(body: str) -> bool:
    return not _SQS_BAD_CHAR.search(body) and len(body.encode("utf-8")) <= SQS_MAX_BYTES


# -- strings -----------------------------------------------------------------------------------------------

# fmt: off
WORDS = (
    "space", "shuttle", "orbit", "launch", "nasa", "hockey", "goalie", "playoff", "baseball", "pitcher",
    "graphics", "card", "driver", "linux", "windows", "monitor", "encryption", "key", "clipper", "gun",
    "control", "israel", "church", "god", "bible", "car", "engine", "motorcycle", "doctor", "medicine",
    "patient", "sale", "offer", "electronics", "circuit", "mac", "apple",
)
# fmt: on


SENTENCE = st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join)


@st.composite
def decorated_sentences(draw: Any) -> str:
    """A plain sentence with a few odd characters slipped in anywhere."""
    text = draw(SENTENCE)
    for char in draw(st.lists(CHAR, min_size=1, max_size=3)):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + char + text[at:]
    return text


@st.composite
def long_strings(draw: Any) -> str:
    unit = draw(st.one_of(SENTENCE.map(lambda s: s + " "), st.text(CHAR, min_size=1, max_size=4)))
    size = draw(st.sampled_from([20_001, 257, 4_096, 19_999, 20_000, 50_000]))
    return (unit * (size // len(unit) + 1))[:size]


SURROGATE_MIX = st.lists(
    st.one_of(
        SURROGATE,
        ASCII,
        st.sampled_from(
            ["\udc00\ud800", "\ud800\ud800", "\udfff", "\ud83d\ude00", "\ude00\ud83d", "\ud800a"]
        ),
        SENTENCE,
    ),
    min_size=1,
    max_size=5,
).map("".join)
ODD_ONLY = st.text(
    st.one_of(FORMAT, CONTROL, PRIVATE_USE, UNASSIGNED, NONCHARACTER, COMBINING), min_size=1, max_size=6
)


@st.composite
def json_strings(draw: Any) -> str:
    return pick(
        draw,
        (30, SENTENCE),
        (10, decorated_sentences()),
        (12, st.text(CHAR, max_size=24)),
        (3, st.just("")),
        (5, st.text(WHITESPACE, min_size=1, max_size=6)),
        (8, SURROGATE_MIX),
        (5, ODD_ONLY),
        (1, long_strings()),
    )


JSON_STRING = json_strings()
SHORT_STRING = st.one_of(SENTENCE, st.text(CHAR, max_size=12), SURROGATE_MIX, ODD_ONLY, st.just(""))


# -- JSON values, including what json.dumps cannot write ---------------------------------------------------


@dataclass(frozen=True, repr=False)
class Raw:
    """JSON text spliced verbatim into a document: huge numbers, NaN literals, deep nesting."""

    text: str

    def __repr__(self) -> str:
        return f"Raw({shorten(self.text)})"


NONSTANDARD_LITERALS = {"NaN", "Infinity", "-Infinity"}  # Python's json reads them; RFC 8259 does not
SPECIAL_NUMBERS = [
    "1e400",
    "-1e400",
    "1E-400",
    "-0",
    "-0.0",
    "0e0",
    "1" + "0" * 400,  # 10**400
    "-" + "9" * 4300,  # the most digits Python's int() reads by default
    "1" * 4301,  # one more
    "123456789012345678901234567890.5",
    "1e999999999999999999",
    "0.1e-999999999",
    "NaN",
    "Infinity",
    "-Infinity",
]


@st.composite
def deep_nesting(draw: Any) -> Raw:
    depth = draw(st.sampled_from([100, 500, 999, 1000, 3000, 20_000, 50_000]))
    shape = draw(st.sampled_from(["array", "object", "mixed", "array-in-object"]))
    if shape == "array":
        return Raw("[" * depth + "]" * depth)
    if shape == "object":
        return Raw('{"a":' * depth + "0" + "}" * depth)
    if shape == "mixed":
        return Raw('[{"text":' * depth + '"x"' + "}]" * depth)
    return Raw('{"texts":[' * depth + '"x"' + "]}" * depth)


SCALAR = weighted(
    (8, JSON_STRING),
    (2, st.none()),
    (2, st.booleans()),
    (3, st.integers()),
    (1, st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 2**64, 0])),
    (3, st.floats()),  # NaN, +-Infinity and -0.0 included: json.dumps writes NaN/Infinity literals
    (2, st.sampled_from(SPECIAL_NUMBERS).map(Raw)),
    (1, deep_nesting()),
)
JSON_VALUE = st.recursive(
    SCALAR,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(JSON_STRING, children, max_size=4)
    ),
    max_leaves=6,
)


def dumps(value: Any, *, ascii: bool = True) -> str:
    """json.dumps that also writes :class:`Raw` text verbatim (and NaN/Infinity as Python does)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        items = (
            f"{json.dumps(str(k), ensure_ascii=ascii)}:{dumps(v, ascii=ascii)}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v, ascii=ascii) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii)


def nonstandard(value: Any) -> bool:
    """Whether a document holds a NaN/Infinity literal (accepted by Python, not JSON by RFC 8259)."""
    if isinstance(value, Raw):
        return value.text in NONSTANDARD_LITERALS
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return any(nonstandard(v) for v in value.values())
    if isinstance(value, list):
        return any(nonstandard(v) for v in value)
    return False


def shorten(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:200]}...<{len(text)} chars>...{text[-60:]}"


# -- the documented shapes, then broken at one key ---------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _objects(value: Any) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        yield ()
    for path in _paths(value):
        if isinstance(_get(value, path), dict):
            yield path


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


EXTRA_KEYS = st.one_of(
    st.sampled_from(
        [
            "Text",
            "text ",
            "txt",
            "model",
            "models",
            "id",
            "texts",
            "text",
            "requests",
            "batch_id",
            "request_id",
        ]
    ),
    st.sampled_from(["__proto__", "constructor", "", "\u0000", "\ud800", "#meta", "ttl", "result"]),
    SHORT_STRING,
)


@st.composite
def broken(draw: Any, documents: st.SearchStrategy[Any]) -> Any:
    """A document with 0-2 edits: a value (at any key or list item) replaced by any JSON value, a key
    dropped, or an extra key added. Zero edits (the documented shape) is what shrinking aims for."""
    doc = copy.deepcopy(draw(documents))
    for _ in range(draw(st.integers(0, 2))):
        edit = draw(st.sampled_from(["replace", "extra", "delete"]))
        paths = list(_paths(doc))
        if edit == "replace" and paths:
            path = draw(st.sampled_from(paths))
            _get(doc, path[:-1])[path[-1]] = draw(JSON_VALUE)
        elif edit == "delete" and paths:
            path = draw(st.sampled_from(paths))
            del _get(doc, path[:-1])[path[-1]]
        else:
            objects = list(_objects(doc))
            if objects:
                _get(doc, draw(st.sampled_from(objects)))[draw(EXTRA_KEYS)] = draw(JSON_VALUE)
    return doc


MODEL_NAME = weighted(
    (6, st.sampled_from(MODELS)),
    (1, st.sampled_from(["bert", "LOGREG", " logreg", "logreg\u200b", "", "encoder-int8", "rf\ud800"])),
    (1, SHORT_STRING),
)
MODEL_LIST = st.lists(MODEL_NAME, max_size=5)
VALID_ID = st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True)
ANY_ID = weighted(
    (4, VALID_ID),
    (1, st.sampled_from(["#meta", "", "a b", "x" * 129, "x" * 128, "ok\n", "\u00e9", "a/b", "..", "%2F"])),
    (1, SHORT_STRING),
)


@st.composite
def predict_shapes(draw: Any) -> Any:
    return pick(
        draw,
        (8, st.fixed_dictionaries({"text": JSON_STRING})),
        (8, st.fixed_dictionaries({"texts": st.lists(JSON_STRING, min_size=1, max_size=4)})),
        (1, st.just({"texts": []})),
        (1, st.fixed_dictionaries({"texts": st.lists(SENTENCE, min_size=64, max_size=65)})),
        (1, st.fixed_dictionaries({"text": JSON_STRING, "texts": st.lists(JSON_STRING, max_size=2)})),
        (1, st.just({})),
    )


@st.composite
def batch_shapes(draw: Any) -> Any:
    request = st.fixed_dictionaries({"text": JSON_STRING}, optional={"id": ANY_ID, "models": MODEL_LIST})
    return pick(
        draw,
        (
            8,
            st.fixed_dictionaries(
                {"texts": st.lists(JSON_STRING, min_size=1, max_size=4)}, optional={"models": MODEL_LIST}
            ),
        ),
        (
            8,
            st.fixed_dictionaries(
                {"requests": st.lists(request, min_size=1, max_size=4)}, optional={"models": MODEL_LIST}
            ),
        ),
        (1, st.fixed_dictionaries({"texts": st.lists(JSON_STRING, max_size=2), "requests": st.just([])})),
        (1, st.just({})),
    )


def documents(shapes: st.SearchStrategy[Any], *whole: Any) -> st.SearchStrategy[Any]:
    """Mostly the documented shapes (broken or not), sometimes any JSON value, deep nesting, or one of
    ``whole`` as it is (documents too big to edit cheaply: an edit could make them valid and costly)."""
    options = [(8, broken(shapes)), (1, JSON_VALUE), (1, deep_nesting())]
    return weighted(*options, *([(1, st.sampled_from(whole))] if whole else []))


# -- bodies as API Gateway delivers them -------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Body:
    """An API Gateway proxy body: text, or base64 of bytes (``isBase64Encoded``); ``how`` says which."""

    how: str
    text: str | None
    b64: bool

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        if self.b64 and self.text is not None:
            try:
                shown: Any = base64.b64decode(self.text, validate=True)
            except ValueError:
                shown = self.text
        else:
            shown = self.text
        return f"Body({self.how}, {shorten(shown)})"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


NOT_JSON_SAMPLES = [
    "{not json",
    "{",
    "[",
    "}",
    "{'text': 'a'}",
    '{"text": "a",}',
    '{"text": "a"} trailing',
    '{"text": "a"}{"text": "b"}',
    '{"text": "a" /* comment */}',
    '{"text": "a"',
    '{"text": "\\x41"}',
    '{"text": "\\u12"}',
    '{"text": "a", "text": 5}',  # duplicate key: JSON, the last one wins in Python
    '{"text": "tab\there"}',  # raw control character inside a string
    "\ufeff{}",
    "nul",
    "tru",
    "  ",
    "\x00",
    "\u2028",
]
INVALID_UTF8 = [
    b"\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\x80",
    b"\xe2\x82",
]


@st.composite
def not_json(draw: Any) -> str:
    return pick(
        draw,
        (4, st.sampled_from(NOT_JSON_SAMPLES)),
        (3, st.text(CHAR, max_size=30)),
        (
            2,
            st.builds(
                lambda doc, cut: dumps(doc)[: max(0, len(dumps(doc)) - cut)],
                broken(predict_shapes()),
                st.integers(1, 5),
            ),
        ),
        (
            1,
            st.builds(
                lambda n, unit: unit * n,
                st.sampled_from([1000, 20_000, 100_000]),
                st.sampled_from(["[", '{"a":', '{"text":[', "[{"]),
            ),
        ),
    )


@st.composite
def http_bodies(draw: Any, shapes: st.SearchStrategy[Any], *whole: Any) -> Body:
    how = pick(
        draw,
        (10, st.just("json, ASCII-escaped, base64")),
        (4, st.just("json, ASCII-escaped, text")),
        (3, st.just("json, raw UTF-8 (surrogatepass), base64")),
        (2, st.just("json, raw str, text")),
        (1, st.sampled_from(["utf-16", "utf-32", "utf-8-sig", "utf-16-be"])),
        (3, st.just("not json, text")),
        (1, st.just("not json, UTF-8 (surrogatepass), base64")),
        (2, st.just("json with invalid UTF-8 bytes, base64")),
        (1, st.just("random bytes, base64")),
        (1, st.sampled_from(["no body", "empty text", "empty base64", "bad base64", "base64 of whitespace"])),
    )
    if how.startswith("json"):
        doc = draw(documents(shapes, *whole))
        if how == "json, ASCII-escaped, base64":
            return Body(how, _b64(dumps(doc).encode("ascii")), True)
        if how == "json, ASCII-escaped, text":
            return Body(how, dumps(doc), False)
        if how == "json, raw UTF-8 (surrogatepass), base64":
            return Body(how, _b64(dumps(doc, ascii=False).encode("utf-8", "surrogatepass")), True)
        if how == "json, raw str, text":
            return Body(how, dumps(doc, ascii=False), False)
        data = bytearray(dumps(doc, ascii=False).encode("utf-8", "surrogatepass"))
        for bad in draw(st.lists(st.sampled_from(INVALID_UTF8), min_size=1, max_size=3)):
            at = draw(st.integers(0, len(data)))
            data[at:at] = bad
        return Body(how, _b64(bytes(data)), True)
    if how in ("utf-16", "utf-32", "utf-8-sig", "utf-16-be"):
        doc = draw(documents(shapes, *whole))
        return Body(f"json, {how}, base64", _b64(dumps(doc).encode(how)), True)
    if how == "not json, text":
        return Body(how, draw(not_json()), False)
    if how == "not json, UTF-8 (surrogatepass), base64":
        return Body(how, _b64(draw(not_json()).encode("utf-8", "surrogatepass")), True)
    if how == "random bytes, base64":
        return Body(how, _b64(draw(st.binary(min_size=1, max_size=64))), True)
    return {
        "no body": Body(how, None, False),
        "empty text": Body(how, "", False),
        "empty base64": Body(how, "", True),
        "bad base64": Body(how, draw(st.sampled_from(["!!!", "abc", "a===", "{}", "eyJ0ZXh0Ijo"])), True),
        "base64 of whitespace": Body(how, _b64(b" \r\n\t"), True),
    }[how]


# -- inputs every run tries first (hypothesis @example): each broke a handler once --------------------------


def _escaped(json_text: str) -> Body:
    return Body("json, ASCII-escaped, base64", _b64(json_text.encode("ascii")), True)


DEEP = "[" * 5000 + "]" * 5000
PREDICT_EXAMPLES = [
    _escaped('{"text":"\\ud800"}'),  # a lone surrogate (UnicodeEncodeError when hashed)
    _escaped('{"texts":["ok","\\udc00\\ud800"]}'),
    _escaped('{"text":"\\u200b"}'),  # nothing the encoder can read
    Body("json, raw str, text", '{"text":"a\ud800"}', False),  # (direct invoke) raw lone surrogate
    Body("not json, text", "\ud800", False),
    _escaped(DEEP),  # RecursionError in json.loads
    _escaped('{"text":' + DEEP + "}"),
    _escaped('{"text":' + "1" * 4301 + "}"),  # past int()'s 4,300 digits
]
BATCH_EXAMPLES = [
    _escaped('{"texts":["\\ud800"]}'),  # queued with a raw lone surrogate: SQS refuses it
    _escaped('{"texts":["a\\uffff"]}'),  # U+FFFF is outside SQS's character set
    _escaped('{"requests":[{"id":"ok\\n","text":"hockey"}]}'),
    Body("not json, text", '{"texts":["a"]}\udc00', False),
    _escaped('{"texts":' + DEEP + "}"),
]


# -- events, calls and checks ------------------------------------------------------------------------------

Query = dict[str, list[str]]


def http_event(
    method: str,
    path: str,
    *,
    resource: str,
    body: Body | None = None,
    path_parameters: dict[str, str] | None = None,
    query: Query | None = None,
) -> dict[str, Any]:
    event = api_event(method, path, None, resource=resource)
    event["pathParameters"] = path_parameters
    if body is not None:
        event["body"], event["isBase64Encoded"] = body.text, body.b64
    if query:
        event["queryStringParameters"] = {key: values[-1] for key, values in query.items()}
        event["multiValueQueryStringParameters"] = {key: list(values) for key, values in query.items()}
    return event


class _LoggedErrors(logging.Handler):
    """The exceptions a handler logs (a catch-all that answers 500 logs the real cause)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.exceptions: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.exceptions.append(record.exc_info[1])


LOGGED = _LoggedErrors()


def call(module: ModuleType, event: dict[str, Any], seen: Counter[str]) -> Any:
    """Invoke a handler; an exception escaping it is counted, then re-raised as the failure it is."""
    LOGGED.exceptions.clear()
    logger = logging.getLogger(module.logger.name)  # the handler's Powertools logger
    logger.addHandler(LOGGED)
    try:
        return invoke(module, event)
    except Exception as exc:
        seen[f"raised {type(exc).__name__}"] += 1
        raise
    finally:
        logger.removeHandler(LOGGED)


def check_http(response: Any, seen: Counter[str]) -> None:
    assert isinstance(response, dict), f"the handler returned {type(response).__name__}, not a response"
    status = response.get("statusCode")
    seen[str(status)] += 1
    assert isinstance(status, int), f"statusCode {status!r}"
    body = response.get("body")
    if status >= 500:  # chained to what the handler logged, so each cause is a failure of its own
        cause = LOGGED.exceptions[-1] if LOGGED.exceptions else None
        raise AssertionError(f"server error {status}: {shorten(body, 600)}; logged: {cause!r}") from cause
    assert isinstance(body, str), f"{status} with body {shorten(body)}"
    try:  # what the python3.12+ Lambda runtime does with a response (ensure_ascii=False, then UTF-8)
        json.dumps(response, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError) as exc:
        raise AssertionError(f"the Lambda runtime cannot serialise this response: {exc!r}") from exc
    if 400 <= status < 500:
        try:
            error = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AssertionError(f"{status} without a JSON error body: {shorten(body)}") from exc
        assert isinstance(error, dict), f"{status}: error is {shorten(error)}"
        assert isinstance(error.get("type"), str) and error["type"], f"{status}: no error.type: {body[:300]}"
        message = error.get("message")
        assert isinstance(message, str) and message.strip(), f"{status}: empty error.message: {body[:300]}"
    elif 200 <= status < 300:
        try:
            json.loads(body)
        except ValueError as exc:
            raise AssertionError(f"{status} with a body that is not JSON: {shorten(body)}") from exc


SUMMARY: list[str] = []


def run_counted(name: str, examples: int, seen: Counter[str], run: Callable[[], None]) -> None:
    started = time.monotonic()
    outcome = "FAILED"
    try:
        run()
        outcome = "passed"
    finally:
        line = (
            f"[properties] {name}: {outcome}, {examples} examples asked, {sum(seen.values())} outcomes in "
            f"{time.monotonic() - started:.1f} s: {dict(sorted(seen.items()))}"
        )
        SUMMARY.append(line)
        print(f"\n{line}", flush=True)


@pytest.fixture(scope="module", autouse=True)
def _bounded_shrinking() -> Iterator[None]:
    from hypothesis.internal.conjecture import engine

    saved = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if saved is not None:
        engine.MAX_SHRINKING_SECONDS = SHRINK_SECONDS  # read when shrinking starts
    yield
    if saved is not None:
        engine.MAX_SHRINKING_SECONDS = saved


@pytest.fixture(scope="module", autouse=True)
def _print_summary() -> Iterator[None]:
    yield
    if SUMMARY:
        sys.stdout.write("\n" + "\n".join(SUMMARY) + "\n")
        SUMMARY.clear()


# -- 1. POST /v1/predict/{model} ---------------------------------------------------------------------------


def predict_example(handlers: dict[str, ModuleType], body: Body, seen: Counter[str]) -> None:
    note(body.describe())
    event = http_event("POST", "/v1/predict/logreg", resource="/v1/predict/logreg", body=body)
    check_http(call(handlers["logreg"], event, seen), seen)


@pytest.mark.parametrize("examples", COUNTS)
def test_predict_logreg_never_answers_5xx(handlers: dict[str, ModuleType], examples: int) -> None:
    seen: Counter[str] = Counter()

    @property_settings(examples)
    @given(body=http_bodies(predict_shapes()))
    def run(body: Body) -> None:
        predict_example(handlers, body, seen)

    for body in PREDICT_EXAMPLES:
        run = example(body=body)(run)

    run_counted("POST /v1/predict/logreg", examples, seen, run)


MODEL_SEGMENT = weighted(
    (6, st.sampled_from(MODELS)),
    (
        1,
        st.sampled_from(
            ["bert", "LOGREG", "logreg ", "log%72eg", "logreg/", "..", "%2e%2e", "logreg\x00", "", "a" * 300]
        ),
    ),
    (1, SHORT_STRING),
    (1, JSON_STRING),
)


def model_segment_example(
    handlers: dict[str, ModuleType], model: str, body: Body, seen: Counter[str]
) -> None:
    """API Gateway sends /v1/predict/<served model> to that model's function, anything else to the API."""
    note(f"POST /v1/predict/{shorten(model)}; {body.describe()}")
    served = model in MODELS
    event = http_event(
        "POST",
        f"/v1/predict/{model}",
        resource=f"/v1/predict/{model}" if served else "/v1/predict/{model}",
        path_parameters=None if served else {"model": model},
        body=body,
    )
    check_http(call(handlers[model] if served else handlers["api"], event, seen), seen)


@pytest.mark.parametrize("examples", COUNTS)
def test_predict_any_model_segment_never_answers_5xx(handlers: dict[str, ModuleType], examples: int) -> None:
    seen: Counter[str] = Counter()

    @property_settings(examples)
    @given(model=MODEL_SEGMENT, body=http_bodies(predict_shapes()))
    def run(model: str, body: Body) -> None:
        model_segment_example(handlers, model, body, seen)

    for model, body in [("mlp", PREDICT_EXAMPLES[0]), ("bert", PREDICT_EXAMPLES[5]), ("\ud800", None)]:
        run = example(model=model, body=body or _escaped('{"text":"x"}'))(run)

    run_counted("POST /v1/predict/{model}", examples, seen, run)


# -- 2. POST /v1/batches -----------------------------------------------------------------------------------


def requests_in(body: str) -> int:
    """Requests one queued message carries: a chunk's, or one."""
    return len(json.loads(body).get("requests", [None]))


def drain(stack: dict[str, Any], count: int) -> list[str]:
    """Receive (and delete) the messages of up to ``count`` requests from the requests queue."""
    sqs, url, bodies = stack["sqs"], stack["queue_url"], []
    for _ in range(count // 10 + 20):
        if sum(map(requests_in, bodies)) >= count:
            break
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        bodies += [m["Body"] for m in got]
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
        )
    return bodies


OVERSIZED_BATCHES = ({"texts": ["x"] * 1001}, {"requests": [{"text": "x"}] * 1001})


def submit_batch_example(
    handlers: dict[str, ModuleType], stack: dict[str, Any], body: Body, seen: Counter[str]
) -> None:
    note(body.describe())
    # start from an empty queue (purge: a message moto cannot even read back would block a drain)
    stack["sqs"].purge_queue(QueueUrl=stack["queue_url"])
    event = http_event("POST", "/v1/batches", resource="/v1/batches", body=body)
    response = call(handlers["api"], event, seen)
    check_http(response, seen)
    if response["statusCode"] == 202:
        answer = body_of(response)
        count = answer.get("queued", answer["count"])  # "queued": the accepted part of a partial batch
        messages = drain(stack, count)
        enqueued = sum(map(requests_in, messages))
        assert enqueued == count, f"202 with {count} queued, but {enqueued} were enqueued"
        # moto takes any string, real SQS refuses a body with characters outside its set: the API would
        # then answer 5xx (BackendUnavailableError or an uncaught ClientError) instead of this 202
        for message in messages:
            assert sqs_deliverable(message), f"202, but real SQS would refuse the message {shorten(message)}"


@pytest.mark.parametrize("examples", COUNTS)
def test_submit_batch_never_answers_5xx(
    handlers: dict[str, ModuleType], stack: dict[str, Any], examples: int
) -> None:
    seen: Counter[str] = Counter()

    @property_settings(examples)
    @given(body=http_bodies(batch_shapes(), *OVERSIZED_BATCHES))
    def run(body: Body) -> None:
        submit_batch_example(handlers, stack, body, seen)

    for body in BATCH_EXAMPLES:
        run = example(body=body)(run)

    run_counted("POST /v1/batches", examples, seen, run)


# -- 3. GET /v1/batches/{id}?limit=N&next=TOKEN ------------------------------------------------------------


#: Batches that exist: complete (25 results), pending (2 of 5), no #meta item (sent straight to SQS), empty
KNOWN_BATCHES = ["known-complete", "known-pending", "known-sqs", "known-empty"]


@pytest.fixture(scope="module")
def known_batches(handlers: dict[str, ModuleType]) -> list[str]:
    store = handlers["api"].results
    complete, pending, headless, empty = KNOWN_BATCHES
    answer = {"status": "ok", "models": {}, "encoder_version": "test"}
    store.create_batch(complete, 25)
    store.write(
        [
            ResultChunk(complete, n, tuple((str(i), answer) for i in range(10 * n, min(25, 10 * n + 10))))
            for n in range(3)
        ]
    )
    store.create_batch(pending, 5)
    store.write([ResultChunk(pending, 0, tuple((str(i), answer) for i in range(2)))])
    store.put_results([(headless, f"r{i}", answer) for i in range(3)])
    store.create_batch(empty, 3)
    return KNOWN_BATCHES


LIMIT = st.one_of(
    st.sampled_from(["1", "2", "10", "25", "100", "1000", "0", "-1", "1001", "2147483648", "10" * 200]),
    st.sampled_from(["9" * 5000, "1e3", "1.0", " 5", "5 ", "+5", "05", "1_0", "0x10", "\u0663", "\u00b2"]),
    st.sampled_from(["\u216b", "", " ", "null", "NaN", "inf", "-0", "true", "[1]", "5\x00", "\ud800", "%35"]),
    st.integers(-(10**6), 10**6).map(str),
    SHORT_STRING,
)


def _token(data: bytes, variant: str) -> str:
    if variant == "urlsafe":
        return base64.urlsafe_b64encode(data).decode("ascii")
    if variant == "urlsafe, unpadded":
        return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
    return base64.b64encode(data).decode("ascii")


@st.composite
def next_tokens(draw: Any, known: list[str]) -> str:
    """Continuation tokens as a server might write them (base64 of a JSON key), tampered, or anything."""
    variant = draw(st.sampled_from(["urlsafe", "urlsafe, unpadded", "standard"]))
    batch = st.one_of(st.sampled_from(known), ANY_ID)
    key = st.one_of(
        st.fixed_dictionaries(
            {
                "batch_id": st.fixed_dictionaries({"S": batch}),
                "request_id": st.fixed_dictionaries({"S": ANY_ID}),
            }
        ),
        st.fixed_dictionaries({"batch_id": batch, "request_id": ANY_ID}),
        st.fixed_dictionaries({"request_id": st.one_of(ANY_ID, JSON_VALUE)}),
        st.fixed_dictionaries({"batch_id": st.fixed_dictionaries({"N": st.just("1")})}),
    )
    return pick(
        draw,
        (4, key.map(lambda k: _token(dumps(k).encode(), variant))),
        (
            2,
            JSON_VALUE.map(lambda v: _token(dumps(v, ascii=False).encode("utf-8", "surrogatepass"), variant)),
        ),
        (2, st.binary(max_size=48).map(lambda b: _token(b, variant))),
        (2, SHORT_STRING),
        (1, st.sampled_from(["", "=", "==", "null", "%", "%%", "a" * 10_000, "eyJ9", "e30", "e30=", "W10"])),
        (1, JSON_STRING),
    )


@st.composite
def batch_queries(draw: Any, known: list[str]) -> Query:
    query: Query = {}
    if draw(st.booleans()):
        query["limit"] = draw(st.lists(LIMIT, min_size=1, max_size=3))
    if draw(st.booleans()):
        query["next"] = draw(st.lists(next_tokens(known), min_size=1, max_size=2))
    other_keys = st.one_of(
        st.sampled_from(
            ["Limit", "NEXT", "next_token", "nextToken", "cursor", "page", "offset", "limit[]", ""]
        ),
        SHORT_STRING,
    )
    values = st.lists(st.one_of(LIMIT, next_tokens(known), SHORT_STRING), min_size=1, max_size=2)
    for key, value in draw(st.dictionaries(other_keys, values, max_size=2)).items():
        query.setdefault(key, value)
    return query


def batch_ids(known: list[str]) -> st.SearchStrategy[str]:
    return weighted(
        (3, st.sampled_from(known)),
        (2, ANY_ID),
        (1, st.sampled_from(["#meta", "%23meta", "a/b", "x" * 2049, "known", " ", "\ud800", "\x00"])),
        (1, JSON_STRING),
    )


_COMPLETE = KNOWN_BATCHES[0]
GET_EXAMPLES: list[tuple[str, Query, list[Follow]]] = [
    ("x" * 2049, {}, []),  # over DynamoDB's 2,048-byte partition key (moto does not check)
    ("#meta", {}, []),
    (
        _COMPLETE,
        {"limit": ["1"]},
        [("as given", 0, 0, ""), ("other batch", 1, 0, ""), ("truncated", 0, 3, "")],
    ),
    (_COMPLETE, {"limit": ["10"]}, [("appended", 0, 0, "\ud800"), ("appended", 0, 0, "=")]),
    (_COMPLETE, {"limit": ["0"]}, []),
    (_COMPLETE, {"limit": ["9" * 5000]}, []),
    (_COMPLETE, {"limit": ["\u0663"]}, []),  # ARABIC-INDIC DIGIT THREE: int() reads it
    (_COMPLETE, {"limit": ["1", "2"], "next": ["a", "b"]}, []),
    (_COMPLETE, {"next": ["!!"]}, []),
    (_COMPLETE, {"next": [_token(b"#meta", "urlsafe, unpadded")]}, []),
    (_COMPLETE, {"next": [_token("\ud800".encode("utf-8", "surrogatepass"), "urlsafe")]}, []),
    (KNOWN_BATCHES[2], {"limit": ["1"], "next": [_token(b"r1", "urlsafe, unpadded")]}, []),
]

CONTINUATION_KEYS = ("next", "next_token", "nextToken", "cursor", "continuation")


def continuation(body: Any) -> str | None:
    """The continuation token of a page, wherever a server would likely put it."""
    if not isinstance(body, dict):
        return None
    for holder in (body, body.get("page"), body.get("pagination")):
        if isinstance(holder, dict):
            for key in CONTINUATION_KEYS:
                if isinstance(holder.get(key), str) and holder[key]:
                    return holder[key]
    return None


#: What to do with each continuation token a page hands out: (how, which known batch, cut at, suffix)
Follow = tuple[str, int, int, str]
FOLLOW_PLAN = st.lists(
    st.tuples(
        st.sampled_from(["as given", "other batch", "truncated", "appended", "limit 1"]),
        st.integers(0, len(KNOWN_BATCHES) - 1),
        st.integers(0, 200),
        st.sampled_from(["A", "=", "%", "\ud800", "\u00e9", "\x00"]),
    ),
    max_size=3,
)


def get_batch_example(
    handlers: dict[str, ModuleType], batch_id: str, query: Query, plan: list[Follow], seen: Counter[str]
) -> None:
    def get(target: str, query: Query) -> dict[str, Any]:
        event = http_event(
            "GET",
            f"/v1/batches/{target}",
            resource="/v1/batches/{batch_id}",
            path_parameters={"batch_id": target},
            query=query,
        )
        response = call(handlers["api"], event, seen)
        check_http(response, seen)
        return response

    note(f"GET /v1/batches/{shorten(batch_id)} query {shorten(query, 600)}")
    response = get(batch_id, query)
    for use, other, cut, suffix in plan:  # follow (and tamper with) the tokens the server hands out
        token = continuation(body_of(response)) if response["statusCode"] == 200 else None
        if token is None:
            break
        target, follow = batch_id, {**query, "next": [token]}
        if use == "other batch":
            target = KNOWN_BATCHES[other]
        elif use == "truncated":
            follow["next"] = [token[: min(cut, len(token) - 1)]]
        elif use == "appended":
            follow["next"] = [token + suffix]
        elif use == "limit 1":
            follow["limit"] = ["1"]
        note(f"then {use}: GET /v1/batches/{shorten(target)} query {shorten(follow, 600)}")
        response = get(target, follow)


@pytest.mark.parametrize("examples", COUNTS)
def test_get_batch_with_any_id_and_pagination_never_answers_5xx(
    handlers: dict[str, ModuleType], known_batches: list[str], examples: int
) -> None:
    seen: Counter[str] = Counter()

    @property_settings(examples)
    @given(batch_id=batch_ids(known_batches), query=batch_queries(known_batches), plan=FOLLOW_PLAN)
    def run(batch_id: str, query: Query, plan: list[Follow]) -> None:
        get_batch_example(handlers, batch_id, query, plan, seen)

    for batch_id, query, plan in GET_EXAMPLES:
        run = example(batch_id=batch_id, query=query, plan=plan)(run)
    run_counted("GET /v1/batches/{id}", examples, seen, run)


# -- 4. GET /v1/models, GET /v1/health ---------------------------------------------------------------------

ANY_QUERY = st.dictionaries(
    st.one_of(st.sampled_from(["limit", "next", "model", "verbose", ""]), SHORT_STRING),
    st.lists(st.one_of(LIMIT, SHORT_STRING, JSON_STRING), min_size=1, max_size=3),
    max_size=4,
)


def models_health_example(
    handlers: dict[str, ModuleType], route: str, query: Query, seen: Counter[str]
) -> None:
    note(f"GET {route} query {shorten(query, 600)}")
    check_http(call(handlers["api"], http_event("GET", route, resource=route, query=query), seen), seen)


@pytest.mark.parametrize("examples", COUNTS)
def test_models_and_health_with_any_query_never_answer_5xx(
    handlers: dict[str, ModuleType], examples: int
) -> None:
    seen: Counter[str] = Counter()

    @property_settings(examples)
    @given(route=st.sampled_from(["/v1/health", "/v1/models"]), query=ANY_QUERY)
    def run(route: str, query: Query) -> None:
        models_health_example(handlers, route, query, seen)

    run_counted("GET /v1/models + /v1/health", examples, seen, run)


# -- 5. the SQS batcher ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchId:
    """A batch id made unique per example: the example's fresh prefix + a drawn (valid) suffix."""

    suffix: str


def resolve(value: Any, prefix: str) -> Any:
    if isinstance(value, BatchId):
        return prefix + value.suffix
    if isinstance(value, dict):
        return {k: resolve(v, prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, prefix) for v in value]
    return value


MESSAGE_SHAPE = st.fixed_dictionaries(
    {
        "batch_id": st.from_regex(r"[A-Za-z0-9_.:-]{0,16}", fullmatch=True).map(BatchId),
        "request_id": weighted((4, VALID_ID), (1, ANY_ID)),
        "text": JSON_STRING,
    },
    optional={"models": MODEL_LIST, "truncated": st.booleans()},
)
SQS_TEXT = st.text(
    weighted((4, ASCII), (1, ANY_CHAR), (1, WHITESPACE), (1, FORMAT), (1, PRIVATE_USE)).filter(
        sqs_deliverable
    ),
    max_size=40,
)


@dataclass(frozen=True, repr=False)
class Message:
    """One SQS record body: a document (``raw`` None) or raw text, and whether it is ASCII-escaped."""

    doc: Any
    raw: str | None
    ascii: bool

    def __repr__(self) -> str:
        return f"Message({shorten(self.doc if self.raw is None else self.raw)}, ascii={self.ascii})"


@st.composite
def sqs_messages(draw: Any) -> Message:
    ascii = draw(st.booleans())
    return pick(
        draw,
        (12, broken(MESSAGE_SHAPE).map(lambda d: Message(d, None, ascii))),
        (2, JSON_VALUE.map(lambda d: Message(d, None, ascii))),
        (1, deep_nesting().map(lambda d: Message(d, None, True))),
        (2, st.one_of(st.sampled_from(NOT_JSON_SAMPLES), SQS_TEXT).map(lambda t: Message(None, t, True))),
    )


class Tie:
    """What a record may get: a row (TIED), a batchItemFailure (UNTIED), or either (EITHER)."""

    TIED, UNTIED, EITHER = "tied", "untied", "either"


def tie_of(doc: Any, body: str) -> tuple[str, tuple[str, str] | None]:
    """The oracle: can this record be tied to a request? JSON is RFC 8259's, so huge numbers and deep
    nesting are JSON; NaN/Infinity literals are not, but Python reads them, so either answer is fine.
    Nesting past Python's parser depth (~1,000 levels) is the documented exception (docs/RELIABILITY.md):
    such a body cannot be read safely, so it may go to the DLQ like any body that cannot be parsed."""
    if len(body.encode("utf-8")) > SQS_MAX_BYTES:
        return Tie.EITHER, None  # SQS cannot deliver it: anything short of raising is fine
    if not isinstance(doc, dict):
        return Tie.UNTIED, None
    ids = doc.get("batch_id"), doc.get("request_id")
    if not all(isinstance(v, str) and ID_PATTERN.fullmatch(v) for v in ids):
        return Tie.UNTIED, None
    either = nonstandard(doc) or nested_beyond_parser(doc)
    return (Tie.EITHER if either else Tie.TIED), (ids[0], ids[1])


def nested_beyond_parser(value: Any) -> bool:
    """Nesting deeper than Python's json reads (it raises RecursionError past ~1,000 levels)."""
    if isinstance(value, Raw):
        return value.text.count("[") + value.text.count("{") >= 900
    if isinstance(value, dict):
        return any(nested_beyond_parser(v) for v in value.values())
    if isinstance(value, list):
        return any(nested_beyond_parser(v) for v in value)
    return False


def _message(request_id: str, text: Any) -> Message:
    return Message({"batch_id": BatchId(""), "request_id": request_id, "text": text}, None, True)


_GOOD = _message("good", "hockey playoff game in overtime")
SQS_EXAMPLES = [
    [_message("s", "\ud800"), _GOOD],  # a lone surrogate failed the whole batch's inference
    [_message("z", "\u200b"), _GOOD],  # nothing the encoder can read
    [_message("d", Raw(DEEP)), _GOOD],  # RecursionError escaped the handler
    [Message(None, DEEP, True), _GOOD],
    [_message("n", Raw("1" * 4301)), _GOOD],  # a JSON object Python's int() refuses
    [_message("ok\n", "hockey"), _GOOD],  # "$" matches before a trailing newline
    [_message("#meta", "hockey"), _GOOD],
]


def beyond_python_json(value: Any) -> bool:
    """JSON by RFC 8259 that Python's json may not read: nesting hundreds deep, integers over 4300 digits."""
    if isinstance(value, Raw):
        digits = value.text.lstrip("-")
        return value.text.count("[") + value.text.count("{") >= 500 or (
            digits.isdigit() and len(digits) > 4300
        )
    if isinstance(value, dict):
        return any(beyond_python_json(v) for v in value.values())
    if isinstance(value, list):
        return any(beyond_python_json(v) for v in value)
    return False


def batcher_example(
    handlers: dict[str, ModuleType], stack: dict[str, Any], messages: list[Message], seen: Counter[str]
) -> None:
    ddb, table = stack["ddb"], stack["env"]["RESULTS_TABLE"]

    def row(key: tuple[str, str]) -> dict[str, Any] | None:
        item = ddb.get_item(
            TableName=table, Key={"batch_id": {"S": key[0]}, "request_id": {"S": key[1]}}, ConsistentRead=True
        )
        return item.get("Item")

    prefix = f"p{uuid.uuid4().hex}-"
    bodies, docs = [], []
    for message in messages:
        if message.raw is not None:
            body = message.raw
            try:
                doc = json.loads(body)
            except (ValueError, RecursionError):
                doc = None
        else:
            doc = resolve(message.doc, prefix)
            body = dumps(doc, ascii=message.ascii)
            if not message.ascii and not sqs_deliverable(body):
                body = dumps(doc)  # SQS carries only some characters raw: send the ASCII-escaped form
        bodies.append(body)
        docs.append(doc)
    ties = [tie_of(doc, body) for doc, body in zip(docs, bodies, strict=True)]
    # ids as written, valid or not (as long as DynamoDB takes them as keys): where a row may have gone
    written = [
        (d["batch_id"], d["request_id"])
        if isinstance(d, dict)
        and all(
            isinstance(d.get(k), str) and 0 < len(d[k].encode("utf-8", "surrogatepass")) <= 1024
            for k in ("batch_id", "request_id")
        )
        else None
        for d in docs
    ]
    for key in {k for k in written if k is not None}:  # a drawn id may repeat an earlier example's
        ddb.delete_item(TableName=table, Key={"batch_id": {"S": key[0]}, "request_id": {"S": key[1]}})
    event = sqs_event(bodies)
    ids = [r["messageId"] for r in event["Records"]]
    for message_id, body, (tie, _) in zip(ids, bodies, ties, strict=True):
        note(f"{message_id}: {tie} {shorten(body, 400)}")

    response = call(handlers["batcher"], event, seen)

    assert isinstance(response, dict) and isinstance(response.get("batchItemFailures"), list), response
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert failed <= set(ids), f"unknown message ids reported: {failed - set(ids)}"
    for message_id, (tie, key), maybe, doc in zip(ids, ties, written, docs, strict=True):
        answered = key is not None and row(key) is not None
        seen["reported" if message_id in failed else "answered" if answered else "neither"] += 1
        if tie == Tie.UNTIED:
            stray = maybe is not None and row(maybe) is not None
            assert message_id in failed, f"{message_id} cannot be tied to a request but was not reported" + (
                f"; a row was written under ids {maybe!r}" if stray else ""
            )
        elif tie == Tie.TIED:
            if message_id in failed and beyond_python_json(doc):  # its own line: a class of its own
                raise AssertionError(
                    f"{message_id} is tied to {key} (valid ids; elsewhere nesting hundreds deep or an integer"
                    " over 4300 digits, still a JSON object) but was reported as failed"
                )
            assert message_id not in failed, f"{message_id} is tied to {key} but was reported as failed"
            assert answered, f"{message_id} is tied to {key} but got no row and was not reported"
        else:
            assert message_id in failed or answered, f"{message_id}: neither answered nor reported"
        if answered:
            assert key is not None
            result = json.loads(row(key)["result"]["S"])  # type: ignore[index]
            assert result.get("status") in ("ok", "error"), f"{message_id}: row {result}"


@pytest.mark.parametrize("examples", COUNTS)
def test_batcher_answers_or_reports_every_message(
    handlers: dict[str, ModuleType], stack: dict[str, Any], examples: int
) -> None:
    seen: Counter[str] = Counter()

    @property_settings(examples)
    @given(messages=st.lists(sqs_messages(), min_size=1, max_size=10))
    def run(messages: list[Message]) -> None:
        batcher_example(handlers, stack, messages, seen)

    for messages in SQS_EXAMPLES:
        run = example(messages=messages)(run)

    run_counted("SQS batcher", examples, seen, run)
