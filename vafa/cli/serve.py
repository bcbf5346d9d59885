"""`vafa serve`: start the online scoring service with the settings in its environment."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from vafa.cli.options import EXIT_USAGE
from vafa.settings import REPO_ROOT, Settings


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 3000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Server processes; each loads the model.")
    ] = 1,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a non-loopback address without a token.")
    ] = False,
) -> None:
    """The online scoring service: /score, /lookup, health, metrics and OpenAPI docs.

    Serves the registry's champion and follows it (VAFA_MODEL_POLL_SECONDS). With
    VAFA_API_TOKEN or VAFA_API_TOKEN_FILE set (16 characters or more), every call but health,
    metrics and the docs needs `Authorization: Bearer <token>`.
    """
    from serving.online.config import INSECURE_ENV, ConfigError, ServiceConfig, check_bind

    env = server_environment(Settings.from_env())
    try:
        check_bind(host, ServiceConfig.from_env(env).token, insecure)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    service: dict[str, object] = {"workers": workers}
    if "BENTOML_CONFIG" not in os.environ:
        # BentoML starts a span per request even with nowhere to send it (sample rate 0 by
        # default), which costs /score real CPU. A BentoML config of your own
        # (BENTOML_CONFIG) keeps its tracing settings.
        service["tracing"] = {"excluded_urls": "/score,/lookup"}
    overrides = {"services": {"vafa": service}}
    env["BENTOML_CONFIG_OVERRIDES"] = json.dumps(overrides)
    if insecure:
        env[INSECURE_ENV] = "1"
    args = ["serving.online.service:VafaService", "--host", host, "--port", str(port)]
    command = [sys.executable, "-m", "bentoml", "serve", *args, "--working-dir", str(REPO_ROOT)]
    # The server replaces this process: signals and the exit code are the server's own.
    os.execve(sys.executable, command, env)


def server_environment(settings: Settings) -> dict[str, str]:
    """This process's environment plus the registry and the scores store the server must use.

    The service reads no project settings of its own: it takes both from its environment.
    """
    from serving.online.config import STORE_URL_ENV, TRACKING_URI_ENV

    return {
        **os.environ,
        TRACKING_URI_ENV: settings.tracking_uri,
        STORE_URL_ENV: settings.store_url,
    }
