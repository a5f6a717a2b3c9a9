"""Render resources/uldl-studio.svg to the PNG icons next to it.

    QT_QPA_PLATFORM=offscreen python tools/render_icons.py

Uses QtSvg (part of PySide6-Essentials).  16 px is drawn from uldl-studio-small.svg, a
simplified drawing on the 16 px grid (the full one turns to mush there); check the PNGs by eye
after changing either drawing.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
SIZES = (16, 32, 48, 64, 128, 256)
SMALL = 16  # sizes up to this one use the small drawing


def render(svg: bytes, size: int) -> QImage:
    renderer = QSvgRenderer(QByteArray(svg))
    if not renderer.isValid():
        raise ValueError("the SVG does not parse")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - fonts, painter
    full = (RESOURCES / "uldl-studio.svg").read_bytes()
    small = (RESOURCES / "uldl-studio-small.svg").read_bytes()
    for size in SIZES:
        out = RESOURCES / f"uldl-studio-{size}.png"
        if not render(small if size <= SMALL else full, size).save(str(out)):
            raise OSError(f"{out}: could not write")
        print(out.relative_to(RESOURCES.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
