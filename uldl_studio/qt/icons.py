"""The application icon as a QIcon (all packaged PNG sizes, read via importlib.resources)."""
from __future__ import annotations

from functools import lru_cache

from PySide6.QtGui import QIcon, QPixmap

from uldl_studio import resources


def icon_pixmap(size: int) -> QPixmap:
    """The packaged PNG of ``size`` px (one of ``resources.ICON_SIZES``)."""
    pixmap = QPixmap()
    if not pixmap.loadFromData(resources.icon_png(size), "PNG"):
        raise ValueError(f"the {size} px application icon does not decode")
    return pixmap


@lru_cache(maxsize=1)
def app_icon() -> QIcon:
    """The application/window icon (needs a QGuiApplication)."""
    icon = QIcon()
    for size in resources.ICON_SIZES:
        icon.addPixmap(icon_pixmap(size))
    return icon
