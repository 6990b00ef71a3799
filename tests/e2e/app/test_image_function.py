"""The container-image predict function (``make images``' CPU image) beside its zip twin, in the local cloud.

The local executor maps the ``ImageUri`` to ``build/images/topicserve-cpu.oci.tar``, unpacks it once per
digest and runs the image's entrypoint (the real ``awslambdaric``) inside its root filesystem. The image
function must answer exactly as the zip function does, and report its cold start as Lambda does.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.e2e.app.test_app import TEXTS, api_event, invoke
from topicserve_ops.lambda_config import renew_environments

pytestmark = pytest.mark.e2e

MORE_TEXTS = [
    *TEXTS,
    "The doctor said the new antibiotic reduces the infection in most patients.",
    "Encrypting the key with the clipper chip lets the government read your mail.",
    "x" * 5000,  # truncated, the same flag
]


def answers(response: dict[str, Any]) -> tuple[int, Any]:
    return response["statusCode"], json.loads(response["body"])


def labels(body: dict[str, Any]) -> list[tuple[str | None, bool | None]]:
    return [(p.get("label"), p.get("truncated")) for p in body.get("predictions", [])]


def test_image_function_is_named_in_the_stack(app_stack: dict[str, Any]) -> None:
    assert app_stack["image_function"], "build/stack.json names no image function (make images?)"


def test_image_function_answers_as_the_zip_function(app_stack: dict[str, Any], lam: Any) -> None:
    image, zipped = app_stack["image_function"], app_stack["functions"]["predict"]["logreg"]
    config = lam.get_function_configuration(FunctionName=image)
    assert config["PackageType"] == "Image"
    assert "@sha256:" in lam.get_function(FunctionName=image)["Code"]["ImageUri"]
    renew_environments(lam, [image])  # a fresh environment: this invocation is a cold start
    body = {"texts": MORE_TEXTS}
    from_image = invoke(lam, image, api_event("/v1/predict/logreg", body))
    from_zip = invoke(lam, zipped, api_event("/v1/predict/logreg", body))
    assert from_image.function_error is None, from_image.log
    status_image, body_image = answers(from_image.payload)
    status_zip, body_zip = answers(from_zip.payload)
    assert (status_image, status_zip) == (200, 200), (body_image, body_zip)
    assert labels(body_image) == labels(body_zip)
    assert len(body_image["predictions"]) == len(MORE_TEXTS)
    for a, b in zip(body_image["predictions"], body_zip["predictions"], strict=True):
        assert [t["label"] for t in a.get("top", [])] == [t["label"] for t in b.get("top", [])]
        for x, y in zip(a.get("top", []), b.get("top", []), strict=True):
            assert x["probability"] == pytest.approx(y["probability"], abs=1e-4)
    assert body_image["encoder_version"] == body_zip["encoder_version"]
    assert body_image["model_version"] == body_zip["model_version"]
    # Lambda's REPORT line for a cold start of an image function
    assert from_image.init_duration_ms is not None and from_image.init_duration_ms > 0, from_image.report
    assert re.search(r"Max Memory Used: \d+ MB", from_image.report), from_image.report
    warm = invoke(lam, image, api_event("/v1/predict/logreg", {"texts": TEXTS}))
    assert warm.init_duration_ms is None, warm.report
    assert answers(warm.payload)[0] == 200


def test_image_function_bad_input_is_a_4xx(app_stack: dict[str, Any], lam: Any) -> None:
    response = invoke(
        lam, app_stack["image_function"], api_event("/v1/predict/logreg", {"texts": "not a list"})
    )
    status, body = answers(response.payload)
    assert 400 <= status < 500 and body["error"]["message"], body
