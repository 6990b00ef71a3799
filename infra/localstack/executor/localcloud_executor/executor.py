"""LocalStack runtime executor that runs each Lambda execution environment as a local process tree.

LocalStack keeps the whole Lambda orchestration (environment pool, concurrency, keep-alive, event source
mappings, retries, API Gateway, EventBridge); an executor only has to start, invoke and stop ONE execution
environment. Its Docker executor starts a container whose Go init speaks LocalStack's executor protocol.
We start ``init/`` instead, a local process that speaks the same protocol
(``POST /invoke`` in; ``/status/<id>/ready``, ``/invocations/<req>/logs|response|error`` back to
LocalStack's router, see ``localstack.services.lambda_.invocation.executor_endpoint``), and that runs the
handler through the real ``awslambdaric`` under the interpreter the function's Runtime names.

Process tree per environment (everything on 127.0.0.1):

    LocalStack ── init/ (session of its own)  ── runtime: python3.X -I -S -B bootstrap.py (own group)

Where things come from:
* code: LocalStack unzips each version's code once (``S3Code.prepare_for_execution``); that dir is the
  task root (``/var/task`` on AWS, read-only there, so sharing it between environments is faithful);
* layers: unzipped the same way, each layer's ``python/`` (and ``python/lib/pythonX.Y/site-packages``) on
  the import path where ``/opt/python`` would be, later layers first (they overwrite earlier ones on AWS);
* interpreters and runtime dirs: ``$LOCALCLOUD_RUNTIMES_FILE`` (written by ``localcloud install``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from localcloud_executor import images
from localcloud_executor.layout import BOOTSTRAP_SCRIPT, INIT_PROGRAM
from localcloud_executor.proctree import descendants
from localstack import config
from localstack.services.lambda_.invocation.executor_endpoint import (
    ExecutorEndpoint,
    StatusErrorException,
)
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException, RuntimeExecutor

LOG = logging.getLogger(__name__)

HOST = "127.0.0.1"


def runtime_table() -> dict[str, dict[str, str]]:
    """Runtime name -> {"python": interpreter, "path": runtime dir with awslambdaric}."""
    path = os.environ.get("LOCALCLOUD_RUNTIMES_FILE")
    if not path or not Path(path).is_file():
        return {}
    table: dict[str, dict[str, str]] = json.loads(Path(path).read_text())
    return table


def resolve_runtime(runtime: str | None) -> dict[str, str]:
    """The interpreter for a function's Runtime, or an error that says what to install."""
    if not runtime:
        raise LambdaRuntimeException(
            "a function without a Runtime must be a container image (PackageType Image)"
        )
    table = runtime_table()
    entry = table.get(runtime)
    if entry is None:
        if runtime.startswith("python"):
            version = runtime.removeprefix("python")
            hint = (
                f"install Python {version} (e.g. `pyenv install {version}`) and re-run "
                f"`python3 -m infra.localstack.localcloud install`"
            )
        else:
            hint = "only Python runtimes are supported locally"
        raise LambdaRuntimeException(
            f"Runtime {runtime} has no local interpreter "
            f"(available: {', '.join(sorted(table)) or 'none'}): {hint}"
        )
    if not os.access(entry["python"], os.X_OK):
        raise LambdaRuntimeException(f"Runtime {runtime}: interpreter {entry['python']} is missing")
    return entry


def is_image(function_version: FunctionVersion) -> bool:
    return str(function_version.config.package_type) in ("Image", "PackageType.Image")


def layer_paths(function_version: FunctionVersion, python_version: str) -> list[str]:
    """Import path entries for the function's layers, in the order Lambda's merged /opt gives them."""
    dirs = []
    for layer in function_version.config.layers or []:
        if layer.code is not None:
            dirs.append(Path(layer.code.get_unzipped_code_location()))
    dirs.reverse()  # a later layer overwrites an earlier one in /opt, so it must come first
    site = [str(d / "python" / "lib" / f"python{python_version}" / "site-packages") for d in dirs]
    plain = [str(d / "python") for d in dirs]
    return [p for p in site + plain if os.path.isdir(p)]


class LocalProcessRuntimeExecutor(RuntimeExecutor):
    """One execution environment = one init process (+ its runtime process)."""

    executor_endpoint: ExecutorEndpoint
    process: subprocess.Popen[bytes] | None

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.executor_endpoint = ExecutorEndpoint(self.id, container_address=HOST)
        self.process = None
        self.env_dir: Path | None = None
        self._stopped = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, env_vars: dict[str, str]) -> None:
        self.executor_endpoint.start()
        fv = self.function_version
        self.env_dir = Path(tempfile.mkdtemp(prefix=f"env-{fv.id.function_name[:40]}-{self.id[:8]}-"))
        tmp = self.env_dir / "tmp"  # the function's /tmp (TMPDIR): private to this environment
        tmp.mkdir()
        env = {str(k): str(v) for k, v in env_vars.items()}
        if is_image(fv):
            image_setup = self._image_setup(env)
            runtime: dict[str, str] = {"python": "", "path": ""}
            code_dir, python_version = image_setup["workdir"], ""
        else:
            image_setup = None
            runtime = resolve_runtime(fv.config.runtime)
            python_version = (fv.config.runtime or "").removeprefix("python")
            code_dir = str(fv.config.code.get_unzipped_code_location()) if fv.config.code else ""
            if not code_dir:
                raise LambdaRuntimeException("function has no code archive")
            env.update(
                {
                    "LAMBDA_TASK_ROOT": code_dir,
                    "LAMBDA_RUNTIME_DIR": runtime["path"],
                    "AWS_EXECUTION_ENV": f"AWS_Lambda_{fv.config.runtime}",
                    "PATH": f"{Path(runtime['python']).parent}:/usr/local/bin:/usr/bin:/bin",
                    "LANG": env.get("LANG", "en_US.UTF-8"),
                    "TMPDIR": str(tmp),
                    "HOME": str(tmp),
                    "PYTHONUNBUFFERED": "1",
                }
            )
        # Lambda reserves these; user variables cannot override them there either
        for key in ("LOCALSTACK_RUNTIME_ENDPOINT", "LOCALSTACK_RUNTIME_ID", "LOCALSTACK_CHMOD_PATHS"):
            env.pop(key, None)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(16)
        self.executor_endpoint.container_port = sock.getsockname()[1]
        init_config = {
            "executor_id": self.id,
            "runtime_endpoint": self.get_runtime_endpoint(),
            "invoke_fd": sock.fileno(),
            "parent_pid": os.getpid(),
            "python": runtime["python"],
            "runtime_dir": runtime["path"],
            "runtime_version": f"{(fv.config.runtime or '').replace('python', 'python:')}.localcloud",
            "bootstrap": str(BOOTSTRAP_SCRIPT),
            "handler": fv.config.handler,
            "task_root": code_dir,
            "layer_paths": layer_paths(fv, python_version) if image_setup is None else [],
            "image": image_setup,
            "tmp": str(tmp),
            "timeout": fv.config.timeout,
            "memory_size": fv.config.memory_size,
            "function_version": fv.id.qualifier,
            "env": env,
        }
        config_file = self.env_dir / "init.json"
        config_file.write_text(json.dumps(init_config))
        log_file = open(self.env_dir / "init.log", "wb")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(INIT_PROGRAM), str(config_file)],
                cwd=str(self.env_dir),
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
            )
        finally:
            sock.close()
            log_file.close()
        LOG.debug("environment %s of %s: init PID %s", self.id, fv.qualified_arn, self.process.pid)
        threading.Thread(target=self._watch, name=f"localprocess-watch-{self.id[:8]}", daemon=True).start()
        self.executor_endpoint.wait_for_startup()

    def _image_setup(self, env: dict[str, str]) -> dict[str, Any]:
        """Root filesystem, argv and working directory of an image function; its environment is the image's
        ``Env`` under the function's variables, as on Lambda (a function variable wins)."""
        fv = self.function_version
        try:
            image = images.prepare(fv.config.image.image_uri)
        except images.ImageError as e:
            raise LambdaRuntimeException(str(e)) from e
        overrides = fv.config.image_config
        merged = {**image.env, **env}
        env.clear()
        env.update(merged)
        env.setdefault("LAMBDA_TASK_ROOT", "/var/task")
        env.setdefault("LAMBDA_RUNTIME_DIR", "/var/runtime")
        env.setdefault("LANG", "en_US.UTF-8")
        env["PYTHONUNBUFFERED"] = "1"
        return {
            "rootfs": str(image.rootfs),
            "argv": image.argv(overrides),
            "workdir": image.workdir(overrides),
        }

    def _watch(self) -> None:
        """If init dies, fail whatever waits on it now instead of letting LocalStack wait for minutes."""
        assert self.process is not None
        code = self.process.wait()
        if self._stopped.is_set():
            return
        LOG.warning(
            "execution environment %s exited unexpectedly (code %s): %s", self.id, code, self.get_logs()
        )
        payload = json.dumps(
            {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"Execution environment exited with code {code}",
            }
        ).encode()
        startup: Future[bool] | None = self.executor_endpoint.startup_future
        if startup is not None and not startup.done():
            with contextlib.suppress(Exception):
                startup.set_exception(StatusErrorException("Environment startup failed", payload=payload))
        invocation: Future[InvocationResult] | None = self.executor_endpoint.invocation_future
        if invocation is not None and not invocation.done():
            with contextlib.suppress(Exception):
                invocation.set_result(InvocationResult("", payload, is_error=True, logs=self.get_logs()))

    def stop(self) -> None:
        """Kill init and its runtime (and anything a handler spawned); Lambda does not drain either."""
        self._stopped.set()
        if self.process is not None:
            pids = [self.process.pid, *descendants(self.process.pid)]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        try:
            self.executor_endpoint.shutdown()
        except Exception as e:
            LOG.debug("error while shutting down executor endpoint %s: %s", self.id, e)
        if self.env_dir is not None:
            shutil.rmtree(self.env_dir, ignore_errors=True)

    # -- addresses --------------------------------------------------------------------------------
    def get_address(self) -> str:
        return HOST

    def get_endpoint_from_executor(self) -> str:
        return HOST

    def get_runtime_endpoint(self) -> str:
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{HOST}:{port}{self.executor_endpoint.get_endpoint_prefix()}"

    # -- invocations ------------------------------------------------------------------------------
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        return self.executor_endpoint.invoke(payload)

    def get_logs(self) -> str:
        if self.env_dir is None:
            return ""
        try:
            return (self.env_dir / "init.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- versions ---------------------------------------------------------------------------------
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        """Unzip code and layers (or unpack the image) once per version; a missing runtime or image fails the
        function (state Failed)."""
        if is_image(function_version):
            try:
                images.prepare(function_version.config.image.image_uri)
            except images.ImageError as e:
                raise LambdaRuntimeException(str(e)) from e
            return
        resolve_runtime(function_version.config.runtime)
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()
        for layer in function_version.config.layers or []:
            if layer.code is not None:
                layer.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass  # LocalStack removes the unzipped code itself (S3Code.destroy_cached)

    @classmethod
    def validate_environment(cls) -> bool:
        if not runtime_table():
            LOG.warning(
                "localprocess executor: no runtimes found (LOCALCLOUD_RUNTIMES_FILE); run localcloud install"
            )
            return False
        return True
