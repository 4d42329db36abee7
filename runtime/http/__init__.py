"""HTTP: the predict-only API (FastAPI on uvicorn) over a loaded model, and the page for people.

`app` builds the ASGI app, `routes` holds the API's three routes, `page` the page (static files, a client
of the API), `errors` maps every exception to one answer, `body_limit`, `logs`, `auth` and `admission`
guard the edge, `server` wires uvicorn and the process lifecycle. Depends on the model and media rooms;
nothing below it imports it.
"""
