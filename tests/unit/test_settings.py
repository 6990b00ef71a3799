"""Settings: each declared once (topicserve.settings.setting), read by one rule per type, by one reader.

* the reading rules (defaults, each type, the messages of malformed values, the chaos switches' gate);
* nothing but ``topicserve.settings`` reads the environment in the code that ships (the layer, the
  handlers, the bulk worker, the warmer), read with ``ast``;
* ``template.yaml`` sets no variable that is not declared (or read by a library), and every declared one
  that the template leaves out is listed below with why it is worth having (a dead setting goes instead);
* docs/SETTINGS.md is what the declarations render (infra.settings_doc) and lists every settings class.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import settings_doc
from tests.unit.test_template import CfnLoader
from topicserve.catalogue import MODEL_NAMES
from topicserve.monitoring.monitor import DriftThresholds
from topicserve.rollout.gates import Thresholds
from topicserve.settings import FromEnv, Settings, declared, load, setting
from topicserve_worker.worker import WorkerSettings

REPO = Path(__file__).resolve().parents[2]
#: the code that ships: what it reads from the environment is a setting
SHIPPED = [REPO / "layers" / "serving", REPO / "functions", REPO / "containers" / "worker", REPO / "warmers"]
#: files that may read the environment, each with why
READERS = {"layers/serving/topicserve/settings.py": "the one reader: topicserve.settings.load"}
#: variables the template sets that a library reads itself, each with why they are not declared here
READ_BY_LIBRARIES = {
    "POWERTOOLS_LOG_LEVEL": "Powertools' Logger reads it (the LogLevel parameter)",
    "MPLCONFIGDIR": "matplotlib's config folder: the monitor's PNG needs a writable one (/tmp)",
}
#: declared settings the template does not set, each with why the setting is worth having
NOT_SET_BY_THE_TEMPLATE = {
    **dict.fromkeys(
        ["ENCODER_DIR", "MODEL_CACHE_DIR"],
        "their defaults are right on Lambda; tests, benchmarks and local runs point them elsewhere",
    ),
    "AWS_LAMBDA_FUNCTION_NAME": "set by Lambda itself",
    "ROUTING_SEED": "set by the deploy after registering the heads (infra/deploy.py)",
    "ENCODE_BATCH_SIZE": "the benchmarks' variants set it (bench/cloud/stack.py); serving must keep 1",
    **dict.fromkeys(
        ["FAULT_RATE", "FAULT_KILL_RATE", "FAULT_MARKERS"],
        "chaos switches: the reliability tests set them on a test stack's batcher",
    ),
    **dict.fromkeys(
        ["MAX_TEXT_CHARS", "MAX_TEXTS_PER_REQUEST", "MAX_REQUESTS_PER_BATCH", "MAX_BODY_BYTES"],
        "request limits an operator may tighten without a code change (docs/API.md, docs/openapi.yaml)",
    ),
    **dict.fromkeys(
        ["CHUNK_TEXTS", "MAX_MESSAGE_BYTES", "ENCODER_MAX_LENGTH"],
        "limits of the queue and the encoder, documented where they bind (docs/COST.md, docs/RELIABILITY.md)",
    ),
    **dict.fromkeys(
        ["LRU_MAX_ITEMS", "DOORKEEPER_CAPACITY", "MONITOR_EMBEDDING_CAP"],
        "memory a function holds per environment: the knob beside FunctionMemorySize",
    ),
    **dict.fromkeys(
        ["ROUTING_LOAD_WAIT_SECONDS", "GATE_MAX_ERRORS_UNSERVED"],
        "rollout tuning beside the template's parameters (docs/ROLLOUT.md)",
    ),
    **dict.fromkeys(
        [
            "DRIFT_PSI_OVER_CHANCE",
            "DRIFT_MEAN_SHIFT_THRESHOLD",
            "DRIFT_CONFIDENCE_CHANGE",
            "DRIFT_MIN_PREDICTIONS",
            "DRIFT_MIN_EMBEDDINGS",
        ],
        "drift thresholds beside the two the template exposes (docs/MONITORING.md)",
    ),
    **dict.fromkeys(
        [
            "WORKER_TARGET_MESSAGES",
            "WORKER_MAX_GATHER_SECONDS",
            "WORKER_WAIT_SECONDS",
            "WORKER_VISIBILITY_SECONDS",
            "WORKER_HEARTBEAT_SECONDS",
            "WORKER_RETRY_DELAY_SECONDS",
            "WORKER_ENCODER",
            "WORKER_ENCODER_DIR",
            "WORKER_ENCODE_BATCH_SIZE",
        ],
        "the worker's defaults fit the GPU task; the e2e worker tests and bench/gpu_check.py set them",
    ),
    "APP_VERSION": "the release GET /v1/health reports; nothing sets it yet, so it answers 'dev'",
}


# --- reading ----------------------------------------------------------------------------------------------


def test_unset_is_the_default() -> None:
    """Only the two settings whose default depends on where the code runs differ from the constructor's."""
    read = Settings.from_env({})
    assert dataclasses.replace(read, encoder_dir="", model_cache_dir="/tmp/models") == Settings()
    assert read.model_cache_dir.endswith("models") and read.models == MODEL_NAMES
    assert Thresholds.from_env({}) == Thresholds() and DriftThresholds.from_env({}) == DriftThresholds()
    assert WorkerSettings.from_env({}) == WorkerSettings()


def test_each_type_is_read_by_its_rule() -> None:
    s = Settings.from_env(
        {
            "MODEL_NAMES": " logreg, ,rf ,",  # a list: items stripped, blank ones dropped
            "REGISTRY_BUCKET": "  bucket ",  # text: stripped
            "LRU_MAX_ITEMS": "12",
            "SHADOW_SAMPLE": "0.25",
            "DEDUP": "Off",
            "ADAPTIVE_BATCHING": "yes",
            "ENCODER_THREADS": "3",
            "ENCODER_DIR": "/enc",
            "BULK_THRESHOLD_TEXTS": "   ",  # blank: the default
            "DISABLE_CACHES": " , ",  # no item left: the default
        }
    )
    assert s.models == ("logreg", "rf") and s.registry_bucket == "bucket" and s.encoder_dir == "/enc"
    assert (s.lru_max_items, s.shadow_sample, s.dedup, s.adaptive_batching) == (12, 0.25, False, True)
    assert s.encoder_threads == 3 and Settings.from_env({"ENCODER_THREADS": "0"}).encoder_threads is None
    assert s.bulk_threshold_texts == 500 and s.disabled_caches == ()
    assert WorkerSettings.from_env({"WORKER_ENCODER": " CUDA "}).encoder_mode == "cuda"
    assert Thresholds.from_env({"GATE_ALPHA": "0.01", "GATE_MAX_ERRORS_UNSERVED": "2"}) == Thresholds(
        alpha=0.01, max_errors_unserved=2
    )
    assert DriftThresholds.from_env({"DRIFT_AUC_THRESHOLD": "0.7"}).auc == 0.7


@pytest.mark.parametrize(
    ("cls", "env", "message"),
    [
        (Settings, {"LRU_MAX_ITEMS": "abc"}, "setting LRU_MAX_ITEMS must be an integer, got 'abc'"),
        (Settings, {"ENCODER_THREADS": "1.5"}, "setting ENCODER_THREADS must be an integer, got '1.5'"),
        (Settings, {"SHADOW_SAMPLE": "half"}, "setting SHADOW_SAMPLE must be a number, got 'half'"),
        (Settings, {"DEDUP": "maybe"}, "setting DEDUP must be a boolean (true/false), got 'maybe'"),
        (Thresholds, {"GATE_ALPHA": "x"}, "setting GATE_ALPHA must be a number, got 'x'"),
        (DriftThresholds, {"DRIFT_MIN_PREDICTIONS": "1e3"}, "DRIFT_MIN_PREDICTIONS must be an integer"),
        (
            WorkerSettings,
            {"WORKER_ENCODER": "gpu"},
            "WORKER_ENCODER must be one of auto, cuda, cpu, got 'gpu'",
        ),
    ],
)
def test_a_malformed_value_is_an_error_naming_the_variable(
    cls: type[Any], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cls.from_env(env)


def test_the_chaos_switches_are_read_only_on_a_test_stack() -> None:
    chaos = {"FAULT_RATE": "0.5", "FAULT_KILL_RATE": "0.1", "FAULT_MARKERS": "encode:boom"}
    off = Settings.from_env({**chaos, "FAULT_RATE": "often"})  # not even parsed
    assert (off.test_switches, off.fault_rate, off.fault_kill_rate, off.fault_markers) == (
        False,
        0.0,
        0.0,
        "",
    )
    on = Settings.from_env({**chaos, "TEST_SWITCHES": "true"})
    assert (on.fault_rate, on.fault_kill_rate, on.fault_markers) == (0.5, 0.1, "encode:boom")


def test_a_type_without_a_reading_rule_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Odd(FromEnv):
        ratio: complex = setting(1j, env="ODD_RATIO", why="no rule reads a complex number")

    with pytest.raises(TypeError, match="no reading rule"):
        load(Odd, {})


# --- one reader -------------------------------------------------------------------------------------------


def environment_reads(path: Path) -> list[str]:
    """``line: what`` for every read of the process environment in a Python file: ``os.environ`` /
    ``os.getenv`` (``os`` under any name) and ``from os import environ / getenv``."""
    names = {"environ", "environb", "getenv", "getenvb"}
    tree = ast.parse(path.read_text(), str(path))
    aliases = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os"
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{node.lineno}: from os import {a.name}" for a in node.names if a.name in names]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in names
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return sorted(found, key=lambda read: int(read.split(":")[0]))


def python_files(folders: list[Path]) -> Iterator[Path]:
    for folder in folders:
        yield from sorted(folder.rglob("*.py"))


def test_nothing_but_the_settings_reads_the_environment() -> None:
    files = list(python_files(SHIPPED))
    assert len(files) > 50
    found = [
        f"{path.relative_to(REPO)}:{read}"
        for path in files
        if str(path.relative_to(REPO)) not in READERS
        for read in environment_reads(path)
    ]
    assert not found, "read the environment through topicserve.settings (a setting) instead: " + "; ".join(
        found
    )
    for reader in READERS:
        assert environment_reads(REPO / reader), f"{reader} reads no environment now: remove it from READERS"


def test_the_reader_check_finds_every_form(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import os as o\nx = o.environ.get('X')\ny = o.getenv('Y')\n")
    (tmp_path / "b.py").write_text("from os import environ, path\n")
    (tmp_path / "c.py").write_text("import os\nos._exit(0)\nenviron = {}\nenviron.get('X')\n")
    assert environment_reads(tmp_path / "a.py") == ["2: o.environ", "3: o.getenv"]
    assert environment_reads(tmp_path / "b.py") == ["1: from os import environ"]
    assert environment_reads(tmp_path / "c.py") == []


# --- the template and the declarations --------------------------------------------------------------------


def declared_variables() -> list[str]:
    return [env for _, cls, _ in settings_doc.SECTIONS for _, env, *_ in declared(cls)]


def template_variables() -> dict[str, list[str]]:
    """Variable -> where template.yaml sets it (Globals, a function, the worker's task definition)."""
    template = yaml.load((REPO / "template.yaml").read_text(), Loader=CfnLoader)
    found: dict[str, list[str]] = {}
    for name in template["Globals"]["Function"]["Environment"]["Variables"]:
        found.setdefault(name, []).append("Globals")
    for logical, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            for name in props.get("Environment", {}).get("Variables", {}):
                found.setdefault(name, []).append(logical)
        elif resource["Type"] == "AWS::ECS::TaskDefinition":
            for container in props["ContainerDefinitions"]:
                for variable in container.get("Environment", []):
                    found.setdefault(variable["Name"], []).append(logical)
    return found


def test_each_variable_is_declared_once() -> None:
    variables = declared_variables()
    twice = sorted({v for v in variables if variables.count(v) > 1})
    assert not twice, f"declared more than once: {twice}"


def test_the_template_sets_only_declared_settings() -> None:
    set_by_template = template_variables()
    assert {"MODEL_NAMES", "GATE_ALPHA", "DRIFT_AUC_THRESHOLD", "BULK_QUEUE_URL"} <= set(set_by_template)
    unknown = {
        v: where
        for v, where in set_by_template.items()
        if v not in declared_variables() and v not in READ_BY_LIBRARIES
    }
    assert not unknown, (
        f"template.yaml sets variables nothing declares (dead, or a missing setting): {unknown}"
    )
    stale = sorted(set(READ_BY_LIBRARIES) - set(set_by_template))
    assert not stale, f"no longer set by template.yaml: remove from READ_BY_LIBRARIES: {stale}"


def test_every_setting_the_template_leaves_out_is_worth_having() -> None:
    left_out = set(declared_variables()) - set(template_variables())
    unexplained = sorted(left_out - set(NOT_SET_BY_THE_TEMPLATE))
    assert not unexplained, (
        f"declared but set nowhere in template.yaml: a dead setting (remove it) or one worth its default "
        f"(say why in NOT_SET_BY_THE_TEMPLATE): {unexplained}"
    )
    stale = sorted(set(NOT_SET_BY_THE_TEMPLATE) - left_out)
    assert not stale, f"set by template.yaml now, or no longer declared: {stale}"


# --- docs/SETTINGS.md -------------------------------------------------------------------------------------


def test_every_settings_class_is_documented() -> None:
    """Every ``class X(FromEnv)`` in the code that ships is a section of docs/SETTINGS.md."""
    defined = {
        node.name
        for path in python_files(SHIPPED)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "FromEnv" for b in node.bases)
    }
    assert defined == {cls.__name__ for _, cls, _ in settings_doc.SECTIONS}


def test_the_settings_doc_is_what_the_declarations_render() -> None:
    assert settings_doc.DOC.read_text() == settings_doc.render(), "python -m infra.settings_doc"
