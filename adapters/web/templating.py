"""The Jinja2 environment the dashboard and `itertrack report --html` share, and what a self-contained page
inlines (the stylesheet, the vendored JavaScript with its licences, and a Content-Security-Policy that lets
only those scripts run and loads nothing from anywhere).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from itertrack.adapters.web.units import human_count, human_duration

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR = STATIC / "vendor"
# In the order a page loads them: vega-lite needs vega, vega-embed needs both; app.js draws the charts.
CHART_SCRIPTS = ("vega", "vega-lite", "vega-embed")


def environment() -> Environment:
    """The templates under adapters/web/templates with autoescaping on, and the filters they use: `count`
    (12,345), `duration` (seconds as "1 d 8 h 38 min") and `pretty` (indented JSON)."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )
    env.filters["count"] = human_count
    env.filters["duration"] = human_duration
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return env


@dataclass(frozen=True)
class InlineAssets:
    """What a page that must open from a file with no network carries inside itself.

    `style`: style.css; `chart_scripts`: vega, vega-lite and vega-embed, in load order; `app_script`: app.js;
    `licences`: (package@version, licence text) of each vendored package; `csp`: the policy for a
    `<meta http-equiv="Content-Security-Policy">` naming each inline script by its SHA-256 (so no other inline
    script runs), with 'unsafe-eval' (Vega compiles its expressions with the Function constructor) and no
    source to fetch from."""

    style: Markup
    chart_scripts: tuple[Markup, ...]
    app_script: Markup
    licences: tuple[tuple[str, str], ...]
    csp: str


def _script(text: str, name: str) -> Markup:
    """`text` as the body of an inline <script>; `ValueError` when it holds what would end or confuse the
    element (`</script`, `<!--`): the vendored files hold neither, a new version that does is refused."""
    lowered = text.lower()
    for bad in ("</script", "<!--"):
        if bad in lowered:
            raise ValueError(f"{name} holds {bad!r}: it cannot be inlined in a <script> element as it is")
    return Markup(text)  # noqa: S704 - our own vendored, checksummed files, checked above


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def inline_assets() -> InlineAssets:
    """The stylesheet, scripts, licences and policy of a self-contained page (read once per process)."""
    versions = {}
    for line in (VENDOR / "VERSIONS").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            spec = line.split()[0]
            versions[spec.rsplit("@", 1)[0]] = spec
    scripts = tuple(
        _script((VENDOR / f"{name}.min.js").read_text(encoding="utf-8"), f"{name}.min.js") for name in CHART_SCRIPTS
    )
    app = _script((STATIC / "app.js").read_text(encoding="utf-8"), "app.js")
    hashes = " ".join(_sha256(str(s)) for s in (*scripts, app))
    csp = (
        f"default-src 'none'; script-src {hashes} 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    licences = tuple(
        (versions.get(name, name), (VENDOR / f"{name}.LICENSE").read_text(encoding="utf-8")) for name in CHART_SCRIPTS
    )
    style = Markup((STATIC / "style.css").read_text(encoding="utf-8"))  # noqa: S704 - our own stylesheet
    return InlineAssets(style=style, chart_scripts=scripts, app_script=app, licences=licences, csp=csp)
