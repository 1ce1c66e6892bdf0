"""The HTTP routes, one module per concern; :func:`superres.serve.app.create_app` includes each router.

``page`` (the web page and its static files), ``health`` (``/healthz``, ``/readyz``, ``/v1/models``),
``upscale`` (``POST /v1/upscale``), ``jobs`` (``/v1/jobs``), ``zssr`` (``POST /v1/zssr``: zero-shot SR jobs). Each module has ``build(ctx) -> APIRouter``;
the routes read the shared :class:`~superres.serve.context.ServerContext`.
"""
