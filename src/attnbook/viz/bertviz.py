"""BertViz's head view and model view, rendered with or without a network.

BertViz (Vig, 2019) draws attention with d3 and jQuery, which it loads through
require.js from public CDNs: offline, or in a book that must not call other hosts,
its views stay blank. This bridge reuses BertViz's own drawing code (the JavaScript
files of the ``bertviz`` package) and decides where the three libraries come from
(``assets``: ``"cdn"``, ``"inline"``, ``"static"`` or ``"auto"``; see
:mod:`attnbook.viz.assets`).

Every view has a stable element id (``bertviz-<view_id>``, chosen by the caller, so
rebuilds are byte-identical), its weights rounded to ``decimals`` places and sent as
integers, only the layers and heads asked for, and a ``<noscript>`` PNG fallback.
The page's markup and JavaScript are package data (``templates/view.html``,
``templates/view.js``), filled by :mod:`attnbook.viz.templating`.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from attnbook import _validate
from attnbook.viz.assets import ASSETS_ENV, CDN_HOSTS, MODES, find_offline_assets, loader_js, resolve_assets
from attnbook.viz.templating import render, script_json

__all__ = ["AttentionView", "sentence_views", "find_offline_assets", "resolve_assets", "head_view_html",
           "model_view_html", "head_view_png", "model_view_png", "display_html", "ASSETS_ENV", "CDN_HOSTS",
           "MODES"]

_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class AttentionView:
    """One choice in a view's "Attention:" menu: weights from ``left`` tokens (queries) to ``right`` tokens (keys).

    Shape:
        attention (layers, heads, len(left), len(right))
    """

    name: str
    attention: torch.Tensor
    left: tuple[str, ...]
    right: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"expected a non-empty name, got {self.name!r}")
        _validate.tensor(self.attention, "attention", ndim=4, floating=True)
        for side in ("left", "right"):
            tokens = getattr(self, side)
            if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
                raise TypeError(f"expected {side} to be a sequence of token strings, got {type(tokens).__name__}")
            object.__setattr__(self, side, tuple(tokens))
        expected = (len(self.left), len(self.right))
        if tuple(self.attention.shape[-2:]) != expected:
            raise ValueError(f"expected attention of shape (layers, heads, {expected[0]}, {expected[1]}) for "
                             f"{expected[0]} query and {expected[1]} key tokens, got {tuple(self.attention.shape)}")


def sentence_views(tokens: Sequence[str], attention: torch.Tensor, *, name: str = "All",
                   sentence_b_start: int | None = None) -> list[AttentionView]:
    """The views of one input, as BertViz makes them: all tokens, plus A->A, B->B, A->B, B->A for a pair.

    Shape:
        attention (layers, heads, T, T), T = len(tokens)
    """
    tokens = tuple(tokens)
    views = [AttentionView(name, attention, tokens, tokens)]
    if sentence_b_start is not None:
        if isinstance(sentence_b_start, bool) or not isinstance(sentence_b_start, int) \
                or not 0 < sentence_b_start < len(tokens):
            raise ValueError(f"expected sentence_b_start in [1, {len(tokens) - 1}], got {sentence_b_start!r}")
        a, b = slice(0, sentence_b_start), slice(sentence_b_start, len(tokens))
        for label, q, k in (("A -> A", a, a), ("B -> B", b, b), ("A -> B", a, b), ("B -> A", b, a)):
            views.append(AttentionView(f"{name}: sentence {label}", attention[:, :, q, k], tokens[q], tokens[k]))
    return views


def _bertviz_js(kind: str) -> str:
    spec = importlib.util.find_spec("bertviz")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("expected the bertviz package for its drawing code, but it is not installed; "
                                  "run: pip install 'bertviz>=1.4,<2'")
    path = Path(next(iter(spec.submodule_search_locations))) / f"{kind}_view.js"
    source = path.read_text(encoding="utf-8")
    marker = re.search(r"requirejs\(\['jquery', 'd3'\],\s*function\s*\(\$, d3\)\s*\{", source)
    if marker is None or not source.rstrip().endswith("});"):
        raise RuntimeError(f"expected BertViz's {path.name} to wrap its code in requirejs(['jquery', 'd3'], "
                           f"function ($, d3) {{ ... }}); this version of bertviz is not supported")
    body = source[marker.start():].rstrip()
    return "function ($, d3) {" + body[marker.end() - marker.start():-2]  # drop the final ");"


def _compact(views: Sequence[AttentionView], layers: list[int], heads: list[int] | None, decimals: int) -> list:
    data = []
    for view in views:
        att = view.attention.detach().float().cpu()[layers]  # (layers kept, heads, Tq, Tk)
        if heads is not None:
            att = att[:, heads]
        ints = (att * 10**decimals).round().to(torch.int32)  # 0.1234 -> 123 (3 decimals), decoded in the browser
        data.append({"name": view.name, "attn": ints.tolist(), "left_text": list(view.left),
                     "right_text": list(view.right)})
    return data


def _fallback(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<noscript><p>{html.escape(alt)} (an interactive view: it needs JavaScript)</p></noscript>"
    if not isinstance(png, bytes) or not png.startswith(b"\x89PNG"):
        raise TypeError("expected fallback to be the bytes of a PNG image (see head_view_png), "
                        f"got {type(png).__name__}")
    data = base64.b64encode(png).decode("ascii")
    return f'<noscript><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></noscript>'


def _html(kind: str, views: Sequence[AttentionView], params: dict, controls: str, view_id: str, mode: str,
          static_url: str, fallback: bytes | None, decimals: int) -> str:
    root = f"bertviz-{view_id}"
    names = [v.name for v in views]
    if len(views) > 1:
        options = "".join(f'<option value="{i}">{html.escape(n)}</option>' for i, n in enumerate(names))
        controls += f' Attention: <select id="filter">{options}</select>'
    alt = f"BertViz {kind} view: {names[0]}"
    params = {**params, "root_div_id": root}
    # BertViz's files name PYTHON_PARAMS twice (the second time in a comment): fill in the first only
    main = _bertviz_js(kind).replace("PYTHON_PARAMS", "decode(" + script_json(params) + ")", 1)
    script = render("view.js", decimals=str(decimals), scale=str(10**decimals), main=main,
                    loader=loader_js(mode, static_url))
    return render("view.html", root=root, kind=kind, controls=controls, fallback=_fallback(fallback, alt),
                  script=script)


def _common(views: Sequence[AttentionView], view_id: str, include_layers: Sequence[int] | None,
            decimals: int) -> tuple[list[AttentionView], list[int]]:
    if isinstance(views, AttentionView):
        views = [views]
    if isinstance(views, (str, bytes)) or not isinstance(views, Sequence) or not views \
            or not all(isinstance(v, AttentionView) for v in views):
        raise TypeError("expected a non-empty list of AttentionView (see sentence_views)")
    if not isinstance(view_id, str) or not _ID.fullmatch(view_id):
        raise ValueError(f"expected view_id to be a short name of letters, digits, '-' and '_' "
                         f"(starting with a letter), got {view_id!r}")
    shapes = {tuple(v.attention.shape[:2]) for v in views}
    if len(shapes) != 1:
        raise ValueError(f"expected every view to have the same (layers, heads), got {sorted(shapes)}")
    (n_layers, _), = shapes
    layers = list(range(n_layers)) if include_layers is None else list(include_layers)
    if not layers or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layers for i in layers):
        raise ValueError(f"expected include_layers to be layer indices in [0, {n_layers}), got {include_layers!r}")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 1 <= decimals <= 6:
        raise ValueError(f"expected decimals to be an int in [1, 6], got {decimals!r}")
    return list(views), layers


def head_view_html(views: Sequence[AttentionView] | AttentionView, *, view_id: str, layer: int | None = None,
                   heads: Sequence[int] | None = None, include_layers: Sequence[int] | None = None,
                   assets: str = "auto", static_url: str = "../_static", fallback: bytes | None = None,
                   decimals: int = 3) -> str:
    """The HTML of a BertViz head view (lines from each token to the tokens it attends to, one colour per head).

    ``layer``: the layer shown first; ``heads``: the heads ticked at first (default all);
    ``include_layers``: the layers sent to the page (default all). ``fallback``: PNG bytes
    shown where JavaScript is off (see :func:`head_view_png`).

    Shape:
        each view's attention (layers, heads, Tq, Tk)
    """
    views, layers = _common(views, view_id, include_layers, decimals)
    if layer is not None and layer not in layers:
        raise ValueError(f"expected layer to be one of include_layers {layers}, got {layer!r}")
    n_heads = views[0].attention.shape[1]
    if heads is not None and (not heads or any(isinstance(h, bool) or not isinstance(h, int)
                                               or not 0 <= h < n_heads for h in heads)):
        raise ValueError(f"expected heads to be head indices in [0, {n_heads}), got {heads!r}")
    mode = resolve_assets(assets)
    params = {"attention": _compact(views, layers, None, decimals), "default_filter": "0",
              "layer": layer, "heads": None if heads is None else list(heads), "include_layers": layers}
    return _html("head", views, params, 'Layer: <select id="layer"></select>', view_id, mode, static_url,
                 fallback, decimals)


def model_view_html(views: Sequence[AttentionView] | AttentionView, *, view_id: str,
                    include_layers: Sequence[int] | None = None, include_heads: Sequence[int] | None = None,
                    assets: str = "auto", static_url: str = "../_static", fallback: bytes | None = None,
                    decimals: int = 3, display_mode: str = "light") -> str:
    """The HTML of a BertViz model view: a thumbnail of every (layer, head); click one to enlarge it.

    Shape:
        each view's attention (layers, heads, Tq, Tk)
    """
    views, layers = _common(views, view_id, include_layers, decimals)
    n_heads = views[0].attention.shape[1]
    heads = list(range(n_heads)) if include_heads is None else list(include_heads)
    if not heads or any(isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < n_heads for h in heads):
        raise ValueError(f"expected include_heads to be head indices in [0, {n_heads}), got {include_heads!r}")
    if display_mode not in ("light", "dark"):
        raise ValueError(f"expected display_mode 'light' or 'dark', got {display_mode!r}")
    mode = resolve_assets(assets)
    params = {"attention": _compact(views, layers, heads, decimals), "default_filter": "0",
              "display_mode": display_mode, "include_layers": layers, "include_heads": heads,
              "total_heads": n_heads}
    return _html("model", views, params, "", view_id, mode, static_url, fallback, decimals)


def head_view_png(tokens: Sequence[str], attention: torch.Tensor, *, layer: int, heads: Sequence[int],
                  title: str = "", dpi: int = 60) -> bytes:
    """A static picture of a head view (one layer, a few heads), as PNG bytes for the no-JavaScript fallback.

    Shape:
        attention (layers, heads, T, T), T = len(tokens)
    """
    import matplotlib.pyplot as plt

    _validate.tensor(attention, "attention", ndim=4, floating=True)
    T = len(tokens)
    if tuple(attention.shape[-2:]) != (T, T):
        raise ValueError(f"expected attention of shape (layers, heads, {T}, {T}), got {tuple(attention.shape)}")
    if not 0 <= layer < attention.shape[0]:
        raise ValueError(f"expected layer in [0, {attention.shape[0]}), got {layer}")
    if not heads or not all(0 <= h < attention.shape[1] for h in heads):
        raise ValueError(f"expected head indices in [0, {attention.shape[1]}), got {heads!r}")
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(3.6, 0.28 * T + 0.6))
    for i, tok in enumerate(tokens):
        ax.text(0.0, -i, tok, ha="right", va="center", fontsize=9)
        ax.text(1.0, -i, tok, ha="left", va="center", fontsize=9)
    weights = attention[layer].detach().float().cpu()  # (heads, T, T)
    for h in heads:
        for q in range(T):
            for k in range(T):
                w = float(weights[h, q, k])
                if w > 0.05:
                    ax.plot([0.05, 0.95], [-q, -k], color=colours(h % 10), alpha=min(1.0, w), lw=1.5)
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylim(-T + 0.5, 0.8)
    ax.axis("off")
    ax.set_title(title or f"layer {layer}, heads {', '.join(map(str, heads))}", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def model_view_png(attention: torch.Tensor, *, dpi: int = 50) -> bytes:
    """A static picture of a model view: every (layer, head)'s weight matrix as a tiny heatmap, PNG bytes.

    Shape:
        attention (layers, heads, T, T)
    """
    import matplotlib.pyplot as plt

    _validate.tensor(attention, "attention", ndim=4, floating=True)
    layers, heads = attention.shape[:2]
    fig, axes = plt.subplots(layers, heads, figsize=(0.6 * heads, 0.6 * layers), squeeze=False)
    weights = attention.detach().float().cpu()
    for (l, h), ax in zip([(l, h) for l in range(layers) for h in range(heads)], axes.flat):
        ax.imshow(weights[l, h].numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("every layer (rows) and head (columns)", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def display_html(markup: str) -> None:
    """Show ``markup`` as an HTML output in Jupyter (and in the built book)."""
    if not isinstance(markup, str):
        raise TypeError(f"expected an HTML string, got {type(markup).__name__}")
    from IPython.display import HTML, display

    display(HTML(markup))
