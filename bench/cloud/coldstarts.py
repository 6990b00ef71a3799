"""Cold starts of the three variants (ours: int8 encoder; the fp32 encoder twin; the naive package of
sentence-transformers + pickled scikit-learn), and their package sizes."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.cloud.stack import MODEL, Stack
from bench.common import BENCH_CLIENT, REPO, WORK, apigw_event, dir_size, invoke, ratio, say, summary
from infra.deploy import sam_deploy, stack_outputs
from infra.localstack.localcloud.clients import client
from topicserve.catalogue import MODEL_NAMES
from topicserve.warming import warm_event
from topicserve_ops.lambda_config import renew_environments

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_lambda import LambdaClient


def fp32_function(st: Stack) -> tuple[str, str, int]:
    """A twin of the logreg predict function whose encoder layer is the fp32 one (same code, same head).

    Returns (function name, layer version ARN, layer zip size). Created with the Lambda API beside the
    stack (CloudFormation does not know it): :func:`delete_twin` removes both.
    """
    from infra.encoder_layer import build as encoder_layer

    layer_dir = REPO / "build" / "layers" / "encoder-fp32"
    encoder_layer(REPO / "build" / "models" / "manifest.json", "fp32", layer_dir)
    archive = WORK / "encoder-fp32.zip"
    if not archive.exists() or archive.stat().st_mtime < (layer_dir / "python").stat().st_mtime:
        archive.write_bytes(_zip_dir(layer_dir))
    layer_arn, layers = swap_layer(st, "EncoderLayer", "topicserve-bench-encoder-fp32", archive.read_bytes())
    return twin_function(st, "fp32", layers), layer_arn, archive.stat().st_size


def swap_layer(st: Stack, replaced: str, name: str, content: bytes) -> tuple[str, list[str]]:
    """Publish ``content`` as a layer version; returns its ARN and the logreg function's layers with the
    one whose logical id is ``replaced`` (EncoderLayer, ServingLayer) swapped for it."""
    key = f"bench/{name}.zip"
    st.s3.put_object(Bucket=st.info["bucket"], Key=key, Body=content)
    layer = st.lam.publish_layer_version(
        LayerName=name,
        Content={"S3Bucket": st.info["bucket"], "S3Key": key},
        CompatibleRuntimes=["python3.13"],
    )
    layers = [
        layer["LayerVersionArn"] if f":layer:{replaced}" in entry["Arn"] else entry["Arn"]
        for entry in st.lam.get_function_configuration(FunctionName=st.predict_fn)["Layers"]
    ]
    return layer["LayerVersionArn"], layers


def twin_function(st: Stack, suffix: str, layers: list[str], code: bytes | None = None) -> str:
    """A copy of the logreg predict function (its configuration and environment) with other layers or
    code, created with the Lambda API beside the stack; :func:`delete_twin` removes it."""
    config = st.lam.get_function_configuration(FunctionName=st.predict_fn)
    if code is None:
        code_url = st.lam.get_function(FunctionName=st.predict_fn)["Code"]["Location"]
        with urllib.request.urlopen(code_url, timeout=60) as response:
            code = response.read()
    name = f"{st.info['stack_name']}-logreg-{suffix}"
    st.lam.create_function(
        FunctionName=name,
        Runtime=config["Runtime"],
        Role=config["Role"],
        Handler=config["Handler"],
        Code={"ZipFile": code},
        Layers=layers,
        Environment={"Variables": config["Environment"]["Variables"]},
        MemorySize=config["MemorySize"],
        Timeout=config["Timeout"],
    )
    st.lam.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


def baseline_function(st: Stack, rev: str) -> tuple[str, str]:
    """The logreg predict function as release ``rev`` built it: its serving library (with today's pinned
    dependencies, compiled as the layer's Makefile compiles them) and its handler, today's encoder layer.
    The interleaved A/B of cold starts against it guards init time (``bench.run``'s cold-start section).

    Returns (function name, layer version ARN)."""
    from bench.init_ab import worktree
    from infra.localstack.localcloud.interpreters import python313

    tree = worktree(rev)
    built = REPO / ".aws-sam" / "build" / "ServingLayer" / "python"
    layer_dir = WORK / f"baseline-layer-{rev[:12]}"
    if not layer_dir.is_dir():
        staging = layer_dir.with_suffix(".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(built, staging / "python", ignore=shutil.ignore_patterns("topicserve"))
        shutil.copytree(tree / "layers" / "serving" / "topicserve", staging / "python" / "topicserve")
        subprocess.run(
            [str(python313()), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
             str(staging / "python" / "topicserve")],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        staging.rename(layer_dir)
    layer_arn, layers = swap_layer(
        st, "ServingLayer", "topicserve-bench-baseline-serving", _zip_dir(layer_dir, bytecode=True)
    )
    code = _zip_dir(tree / "functions" / "predict")
    return twin_function(st, "baseline", layers, code), layer_arn


#: The floor of this design, as two handlers deployed beside ours with its layers and environment: what
#: every cold start pays before any code of ours runs (the runtime's own start, an empty handler), and what
#: any predict function that answers from an ONNX encoder must do (import numpy, onnxruntime and
#: tokenizers, build the encoder's session and tokenizer at init; tokenize and encode the first text). Our
#: init minus the second is what the library, Powertools and the heads add; the second is what cannot go
#: while the encoder is loaded at init (a deploy-time snapshot, SnapStart on AWS, is what would remove it).
FLOOR_HANDLERS = {
    "floor_empty": 'def handler(event, context):\n    return {"statusCode": 200, "body": "{}"}\n',
    "floor_encoder": """import json
from pathlib import Path

import topicserve_encoder
from topicserve.encoder import Encoder

folder = Path(topicserve_encoder.__file__).parent
info = json.loads((folder / "encoder.json").read_text())
encoder = Encoder(
    folder / "model.onnx",
    folder / "tokenizer.json",
    max_length=256,
    version=info.get("sha256"),
    pre_optimized=bool(info.get("graph_optimization")),
)


def handler(event, context):
    body = json.loads(event.get("body") or "{}") if isinstance(event, dict) else {}
    encoder.encode([body.get("text") or "a warm-up"])
    return {"statusCode": 200, "body": "{}"}
""",
}


def floor_function(st: Stack, kind: str) -> str:
    """A :data:`FLOOR_HANDLERS` twin of the logreg predict function (same layers and environment)."""
    config = st.lam.get_function_configuration(FunctionName=st.predict_fn)
    layers = [layer["Arn"] for layer in config["Layers"]]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("app.py", FLOOR_HANDLERS[kind])
    return twin_function(st, kind.replace("_", "-"), layers, buffer.getvalue())


def _zip_dir(folder: Path, *, bytecode: bool = False) -> bytes:
    """``bytecode``: keep ``__pycache__`` (a layer, whose .pyc files the layer's Makefile compiles so that no
    cold start compiles the library: a baseline layer without them would pay that and look slower than
    the release was); a function's code ships without, as ``sam build`` packs it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and (bytecode or "__pycache__" not in path.parts):
                zf.write(path, path.relative_to(folder))
    return buffer.getvalue()


def delete_function(st: Stack, name: str) -> None:
    try:
        st.lam.delete_function(FunctionName=name)
    except Exception as exc:  # cleanup must go on
        say(f"cleanup: {exc!r}")


def delete_twin(st: Stack, name: str, layer_arn: str) -> None:
    """Delete a twin function and its layer's *older* versions.

    The version just used is kept (as SAM retains layer versions): LocalStack 2026.3's ListLayers fails
    ("list index out of range") for every caller once a layer has no version left.
    """
    layer = layer_arn.split(":")[-2]
    current = int(layer_arn.split(":")[-1])
    delete_function(st, name)
    try:
        for v in st.lam.list_layer_versions(LayerName=layer)["LayerVersions"]:
            if v["Version"] != current:
                st.lam.delete_layer_version(LayerName=layer, VersionNumber=v["Version"])
    except Exception as exc:
        say(f"cleanup: {exc!r}")


def package_sizes(st: Stack, fp32_zip: int, naive: dict[str, Any] | None) -> dict[str, Any]:
    """Installed (unzipped) and zipped sizes of each variant's function + layers; archive and added
    sizes of the images."""
    images = json.loads((REPO / "build/images/images.json").read_text())

    def zipped(fn: str) -> int:
        cfg = st.lam.get_function_configuration(FunctionName=fn)
        return cfg["CodeSize"] + sum(layer.get("CodeSize", 0) for layer in cfg.get("Layers", []))

    serving = dir_size(REPO / ".aws-sam" / "build" / "ServingLayer")
    code = dir_size(REPO / "functions" / "predict")
    sizes = {
        "ours_int8": {
            "unzipped_bytes": serving + code + dir_size(REPO / "build/layers/encoder-int8"),
            "zipped_bytes": zipped(st.predict_fn),
        },
        "fp32": {
            "unzipped_bytes": serving + code + dir_size(REPO / "build/layers/encoder-fp32"),
            "zipped_bytes": zipped(st.predict_fn) - _encoder_layer_size(st) + fp32_zip,
        },
        "image": {
            "unzipped_bytes": int(images["cpu"]["context_mb"] * 1e6),
            "archive_bytes": int(images["cpu"]["archive_mb"] * 1e6),
            "note": "what the image adds to its base (Debian trixie here, the Lambda Python image on AWS)",
        },
    }
    if naive:
        sizes["naive"] = {
            "unzipped_bytes": int(naive["context_mb"] * 1e6),
            "archive_bytes": int(naive["archive_mb"] * 1e6),
            "note": "over the 250 MB zip limit: a container image (added to a Debian bookworm base)",
        }
    return sizes


def _encoder_layer_size(st: Stack) -> int:
    cfg = st.lam.get_function_configuration(FunctionName=st.predict_fn)
    return sum(layer.get("CodeSize", 0) for layer in cfg["Layers"] if ":layer:EncoderLayer" in layer["Arn"])


def image_uri(variant: str) -> str:
    """The local URI of an image ``make images`` / ``containers.build`` made: repository + digest."""
    index = json.loads((REPO / "build/images/images.json").read_text())
    return f"000000000000.dkr.ecr.us-east-1.amazonaws.com/topicserve-{variant}@{index[variant]['digest']}"


def build_naive_image() -> dict[str, Any]:
    """The naive peer's container image (built once; rebuilt when bench/naive changes)."""
    from bench.naive.package import build_image

    return build_image()


def deploy_naive(stack_name: str) -> str:
    """The naive variant's own stack (bench/naive/template.yaml): a container-image function."""
    uri = image_uri("naive")
    sam_deploy(
        stack_name,
        "--template-file",
        str(REPO / "bench/naive/template.yaml"),
        "--parameter-overrides",
        f"ImageUri={uri}",
        "--image-repositories",
        f"NaiveFunction={uri.split('@')[0]}",
    )
    return stack_outputs(client("cloudformation", **BENCH_CLIENT), stack_name)["FunctionName"]


def cold_starts(
    lam: LambdaClient,
    variants: dict[str, str],
    n: int,
    texts: list[str],
    *,
    few: dict[str, int] | None = None,
) -> dict[str, Any]:
    """``n`` forced cold starts per variant, interleaved (order rotated per round); a variant in ``few``
    takes part in only its first that many rounds (slow or secondary ones: the naive peer's 3 s inits).
    Each: renew the function's environments, then one synchronous invoke of a real predict request."""
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    names = list(variants)
    few = few or {}
    for r in range(n):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in [k for k in order if r < few.get(k, n)]:
            renew_environments(lam, [variants[name]])
            model = name if name in MODEL_NAMES else MODEL  # a predict function answers its own model only
            inv = invoke(lam, variants[name], apigw_event(model, {"text": texts[r % len(texts)]}))
            ok = (
                inv.function_error is None
                and isinstance(inv.payload, dict)
                and inv.payload.get("statusCode") == 200
            )
            split: dict[str, Any] = (
                invoke(lam, variants[name], warm_event(1, 0)).payload if name != "naive" else {}
            )
            raw[name].append(
                {
                    "init_ms": inv.init_duration_ms,
                    "first_response_ms": inv.wall_ms,
                    "duration_ms": inv.duration_ms if inv.report else None,
                    "max_memory_mb": inv.max_memory_mb,
                    "ok": ok,
                    # build_runtime's share of init: registry lookups, head download + sha256, model loads
                    "runtime_build_ms": 1000 * split["init_seconds"] if "init_seconds" in split else None,
                }
            )
        say(
            f"  cold-start round {r + 1}/{n}: "
            + ", ".join(
                f"{k} init {raw[k][-1]['init_ms']} ms / first {raw[k][-1]['first_response_ms']:.0f} ms"
                for k in names
                if r < few.get(k, n)
            )
        )
    stats: dict[str, dict[str, Any]] = {}
    for name, samples in raw.items():
        good = [s for s in samples if s["ok"]]
        stats[name] = {
            "n": len(samples),
            "ok": len(good),
            "init_ms": summary([s["init_ms"] for s in good if s["init_ms"] is not None]),
            "first_response_ms": summary([s["first_response_ms"] for s in good]),
            "max_memory_mb": summary([s["max_memory_mb"] for s in good if s["max_memory_mb"] is not None]),
            "runtime_build_ms": summary([s["runtime_build_ms"] for s in good if s.get("runtime_build_ms")]),
        }
    base = stats.get("naive", {}).get("init_ms", {}).get("p50")
    for name in stats:
        stats[name]["init_p50_over_naive"] = ratio(stats[name]["init_ms"]["p50"], base)
    return {"raw": raw, "stats": stats}


def first_answers(st: Stack, n: int, texts: list[str]) -> dict[str, Any]:
    """``n`` times: renew the predict function's environments, then one request through the API (the REST
    API in front of it, as a user calls it). Its wall time is a cold start's whole cost to a caller: front
    door, init, the first request."""
    raw = []
    for r in range(n):
        renew_environments(st.lam, [st.predict_fn])
        started = time.perf_counter()
        status, _ = st.http.predict(MODEL, [texts[r % len(texts)]])
        raw.append({"ms": (time.perf_counter() - started) * 1000, "ok": status == 200})
        say(f"  first answer through the API after a cold start {r + 1}/{n}: {raw[-1]['ms']:.0f} ms")
    return {"raw": raw, "ms": summary([s["ms"] for s in raw if s["ok"]]), "ok": sum(s["ok"] for s in raw)}
