"""HTML building blocks for the report and the review's contact sheet: one self-contained page (inline CSS, images
as `data:` URIs, no script, nothing fetched), so it opens offline, from a Kaggle notebook's output, or by e-mail.
Every piece of text is escaped here; callers pass plain strings."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable

import pandas as pd
from PIL import Image

DASH = "\u2013"  # an en dash: the missing value in tables
THUMBNAIL = 160  # longest side of a gallery image, px

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1rem 2rem 4rem; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.5rem; }
.sub { color: #666; margin-top: 0; } nav a { margin-right: 0.9rem; white-space: nowrap; }
table.data { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
table.data th, table.data td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
table.data th { background: #f4f4f6; } table.data td:first-child, table.data th:first-child { text-align: left; }
img.plot { max-width: 100%; height: auto; display: block; margin: 0.5rem 0 1rem; }
.note { border-left: 4px solid #d4a017; background: #fff8e1; padding: 0.4rem 0.8rem; margin: 0.4rem 0; }
.bad { border-left-color: #c62828; background: #ffebee; } .ok { border-left-color: #2e7d32; background: #e8f5e9; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 0.8rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.4rem; font-size: 0.8rem; background: #fafafa;
        overflow-wrap: anywhere; }
.card img { width: 100%; height: 150px; object-fit: contain; background: #222; border-radius: 4px; }
.card.wrong { border: 2px solid #c62828; } .card b { font-size: 0.85rem; } .muted { color: #777; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def data_uri(content: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def image(png: bytes, alt: str) -> str:
    """An embedded PNG plot."""
    return f'<img class="plot" src="{data_uri(png)}" alt="{esc(alt)}">'


def table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A pandas table as HTML (escaped; floats to `digits` places; missing values as a dash)."""
    return frame.to_html(index=False, border=0, classes="data", na_rep=DASH, escape=True,
                         float_format=lambda x: f"{x:.{digits}f}")  # fmt: skip


def notes(lines: Iterable[str], kind: str = "") -> str:
    """Boxed remarks; `kind` "bad" (a problem), "ok" or "" (a note)."""
    return "".join(f'<div class="note {kind}">{esc(line)}</div>' for line in lines)


def paragraph(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{"".join(parts)}</section>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """A whole document from `(anchor, title, html)` sections, with a table of contents."""
    nav = "".join(f'<a href="#{esc(anchor)}">{esc(name)}</a>' for anchor, name, _ in sections)
    body = "".join(section(anchor, name, content) for anchor, name, content in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
        f'<body><h1>{esc(title)}</h1><p class="sub">{esc(subtitle)}</p><nav>{nav}</nav>{body}</body></html>\n'
    )


def thumbnail(picture: Image.Image, size: int = THUMBNAIL) -> str:
    """A JPEG `data:` URI of `picture` (see `kagglekit.report.pictures`), longest side at most `size` px."""
    picture = picture.copy()
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=85)
    return data_uri(buffer.getvalue(), "image/jpeg")


def card(uri: str, title: str, lines: Iterable[str], wrong: bool = False) -> str:
    """One image of a gallery with its caption lines."""
    caption = "<br>".join(esc(line) for line in lines)
    return (f'<div class="card{" wrong" if wrong else ""}"><img src="{uri}" alt="{esc(title)}">'
            f"<b>{esc(title)}</b><br>{caption}</div>")  # fmt: skip


def grid(cards: Iterable[str]) -> str:
    return f'<div class="grid">{"".join(cards)}</div>'
