"""The DynDS dashboard: static pages (plain ES modules, no build step) that speak only the REST API.

How the service serves it (app/main.py)::

    from fastapi.staticfiles import StaticFiles
    from fastapi.responses import FileResponse
    import frontend

    app.mount("/static", StaticFiles(directory=frontend.STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(frontend.INDEX_HTML)

That is all: pages are hash-routed (``/#/jobs``, ``/#/jobs/12``, ``/#/submit``, ``/#/compare``,
``/#/leaderboard``), so no other server route is needed, and every asset (scripts, styles, the
vendored chart library and its license) lives under ``/static``. The pages call ``/api/v1`` on the
same origin. No CDN and no remote fonts: the dashboard works offline.

The chart library (chart.js, MIT) is pinned in ``frontend/package.json`` + ``package-lock.json``;
``frontend/vendor.sh`` refreshes ``static/vendor/`` from it. The copied files are committed.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"
# The URL prefix the pages expect their assets under (index.html links /static/...).
STATIC_URL = "/static"

__all__ = ["INDEX_HTML", "STATIC_DIR", "STATIC_URL"]
