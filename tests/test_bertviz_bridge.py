"""The BertViz bridge: offline HTML with no CDN, stable ids, compact data, clear errors."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from attnbook.viz import bertviz as bb

URL = re.compile(r"https?://")


def _views(T=5, layers=2, heads=3, seed=0):
    att = torch.softmax(torch.randn(layers, heads, T, T, generator=torch.Generator().manual_seed(seed)), -1)
    tokens = ["[CLS]"] + [f"w{i}" for i in range(T - 2)] + ["[SEP]"]
    return tokens, att


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """A fake checkout with the three libraries in _static_vendor/, as the working directory's parent."""
    for lib, rel in [("require", "_static_vendor/require/require.js"), ("d3", "_static_vendor/d3/d3.min.js"),
                     ("jquery", "_static_vendor/jquery/jquery.min.js")]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True)
        path.write_text(f"/* {lib} */ var {lib}Loaded = true;", encoding="utf-8")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.delenv(bb.ASSETS_ENV, raising=False)
    return tmp_path


def test_finds_offline_assets_from_the_notebooks_folder(offline):
    found = bb.find_offline_assets()
    assert found is not None and found["root"] == offline
    assert bb.resolve_assets() == "inline"


@pytest.mark.parametrize("mode", ["inline", "static"])
def test_no_cdn_reference_when_offline_assets_are_present(offline, mode):
    tokens, att = _views()
    for make in (bb.head_view_html, bb.model_view_html):
        markup = make(bb.sentence_views(tokens, att), view_id="t1", assets=mode)
        assert not URL.search(markup), f"{mode}: found a URL: {URL.search(markup)}"
        assert not any(host in markup for host in bb.CDN_HOSTS)
    if mode == "static":
        assert '"../_static/require/require.js"' in markup and '"../_static/d3/d3.min"' in markup
    else:
        assert "var d3Loaded = true;" in markup and "var jqueryLoaded = true;" in markup


def test_the_real_libraries_inline_without_urls_to_load(monkeypatch):
    # with the repository's own node_modules/_static_vendor (after `make assets`), if present
    found = bb.find_offline_assets(Path(__file__).resolve().parent.parent)
    if found is None:
        pytest.skip("the offline libraries are not installed (run `make assets`)")
    monkeypatch.chdir(found["root"])
    markup = bb.head_view_html(bb.sentence_views(*_views()), view_id="real", assets="inline")
    assert not any(host in markup for host in bb.CDN_HOSTS)
    assert "require.config" not in markup.split("var main")[0]  # no require.js needed inline


def test_auto_without_offline_assets_is_bertviz_as_usual(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(bb.ASSETS_ENV, raising=False)
    assert bb.resolve_assets() == "cdn"
    markup = bb.head_view_html(bb.sentence_views(*_views()), view_id="c")
    assert "https://cdnjs.cloudflare.com/ajax/libs/require.js/" in markup
    with pytest.raises(FileNotFoundError, match="make assets"):
        bb.resolve_assets("inline")


def test_environment_variable_and_colab(offline, monkeypatch):
    monkeypatch.setenv(bb.ASSETS_ENV, "static")
    assert bb.resolve_assets() == "static"
    monkeypatch.setenv(bb.ASSETS_ENV, "nonsense")
    with pytest.raises(ValueError, match="expected ATTNBOOK_BERTVIZ_ASSETS"):
        bb.resolve_assets()
    monkeypatch.delenv(bb.ASSETS_ENV)
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert bb.resolve_assets() == "cdn"


def test_stable_ids_and_reproducible_output(offline):
    tokens, att = _views()
    a = bb.head_view_html(bb.sentence_views(tokens, att), view_id="same", assets="static")
    b = bb.head_view_html(bb.sentence_views(tokens, att.clone()), view_id="same", assets="static")
    assert a == b
    assert 'id="bertviz-same"' in a and '"root_div_id":"bertviz-same"' in a
    assert not re.search(r"bertviz-[0-9a-f]{32}", a)  # no random uuid


def _params(markup):
    return json.loads(re.search(r"decode\((\{.*?\})\)", markup, re.S).group(1))


def test_compact_data_rounded_integers_and_only_the_layers_asked(offline):
    tokens, att = _views(T=4, layers=3, heads=2)
    markup = bb.head_view_html(bb.sentence_views(tokens, att), view_id="c", include_layers=[1, 2], layer=2,
                               assets="static", decimals=3)
    params = _params(markup)
    data = torch.tensor(params["attention"][0]["attn"])
    assert data.dtype == torch.int64 and data.shape == (2, 2, 4, 4)
    torch.testing.assert_close(data / 1000, att[1:], atol=5e-4, rtol=0)
    assert params["include_layers"] == [1, 2] and params["layer"] == 2
    assert markup.count('"attention":[') == 1  # the data is sent once
    model = _params(bb.model_view_html(bb.sentence_views(tokens, att), view_id="m", include_heads=[1], assets="static"))
    assert torch.tensor(model["attention"][0]["attn"]).shape == (3, 1, 4, 4) and model["total_heads"] == 2


def test_sentence_pair_views_and_escaping(offline):
    tokens = ["[CLS]", "</script>", "a", "[SEP]", "b", "&", "[SEP]"]
    att = torch.full((1, 2, 7, 7), 1 / 7)
    views = bb.sentence_views(tokens, att, name="x<y", sentence_b_start=4)
    assert [v.name for v in views] == ["x<y", "x<y: sentence A -> A", "x<y: sentence B -> B",
                                       "x<y: sentence A -> B", "x<y: sentence B -> A"]
    assert views[3].attention.shape == (1, 2, 4, 3) and views[3].right == ("b", "&", "[SEP]")
    markup = bb.head_view_html(views, view_id="p", assets="static")
    assert "</script>" not in markup.split("<script", 1)[1].rsplit("</script>", 1)[0]
    assert "x&lt;y" in markup and '<select id="filter">' in markup


def test_noscript_fallback_png(offline):
    tokens, att = _views()
    png = bb.head_view_png(tokens, att, layer=1, heads=[0, 2])
    assert png.startswith(b"\x89PNG") and len(png) < 60_000
    markup = bb.head_view_html(bb.sentence_views(tokens, att), view_id="f", assets="static", fallback=png)
    assert re.search(r'<noscript><img alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]+"></noscript>', markup)
    assert bb.model_view_png(att).startswith(b"\x89PNG")
    with pytest.raises(TypeError, match="PNG"):
        bb.head_view_html(bb.sentence_views(tokens, att), view_id="f", assets="static", fallback=b"GIF89a")


def test_bad_inputs(offline):
    tokens, att = _views()
    with pytest.raises(ValueError, match="expected attention of shape"):
        bb.AttentionView("x", att, tokens[:-1], tokens)
    with pytest.raises(TypeError, match="expected attention to be a torch.Tensor"):
        bb.AttentionView("x", att.tolist(), tokens, tokens)
    with pytest.raises(ValueError, match="view_id"):
        bb.head_view_html(bb.sentence_views(tokens, att), view_id="has space", assets="static")
    with pytest.raises(TypeError, match="AttentionView"):
        bb.head_view_html([att], view_id="a", assets="static")
    with pytest.raises(ValueError, match="include_layers"):
        bb.head_view_html(bb.sentence_views(tokens, att), view_id="a", include_layers=[5], assets="static")
    with pytest.raises(ValueError, match="layer"):
        bb.head_view_html(bb.sentence_views(tokens, att), view_id="a", include_layers=[0], layer=1, assets="static")
    with pytest.raises(ValueError, match="assets"):
        bb.head_view_html(bb.sentence_views(tokens, att), view_id="a", assets="web")
    with pytest.raises(ValueError, match="sentence_b_start"):
        bb.sentence_views(tokens, att, sentence_b_start=0)
    with pytest.raises(ValueError, match="decimals"):
        bb.model_view_html(bb.sentence_views(tokens, att), view_id="a", decimals=0, assets="static")


# --- the templates (attnbook/viz/templates/), and the old import path -----------------------------------------

from importlib import resources  # noqa: E402
from fnmatch import fnmatch  # noqa: E402
import tomllib  # noqa: E402

from attnbook.viz import assets, templating  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_templates_are_package_data():
    folder = resources.files("attnbook.viz").joinpath("templates")
    on_disk = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert on_disk == sorted(templating.TEMPLATES), "every file in templates/ is a listed template, and back"
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"]["attnbook.viz"]
    for name in templating.TEMPLATES:
        assert any(fnmatch(f"templates/{name}", g) for g in globs), f"{name} is not in [tool.setuptools.package-data]"
        assert templating.placeholders(name), f"{name} has no ${{placeholder}}"
    # the JavaScript lives in the templates, not in the modules
    for module in ("bertviz.py", "assets.py", "templating.py"):
        source = (ROOT / "src" / "attnbook" / "viz" / module).read_text(encoding="utf-8")
        assert "window." not in source and "function (" not in source.replace("function ($, d3) {", ""), module


@pytest.mark.parametrize("mode", ["cdn", "inline", "static"])
def test_every_placeholder_is_filled(offline, mode):
    tokens, att = _views()
    every = set().union(*(templating.placeholders(n) for n in templating.TEMPLATES))
    assert {"root", "script", "main", "loader", "d3", "require_src"} <= every
    for make in (bb.head_view_html, bb.model_view_html):
        markup = make(bb.sentence_views(tokens, att, sentence_b_start=2), view_id="ph", assets=mode,
                      fallback=bb.model_view_png(att))
        left = sorted(p for p in every if "${" + p + "}" in markup)
        assert not left, f"{make.__name__} ({mode}): unfilled placeholders {left}"
        # the page's structure, as tests/test_site.py looks for it
        assert markup.startswith('<div id="bertviz-ph" class="attnbook-bertviz attnbook-bertviz-')
        assert markup.count("<script") == 1 and markup.rstrip().endswith("</script>")
        assert "var main = function ($, d3) {" in markup and "decode({" in markup
        assert "main(libs.jquery, libs.d3);" in markup if mode == "inline" else "window.requirejs.config(" in markup
    if mode == "inline":  # a bare '$' of a template stays as written
        assert "no window.$, no AMD define" in markup


def test_render_inserts_values_verbatim_and_rejects_bad_values():
    names = templating.placeholders("view.html")
    filled = templating.render("view.html", **{n: "${root}$$" for n in names})
    assert filled.count("${root}$$") == len(templating.template_text("view.html").split("${")) - 1
    with pytest.raises(ValueError, match=r"expected values for the placeholders \['controls', 'fallback'"):
        templating.render("view.html", root="a")
    with pytest.raises(ValueError, match="got .*'surplus'"):
        templating.render("view.html", **{n: "" for n in names}, surplus="x")
    with pytest.raises(TypeError, match="expected text for placeholder 'root'"):
        templating.render("view.html", **{**{n: "" for n in names}, "root": 3})
    with pytest.raises(ValueError, match="expected a template name, one of view.html"):
        templating.template_text("../pyproject.toml")
    with pytest.raises(ValueError, match="expected a template name"):
        templating.template_text(["view.html"])
    text = templating.script_json({"a": "</script>&"})
    assert not set("<>&") & set(text) and json.loads(text) == {"a": "</script>&"}


def test_loader_bad_inputs(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="expected mode to be one of cdn, inline, static"):
        assets.loader_js("auto")
    with pytest.raises(TypeError, match="expected static_url to be a URL string, got int"):
        assets.loader_js("static", 3)
    with pytest.raises(ValueError, match="expected static_url"):
        assets.loader_js("static", "")
    with pytest.raises(TypeError, match="expected start to be a folder path or None, got int"):
        assets.find_offline_assets(3)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="make assets"):
        assets.loader_js("inline")
    assert '"/s/require/require.js"' in assets.loader_js("static", "/s/")


def test_old_import_paths_are_the_same_objects():
    import attnbook.bertviz_bridge as old_bridge
    import attnbook.plotting as old_plotting
    from attnbook.viz import plotting

    for new, old in ((bb, old_bridge), (plotting, old_plotting)):
        assert old.__all__ == new.__all__ and new.__all__
        for name in new.__all__:
            assert getattr(old, name) is getattr(new, name), name
