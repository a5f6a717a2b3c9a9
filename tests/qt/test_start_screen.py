"""Start screen: previews on a worker, and the real start screen driven through run_gui()."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(120)


def test_a_second_preview_replaces_the_first(qtbot, settings_dir, tmp_path):
    """Choosing another dataset while one is being read shows only the last one."""
    from uldl_studio.core.datasets.demo import write_demo
    from uldl_studio.qt.start_screen import StartScreen

    first = write_demo(tmp_path / "first", n=40)
    second = write_demo(tmp_path / "second", n=30)
    screen = StartScreen()
    qtbot.addWidget(screen)
    ready = []
    screen.previewReady.connect(lambda: ready.append(screen.preview_summary.text()))
    screen.preview_path(str(first))
    screen._preview_job.thread.wait(30_000)   # the first has been read; its result is queued
    with qtbot.waitSignal(screen.previewReady, timeout=60_000):
        screen.preview_path(str(second))
    qtbot.wait(300)
    assert len(ready) == 1 and "30 samples" in ready[0]
    assert "30 samples" in screen.preview_summary.text()
    screen.close()
