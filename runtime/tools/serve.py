"""`vreyesam serve`: the HTTP server (uvicorn) over a model directory.

Start-up: settings are read, OpenCV's own image limits checked to be in effect (`media.opencv`) and the
model directory verified (sha256 of every artifact, random-weights policy, execution provider)
before the port opens, so a tampered or wrong model never starts; the sessions and the golden self-test
then run in the background while /healthz already answers and /readyz says "loading".
"""

from __future__ import annotations

import argparse
import logging
import sys

from vreyesam.runtime.http.logs import configure_logging
from vreyesam.runtime.settings import Settings, SettingsError, load_settings
from vreyesam.runtime.tools.model_flags import add_cluster_flags, add_model_flags, model_overrides

log = logging.getLogger("vreyesam.server")


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_flags(parser)
    parser.add_argument("--host", help="bind address (env VREYESAM_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (env VREYESAM_PORT or PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="server processes (env VREYESAM_WORKERS, default 1)")
    add_cluster_flags(parser)


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings().with_overrides(**model_overrides(args), host=args.host, port=args.port, workers=args.workers)


def _fail(message: str) -> int:
    print(f"vreyesam serve: error: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        return _fail(str(exc))
    if settings.model_dir is None:
        return _fail("no model directory: pass --model DIR or set VREYESAM_MODEL_DIR")
    configure_logging(settings.log_level)
    from vreyesam.runtime.http import server

    try:
        files = server.preflight(settings)
        return server.run_server(settings, files)
    except server.StartupError as exc:
        return _fail(str(exc))
