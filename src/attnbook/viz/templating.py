"""The HTML and JavaScript templates of the BertViz views, kept as package data in ``templates/``.

A template is filled with a :class:`string.Template` in which only ``${name}`` is a
placeholder (a bare ``$``, jQuery's, stays as written; ``$${`` writes ``${``), and the
values are inserted as they are (never re-read as templates). Each caller turns its data
into text first: JSON through :func:`script_json`, HTML through :func:`html.escape`.
A ``.js`` template is a fragment spliced into other code, so its file's final newline is
dropped.
"""

from __future__ import annotations

import functools
import json
import string
from importlib import resources

__all__ = ["TEMPLATES", "placeholders", "render", "script_json", "template_text"]

TEMPLATES = ("view.html", "view.js", "load_inline.js", "load_require.js")


class _Template(string.Template):
    # (re.VERBOSE) "$${" is an escaped "${"; "named" and "invalid" never match, so a bare "$" is text
    pattern = r"""\$(?: (?P<escaped>\$(?=\{)) | \{(?P<braced>[a-z_][a-z0-9_]*)\}
                      | (?P<named>(?!)) | (?P<invalid>(?!)) )"""


def template_text(name: str) -> str:
    """The text of ``templates/<name>``, read with importlib.resources (so from a wheel or a zip as well)."""
    if not isinstance(name, str) or name not in TEMPLATES:
        raise ValueError(f"expected a template name, one of {', '.join(TEMPLATES)}, got {name!r}")
    return _read(name)


@functools.lru_cache(maxsize=None)
def _read(name: str) -> str:
    text = resources.files(__package__).joinpath("templates").joinpath(name).read_text(encoding="utf-8")
    return text[:-1] if name.endswith(".js") and text.endswith("\n") else text


def placeholders(name: str) -> frozenset[str]:
    """The names of the ``${name}`` placeholders in a template."""
    template = _Template(template_text(name))
    matches = template.pattern.finditer(template.template)
    return frozenset(m.group("braced") for m in matches if m.group("braced"))


def render(name: str, **values: str) -> str:
    """Fill every placeholder of template ``name``; a missing, unknown or non-text value is an error."""
    wanted = placeholders(name)
    if set(values) != wanted:
        raise ValueError(f"expected values for the placeholders {sorted(wanted)} of template {name}, "
                         f"got {sorted(values)}")
    for key, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"expected text for placeholder {key!r} of template {name}, "
                            f"got {type(value).__name__}")
    return _Template(template_text(name)).substitute(values)


def script_json(value: object) -> str:
    """JSON that is safe inside a <script> element (no '<', '>' or '&' characters)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
