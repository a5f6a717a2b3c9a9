"""clamp_geometry: a restored window stays on a screen and at a usable size (plain rectangles)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QRect

pytestmark = pytest.mark.timeout(30)

FULL_HD = (0, 0, 1920, 1050)           # available area of a 1920x1080 screen with a panel


def xywh(r: QRect):
    return r.x(), r.y(), r.width(), r.height()


def clamp(*args, **kwargs):
    from uldl_studio.qt.settings import clamp_geometry

    return xywh(clamp_geometry(*args, **kwargs))


def test_a_good_geometry_is_kept():
    assert clamp((100, 80, 1400, 900), FULL_HD) == (100, 80, 1400, 900)
    assert clamp(QRect(100, 80, 1400, 900), QRect(*FULL_HD)) == (100, 80, 1400, 900)


def test_too_small_grows_to_the_minimum():
    """The reported case: 1066x422 left a 50 px map."""
    from uldl_studio.qt.settings import MIN_WINDOW_SIZE

    assert clamp((200, 150, 1066, 422), FULL_HD) == (200, 150, 1066, MIN_WINDOW_SIZE[1])
    assert clamp((10, 10, 300, 200), FULL_HD, min_size=(1000, 640)) == (10, 10, 1000, 640)


def test_minimum_is_capped_by_a_small_screen():
    assert clamp((0, 0, 400, 300), (0, 0, 800, 600)) == (0, 0, 800, 600)


def test_too_big_shrinks_to_the_screen():
    assert clamp((0, 0, 2560, 1600), FULL_HD) == FULL_HD
    assert clamp((-300, -200, 2560, 1600), FULL_HD) == FULL_HD


def test_off_screen_is_moved_back():
    assert clamp((1800, 900, 1200, 800), FULL_HD) == (720, 250, 1200, 800)      # hangs off right/bottom
    assert clamp((-500, -40, 1200, 800), FULL_HD) == (0, 0, 1200, 800)          # off left/top
    assert clamp((5000, 3000, 1200, 800), FULL_HD) == (720, 250, 1200, 800)     # entirely elsewhere


def test_multi_screen_keeps_the_screen_it_is_on():
    left = (0, 0, 1920, 1050)
    right = (1920, 0, 2560, 1410)      # a bigger screen to the right
    assert clamp((2100, 100, 1800, 1200), [left, right]) == (2100, 100, 1800, 1200)
    # Mostly on the right screen but hanging off its bottom: moved up on that screen.
    assert clamp((2000, 900, 1200, 800), [left, right]) == (2000, 610, 1200, 800)
    # Straddling, more on the left screen: kept whole on the left one.
    assert clamp((1000, 100, 1200, 800), [left, right]) == (720, 100, 1200, 800)
    # The right screen was unplugged: the window comes back to the remaining one.
    assert clamp((2100, 100, 1800, 1200), [left]) == (120, 0, 1800, 1050)
    # Nowhere near any screen: the nearest one.
    assert clamp((6000, 200, 1200, 800), [left, right]) == (3280, 200, 1200, 800)
    # Screens with an offset origin (a screen above the primary).
    top = (0, -1080, 1920, 1050)
    assert clamp((100, -1200, 1200, 800), [left, top]) == (100, -1080, 1200, 800)


def test_frame_is_kept_on_screen_too():
    # 30 px title bar, 4 px borders: the client area goes below the title bar.
    assert clamp((0, 0, 1200, 800), FULL_HD, frame=(4, 30, 4, 4)) == (4, 30, 1200, 800)
    assert clamp((0, 0, 3000, 2000), FULL_HD, frame=(4, 30, 4, 4)) == (4, 30, 1912, 1016)


def test_no_screen_is_an_error():
    with pytest.raises(ValueError):
        clamp((0, 0, 10, 10), [])


def test_restore_geometry_on_a_real_window(qtbot):
    """Save a squeezed window, restore it into a new one: it comes back usable and on screen."""
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QMainWindow

    from uldl_studio.qt.settings import restore_geometry

    screen = QGuiApplication.primaryScreen().availableGeometry()
    small = QMainWindow()
    qtbot.addWidget(small)
    small.setGeometry(screen.x() + 40, screen.y() + 30, 300, 120)
    saved = small.saveGeometry()
    again = QMainWindow()
    qtbot.addWidget(again)
    result = restore_geometry(again, saved)
    assert result == again.geometry()
    from uldl_studio.qt.settings import MIN_WINDOW_SIZE

    assert again.width() >= min(MIN_WINDOW_SIZE[0], screen.width())
    assert again.height() >= min(MIN_WINDOW_SIZE[1], screen.height())
    assert screen.contains(again.geometry())
    fresh = QMainWindow()
    qtbot.addWidget(fresh)
    restore_geometry(fresh, None)                 # no saved geometry: the default, fitted
    assert screen.contains(fresh.geometry())
