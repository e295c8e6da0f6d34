"""``widget.js`` as served: the script from static/widget with its stylesheet inlined, and a content hash ETag.

The stylesheet lives in its own file for editing and is inlined at serve time, so an embedding page makes one
request and the styles go straight into the widget's shadow root (nothing leaks into or out of the host page).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

WIDGET_DIR = Path(__file__).resolve().parents[2] / "static" / "widget"
CSS_PLACEHOLDER = '"/*@@WIDGET_CSS@@*/"'


@dataclass(frozen=True, slots=True)
class Script:
    body: bytes
    etag: str


_cache: dict[tuple[float, float], Script] = {}


def widget_script() -> Script:
    """The served script; rebuilt when either source file changes (so editing in development needs no restart)."""
    js_path, css_path = WIDGET_DIR / "widget.js", WIDGET_DIR / "widget.css"
    stamp = (js_path.stat().st_mtime, css_path.stat().st_mtime)
    script = _cache.get(stamp)
    if script is None:
        source = js_path.read_text(encoding="utf-8")
        if CSS_PLACEHOLDER not in source:
            raise RuntimeError(f"{js_path} lost its stylesheet placeholder {CSS_PLACEHOLDER}")
        css = css_path.read_text(encoding="utf-8")
        body = source.replace(CSS_PLACEHOLDER, json.dumps(css, ensure_ascii=False)).encode("utf-8")
        script = Script(body=body, etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        _cache.clear()
        _cache[stamp] = script
    return script
