"""The back office's pages (backend/office/): a static front end served by the backend itself,
at /office/, that calls the operator API with the person's login token. No page is rendered on
the server, so the role checks the API makes are the only ones there are, and a viewer's page
without action buttons is a courtesy, not the protection.

Every file goes with a Content-Security-Policy that allows only this origin's scripts (no
inline script, no CDN, no eval) and forbids framing; the vendored libraries are cached for a
year under their version's path, the app's own files revalidated on every load."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

OFFICE = Path(__file__).resolve().parent.parent / "office"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class OfficeFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope):
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        response.headers["Cache-Control"] = ("public, max-age=31536000, immutable"
                                             if path.startswith("vendor/") else "no-cache")
        return response


def mount(app: FastAPI) -> None:
    # ECharts is 1.1 MB, 370 KB compressed: the difference a phone on a mobile network notices.
    app.mount("/office", GZipMiddleware(OfficeFiles(directory=OFFICE, html=True),
                                        minimum_size=1024), name="office")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/office/")
