"""Where a BertViz view's libraries (require.js, d3, jQuery) come from: a CDN, the page itself, or the book.

``"cdn"``
    as BertViz does: require.js, d3 5.7.0 and jQuery from cdnjs. Each output is
    self-contained, so it works in Jupyter and in Colab (one iframe per output).
``"inline"``
    d3 and jQuery are copied *into* the output (from the repository's ``_static_vendor/``
    or ``node_modules/``, installed by ``npm ci`` from package.json; no require.js is
    needed). Works anywhere with no network: Jupyter, VS Code, the built book. Heavier.
``"static"``
    the output refers to ``../_static/require/require.js``, ``../_static/d3/d3.min.js``
    and ``../_static/jquery/jquery.min.js``, which the built book serves itself (the
    site's ``_static/`` is the repository's ``_static_vendor/``); the page for
    ``notebooks/NN_name.ipynb`` is ``notebooks/NN_name.html``, one level below the
    site's root. Lightest; only for the built book.

``"auto"`` (the default) picks: the environment variable ``ATTNBOOK_BERTVIZ_ASSETS``
when it is set (one of the three), else ``"cdn"`` in Colab, else ``"inline"`` when the
offline files are found in a ``_static_vendor/`` or ``node_modules/`` folder in the
working directory or one of its parents (a checkout of the book's repository after
``make assets``; the book build and the notebook tests run from ``notebooks/``),
else ``"cdn"``. With offline files present the HTML never names another host.

The loaders' JavaScript is in ``templates/load_inline.js`` and ``templates/load_require.js``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from attnbook.viz.templating import render, script_json

__all__ = ["ASSETS_ENV", "CDN_HOSTS", "MODES", "find_offline_assets", "resolve_assets", "loader_js"]

ASSETS_ENV = "ATTNBOOK_BERTVIZ_ASSETS"
MODES = ("cdn", "inline", "static")
CDN_HOSTS = ("cdnjs.cloudflare.com",)  # the only other host a view may name (in "cdn" mode)
_CDN = {
    "require": "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js",
    "d3": "https://cdnjs.cloudflare.com/ajax/libs/d3/5.7.0/d3.min",
    "jquery": "https://cdnjs.cloudflare.com/ajax/libs/jquery/2.0.0/jquery.min",
}
# Where each library is found, relative to a repository root: the site's copies first
# (tools/vendor_assets.py, listed in tools/vendor_files.txt), then node_modules/.
_OFFLINE = {
    "require": ("_static_vendor/require/require.js", "node_modules/requirejs/require.js"),
    "d3": ("_static_vendor/d3/d3.min.js", "node_modules/d3/dist/d3.min.js"),
    "jquery": ("_static_vendor/jquery/jquery.min.js", "node_modules/jquery/dist/jquery.min.js"),
}
_STATIC = {"require": "require/require.js", "d3": "d3/d3.min", "jquery": "jquery/jquery.min"}  # under static_url


def find_offline_assets(start: str | os.PathLike | None = None) -> dict[str, Path] | None:
    """The first folder, from ``start`` (default: the working directory) upwards, holding all three libraries.

    Returns ``{"require": path, "d3": path, "jquery": path, "root": folder}`` or ``None``.
    """
    if start is not None and not isinstance(start, (str, os.PathLike)):
        raise TypeError(f"expected start to be a folder path or None, got {type(start).__name__}")
    here = Path(start) if start is not None else Path.cwd()
    for folder in (here, *here.parents):
        found = {}
        for lib, candidates in _OFFLINE.items():
            hit = next((folder / c for c in candidates if (folder / c).is_file()), None)
            if hit is None:
                break
            found[lib] = hit
        else:
            return {**found, "root": folder}
    return None


def resolve_assets(assets: str = "auto", *, start: str | os.PathLike | None = None) -> str:
    """Turn ``"auto"`` into ``"cdn"``, ``"inline"`` or ``"static"`` (rules in the module docstring)."""
    if assets not in (*MODES, "auto"):
        raise ValueError(f"expected assets to be one of 'auto', 'cdn', 'inline', 'static', got {assets!r}")
    if assets == "auto":
        chosen = os.environ.get(ASSETS_ENV, "").strip()
        if chosen:
            if chosen not in MODES:
                raise ValueError(f"expected {ASSETS_ENV} to be one of {', '.join(MODES)}, got {chosen!r}")
            assets = chosen
        elif "google.colab" in sys.modules:
            assets = "cdn"
        else:
            assets = "inline" if find_offline_assets(start) is not None else "cdn"
    if assets == "inline" and find_offline_assets(start) is None:
        raise FileNotFoundError("expected the offline libraries (require.js, d3, jQuery) in _static_vendor/ or "
                                "node_modules/ of the working directory or a parent, found none; run `make assets`")
    return assets


def _library(path: Path) -> str:
    source = path.read_text(encoding="utf-8")
    if "</script" in source.lower() or "<!--" in source:
        raise ValueError(f"expected {path.name} to be safe to inline in a <script> element, but it contains "
                         f"'</script' or '<!--'")
    return source


def loader_js(mode: str, static_url: str = "../_static") -> str:
    """The JavaScript that gets jQuery and d3 in ``mode`` (one of MODES), then calls ``main($, d3)``."""
    if mode not in MODES:
        raise ValueError(f"expected mode to be one of {', '.join(MODES)} (see resolve_assets), got {mode!r}")
    if not isinstance(static_url, str):
        raise TypeError(f"expected static_url to be a URL string, got {type(static_url).__name__}")
    if not static_url:
        raise ValueError("expected static_url to be the URL of the site's _static/ folder, got ''")
    if mode == "inline":
        libs = find_offline_assets()
        if libs is None:
            raise FileNotFoundError("expected the offline libraries in _static_vendor/ or node_modules/ of the "
                                    "working directory or a parent, found none; run `make assets`")
        return render("load_inline.js", jquery=_library(libs["jquery"]), d3=_library(libs["d3"]))
    if mode == "static":
        base = static_url.rstrip("/")
        src = {lib: f"{base}/{path}" for lib, path in _STATIC.items()}
    else:
        src = dict(_CDN)
    return render("load_require.js", require_src=script_json(src["require"]), d3_src=script_json(src["d3"]),
                  jquery_src=script_json(src["jquery"]))
