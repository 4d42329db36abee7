"""The cluster paths, on Ray (the `ray` extra): the same API on Ray Serve, the batch command on Ray Data.

The top room: it runs the http room's app (never a copy of its routes) and the tools' batch pieces (inputs,
outputs, summary) on Ray actors. The only room that imports `ray`, and nothing imports it unless a command
was given `--ray` (see vreyesam/cli.py), so `vreyesam serve` and `vreyesam predict` run without Ray.

    connect     join a cluster, or start a private one on this machine, with token authentication
    proxy       in Ray Serve's HTTP proxy: the body cap before any buffering, the API's JSON error shape
    resources   what one model copy reserves (CPUs, GPUs) and the threads it runs; no secret in Ray's state
    deployment  the Serve deployment: one verified model per replica, health tied to readiness
    serve       `vreyesam serve --ray`
    batch       the Ray Data job: an actor pool segments, the driver alone writes
    predict     `vreyesam predict --ray`
"""

from __future__ import annotations

import os

# Ray's core reads its authentication mode once, when `ray` is first imported, and every module of this
# room imports ray: so token authentication is switched on here, before any of them can (an explicit
# RAY_AUTH_MODE is kept, and `connect` refuses any other mode than token).
os.environ.setdefault("RAY_AUTH_MODE", "token")
