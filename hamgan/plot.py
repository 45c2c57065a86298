"""Line charts as small PNGs, drawn with PIL (no plotting library needed): one panel per metric,
one line per series with a band of +- one standard deviation, a shared legend below."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_write

PANEL_W, PANEL_H, MARGIN, LEGEND_ROW = 300, 210, 38, 16
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]

# one series: (x values, y means, y standard deviations or None)
Series = tuple[Sequence[float], Sequence[float], Sequence[float] | None]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def line_panels(panels: Sequence[tuple[str, dict[str, Series]]], path: str | os.PathLike, xlabel: str = "step",
                columns: int = 2) -> Path:
    """Draw `panels` [(title, {series label: (xs, ys, stds)})] in a grid of `columns` and save a PNG.
    Series with the same label share a colour across panels."""
    labels = list(dict.fromkeys(label for _, series in panels for label in series))
    colour = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    rows = -(-len(panels) // columns)
    width, height = columns * PANEL_W, rows * PANEL_H + LEGEND_ROW * len(labels) + 8
    image = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(image, "RGBA"), ImageFont.load_default()
    for i, (title, series) in enumerate(panels):
        _panel(draw, font, (i % columns) * PANEL_W, (i // columns) * PANEL_H, title, series, colour, xlabel)
    top = rows * PANEL_H + 4
    for j, label in enumerate(labels):
        y = top + j * LEGEND_ROW
        draw.line([(MARGIN, y + 6), (MARGIN + 24, y + 6)], fill=colour[label], width=3)
        draw.text((MARGIN + 30, y), label, fill="black", font=font)
    with atomic_write(path) as f:
        image.save(f, format="PNG", optimize=True)
    return Path(path)


def _panel(draw, font, left, top, title, series: dict[str, Series], colour, xlabel) -> None:
    x0, y0, x1, y1 = left + MARGIN + 12, top + 22, left + PANEL_W - 10, top + PANEL_H - 30
    draw.text((left + MARGIN, top + 4), title, fill="black", font=font)
    draw.rectangle([x0, y0, x1, y1], outline=(160, 160, 160))
    points = [(np.asarray(xs, float), np.asarray(ys, float), None if sd is None else np.asarray(sd, float))
              for xs, ys, sd in series.values()]
    if not points or all(len(xs) == 0 for xs, _, _ in points):
        draw.text((x0 + 8, y0 + 8), "no data", fill="gray", font=font)
        return
    xs_all = np.concatenate([xs for xs, _, _ in points])
    ys_all = np.concatenate([np.concatenate([ys - (sd if sd is not None else 0), ys + (sd if sd is not None else 0)])
                             for _, ys, sd in points])
    xmin, xmax = float(xs_all.min()), float(xs_all.max())
    ymin, ymax = float(np.nanmin(ys_all)), float(np.nanmax(ys_all))
    if xmax == xmin:
        xmin, xmax = xmin - 1, xmax + 1
    if ymax == ymin:
        ymin, ymax = ymin - 0.5 * abs(ymin or 1), ymax + 0.5 * abs(ymax or 1)

    def px(x, y):
        return x0 + (x - xmin) / (xmax - xmin) * (x1 - x0), y1 - (y - ymin) / (ymax - ymin) * (y1 - y0)
    for text, (x, y) in ((_fmt(ymax), (left + 4, y0 - 4)), (_fmt(ymin), (left + 4, y1 - 8)),
                         (_fmt(xmin), (x0, y1 + 4)), (_fmt(xmax), (x1 - 6 * len(_fmt(xmax)), y1 + 4))):
        draw.text((x, y), text, fill=(90, 90, 90), font=font)
    draw.text(((x0 + x1) // 2 - 3 * len(xlabel), y1 + 14), xlabel, fill=(90, 90, 90), font=font)
    for label, (xs, ys, sd) in zip(series, points):
        c = colour[label]
        if sd is not None and len(xs) > 1:
            band = [px(x, y + s) for x, y, s in zip(xs, ys, sd)] + [px(x, y - s) for x, y, s in zip(xs[::-1], ys[::-1], sd[::-1])]
            draw.polygon(band, fill=c + (50,))
        line = [px(x, y) for x, y in zip(xs, ys)]
        if len(line) > 1:
            draw.line(line, fill=c, width=2)
        for x, y in line[-1:]:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
