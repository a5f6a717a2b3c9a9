"""HealthPanel: the estimated label issues first, per-class estimated rates and highlighted
counts, and the expected given × true label matrix, drawn from the session and clicked with the
real mouse."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication

from uldl_studio.core.labels import scores
from uldl_studio.core.review import health
from uldl_studio.core.labels.label_issues import highlighted_mask
from uldl_studio.qt.health_panel import MEAN_COLUMN, NO_RESULTS, HealthPanel
from uldl_studio.qt.session_bridge import SessionBridge

pytestmark = pytest.mark.timeout(120)

from synthetic import grid_table, image_colours, rect_in  # noqa: E402  (tests/qt/synthetic.py)

def make_panel(qtbot, bridge, width=400, height=760):
    panel = HealthPanel(bridge)
    qtbot.addWidget(panel)
    panel.resize(width, height)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def matrix_counts(panel) -> np.ndarray:
    m = panel.matrix.rowCount()
    return np.array([[int(panel.matrix.item(g, k).text().replace(",", "")) for k in range(m)]
                     for g in range(m)])


def rate_rows(panel) -> list[tuple[str, int, int, str, int]]:
    t = panel.rates_table
    return [(t.item(i, 0).text(), int(t.item(i, 1).text().replace(",", "")),
             int(t.item(i, 2).text().replace(",", "")), t.item(i, 3).text(),
             int(t.item(i, 4).text().replace(",", ""))) for i in range(t.rowCount())]


def click_cell(qtbot, table, row, column):
    rect = table.visualItemRect(table.item(row, column))
    assert table.viewport().rect().contains(rect), "the cell is drawn inside the table"
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def pixel(table, row, column, dx=3, dy=3) -> QColor:
    """The colour painted near the top-left corner of a cell (clear of its text)."""
    image = table.viewport().grab().toImage()
    rect = table.visualItemRect(table.item(row, column))
    return image.pixelColor(rect.topLeft() + QPoint(dx, dy))


@pytest.fixture
def synthetic(qtbot):
    table = grid_table()
    # a few rows outside the training split, so that "training samples only" matters
    table.loc[:39, "split"] = "valid"
    # predictions that agree with most labels (grid_table's are random), fewer for later classes
    classes = table.attrs["classes"]
    probs = table[[f"p_{c}" for c in classes]].to_numpy()
    labels = table["label"].to_numpy()
    agree = (np.arange(len(table)) % 10) >= labels  # class k: (10 − k) / 10 of its rows
    probs[agree] = 0.3 * probs[agree] + 0.7 * np.eye(len(classes))[labels[agree]]
    for j, c in enumerate(classes):
        table[f"p_{c}"] = probs[:, j]
    bridge = SessionBridge()
    bridge.session.set_dataset(table, {"kind": "dataset", "path": "synthetic"})
    return bridge


def test_rates_and_matrix_match_the_pure_functions(qtbot, synthetic):
    panel = make_panel(qtbot, synthetic)
    session = synthetic.session
    table = session.table
    assert panel.training_only
    train = health.training_rows(table)
    expected = health.issue_rates(table, train)
    assert np.array_equal(matrix_counts(panel), np.round(health.issue_matrix(table, train)).astype(int))
    shown = rate_rows(panel)
    assert sorted(shown) == sorted((r["class"], r["n"], int(round(r["estimated"])), f"{r['rate']:.1%}",
                                    r["highlighted"]) for _, r in expected.iterrows())
    text = panel.summary.text()
    total = expected["estimated"].sum()
    assert f"≈ {total:,.0f} label issues" in text and f"{total / expected['n'].sum():.1%}" in text
    assert "Training samples are judged in-sample" in text            # no cross-fitted predictions here
    high = expected["highlighted"].sum()
    assert f"{high:,}</b> of the likeliest wrong labels are highlighted" in text
    assert f"≈ {expected['highlighted_wrong'].sum() / high:.0%} of them are expected to be wrong" in text
    rates_in_order = [float(s[3].rstrip("%")) for s in shown]
    assert rates_in_order == sorted(rates_in_order, reverse=True), "sorted by rate, worst first"
    # the mean column is the default score, ambiguity, per class
    assert panel.score_name == "ambiguity"
    means = health.class_means(table, session.score("ambiguity"), train)
    for i in range(panel.rates_table.rowCount()):
        c = int(panel.rates_table.item(i, 0).data(Qt.ItemDataRole.UserRole))
        assert panel.rates_table.item(i, MEAN_COLUMN).text() == f"{means[c]:.3f}"
    # all rows when the box is unticked
    panel.train_only.click()
    assert not panel.training_only
    assert np.array_equal(matrix_counts(panel), np.round(health.issue_matrix(table)).astype(int))
    assert sum(r[1] for r in rate_rows(panel)) == len(table)


def test_score_combo_lists_scores_with_values_and_changes_the_mean(qtbot, synthetic):
    panel = make_panel(qtbot, synthetic)
    session = synthetic.session
    combo = panel.score_combo
    names = [combo.itemData(i) for i in range(combo.count())]
    assert names == [s.name for s in session.available_scores()]
    assert "aum" not in names and "lambda" in names  # grid_table has no training dynamics
    i = combo.findData("lambda")
    assert combo.itemData(i, Qt.ItemDataRole.ToolTipRole) == scores.get("lambda").tooltip
    combo.activated.emit(i)
    assert panel.score_name == "lambda"
    means = health.class_means(session.table, session.score("lambda"), panel.counted_rows())
    c = int(panel.rates_table.item(0, 0).data(Qt.ItemDataRole.UserRole))
    assert panel.rates_table.item(0, MEAN_COLUMN).text() == f"{means[c]:.3f}"


def test_clicking_a_cell_selects_its_samples(qtbot, synthetic):
    panel = make_panel(qtbot, synthetic)
    session = synthetic.session
    counts = panel.cell_counts
    off = counts.copy()
    np.fill_diagonal(off, -1)
    g, k = np.unravel_index(int(np.argmax(off)), off.shape)
    expected = health.issue_cell_rows(session.table, g, k, rows=health.training_rows(session.table))
    assert len(expected) == counts[g, k] > 0
    with qtbot.waitSignal(panel.cellSelected) as blocker:
        click_cell(qtbot, panel.matrix, g, k)
    assert blocker.args == [g, k, len(expected)]
    assert session.selection.tolist() == expected.tolist()
    assert session.current in expected
    mask = np.zeros(len(session), bool)
    mask[expected] = True
    assert session.current == session.most_ambiguous("label_wrong_prob", mask)
    # a diagonal cell too
    d = int(np.argmax(np.diag(counts)))
    diag = health.issue_cell_rows(session.table, d, d, rows=health.training_rows(session.table))
    assert diag.size
    click_cell(qtbot, panel.matrix, d, d)
    assert session.selection.tolist() == diag.tolist()
    # a class row of the rates table selects that class's highlighted samples
    with qtbot.waitSignal(panel.classSelected):
        click_cell(qtbot, panel.rates_table, 0, 0)
    c = int(panel.rates_table.item(0, 0).data(Qt.ItemDataRole.UserRole))
    flagged = health.highlighted_rows(session.table, c, rows=health.training_rows(session.table))
    assert flagged.size == int(panel.rates_table.item(0, 4).text())
    assert (session.score("label_wrong_prob")[flagged] >= 0.5).all()
    assert np.array_equal(flagged, np.flatnonzero(
        highlighted_mask(session.score("label_wrong_prob")) & (session.table["label"].to_numpy() == c)
        & np.isin(np.arange(len(session.table)), health.training_rows(session.table))))
    assert session.selection.tolist() == flagged.tolist()
    assert session.current in flagged


def test_a_click_on_another_cell_replaces_the_selection(qtbot, synthetic):
    panel = make_panel(qtbot, synthetic)
    session = synthetic.session
    cells = np.argwhere(panel.cell_counts > 0)
    (g, k), (g2, k2) = cells[0], cells[-1]
    click_cell(qtbot, panel.matrix, int(g), int(k))
    first = session.selection.copy()
    assert first.size == panel.cell_counts[g, k]
    click_cell(qtbot, panel.matrix, int(g2), int(k2))
    assert session.selection.size == panel.cell_counts[g2, k2]
    assert np.intersect1d(session.selection, first).size == 0     # a cell's rows are no other cell's


def test_tooltips_name_the_cell(qtbot, synthetic):
    panel = make_panel(qtbot, synthetic)
    classes = synthetic.session.classes
    counts = matrix_counts(panel)
    g, k = map(int, np.argwhere(panel.cell_counts > 1)[0])
    tip = panel.matrix.item(g, k).toolTip()
    assert tip.startswith(f"given {classes[g]}, true {classes[k]}: ≈ {counts[g, k]} sample")
    assert tip.endswith(f"click to select the {panel.cell_counts[g, k]} samples most likely {classes[k]}")
    assert panel.matrix.horizontalHeaderItem(k).toolTip() == f"likely true label {classes[k]}"
    assert panel.matrix.verticalHeaderItem(g).text() == classes[g]


def test_cell_shades_follow_the_row_share_and_the_diagonal_is_distinct(qtbot, synthetic):
    panel = make_panel(qtbot, synthetic)
    counts = panel.counts
    share = counts / counts.sum(axis=1, keepdims=True)
    off = share.copy()
    np.fill_diagonal(off, np.nan)
    hi = np.unravel_index(int(np.nanargmax(off)), off.shape)
    lo = np.unravel_index(int(np.nanargmin(off)), off.shape)
    assert share[hi] > share[lo]
    c_hi, c_lo = pixel(panel.matrix, *hi), pixel(panel.matrix, *lo)
    assert c_hi != c_lo
    assert c_hi.lightness() < c_lo.lightness(), "a larger share is drawn darker"
    assert c_hi.red() > c_hi.blue(), "off-diagonal cells are vermilion"
    g = int(np.argmax(np.diag(share)))
    c_diag = pixel(panel.matrix, g, g)
    assert c_diag.blue() > c_diag.red(), "diagonal cells are blue"
    assert panel.matrix.item(g, g).font().bold()
    # rate bars: the worst class's bar is drawn from the left edge, and ends before the right
    t = panel.rates_table
    rate = t.item(0, 3).data(Qt.ItemDataRole.UserRole + 1)
    assert 0 < rate < 0.95
    rect = t.visualItemRect(t.item(0, 3))
    bar = pixel(t, 0, 3, dx=4, dy=rect.height() // 2)
    after = pixel(t, 0, 3, dx=rect.width() - 3, dy=rect.height() // 2)
    assert bar.red() > bar.blue() + 30 and after.lightness() > 245


def test_a_relabel_through_the_journal_changes_the_counts(qtbot, run_bridge):
    panel = make_panel(qtbot, run_bridge)
    session = run_bridge.session
    table = session.table
    m = len(session.classes)
    train = health.training_rows(table)
    before = panel.counts.copy()
    assert np.allclose(before, health.issue_matrix(table, train))
    assert np.isclose(before.sum(), len(train))
    # a training row relabelled moves its whole posterior to the new given label's row
    row = int(train[0])
    old = int(table["label"].iat[row])
    new = (old + 1) % m
    with qtbot.waitSignal(run_bridge.editsChanged):
        session.relabel([row], [new])
    after = panel.counts
    assert np.isclose(after[old].sum(), before[old].sum() - 1)
    assert np.isclose(after[new].sum(), before[new].sum() + 1)
    assert np.allclose(after, health.issue_matrix(session.table, train))
    shown = {r[0]: r for r in rate_rows(panel)}
    rates = health.issue_rates(session.table, train).set_index("class")
    for name, (_, n, issues, _, high) in shown.items():
        assert (n, issues, high) == (rates.loc[name, "n"], int(round(rates.loc[name, "estimated"])),
                                     rates.loc[name, "highlighted"])
    session.undo()
    assert np.allclose(panel.counts, before)
    # the likeliest wrong label, relabelled to its likely true class, is no longer highlighted
    panel.train_only.click()
    p_wrong = session.score("label_wrong_prob")
    row = int(np.nanargmax(p_wrong))
    likely = int(np.argmax(session.table[[f"p_{c}" for c in session.classes]].to_numpy()[row]))
    assert likely != int(session.table["label"].iat[row])
    session.relabel([row], [likely])
    assert session.score("label_wrong_prob")[row] < 0.5
    assert row not in health.highlighted_rows(session.table)
    assert np.array_equal(panel.rates.sort_values("index")["highlighted"].to_numpy(),
                          health.issue_rates(session.table)["highlighted"].to_numpy())


def test_clicking_an_empty_cell_changes_nothing(qtbot, run_bridge):
    panel = make_panel(qtbot, run_bridge)
    session = run_bridge.session
    counts = matrix_counts(panel)
    g, k = map(int, np.argwhere((counts == 0) & (panel.cell_counts == 0))[0])
    assert panel.matrix.item(g, k).toolTip().endswith(": no samples")
    session.select([0, 1])
    with qtbot.assertNotEmitted(panel.cellSelected):
        click_cell(qtbot, panel.matrix, g, k)
    assert session.selection.tolist() == [0, 1]


def test_a_hidden_panel_refreshes_when_shown(qtbot, run_bridge):
    panel = HealthPanel(run_bridge)
    qtbot.addWidget(panel)
    session = run_bridge.session
    before = panel.counts.copy()
    row = int(health.training_rows(session.table)[0])
    session.relabel([row], [(int(session.table["label"].iat[row]) + 1) % len(session.classes)])
    assert np.array_equal(panel.counts, before), "not redrawn while hidden"
    panel.show()
    qtbot.waitExposed(panel)
    assert np.allclose(panel.counts, health.issue_matrix(session.table, health.training_rows(session.table)))
    assert not np.allclose(panel.counts, before)


def test_a_dataset_without_results_says_train_first(qtbot, demo_table):
    bridge = SessionBridge()
    panel = make_panel(qtbot, bridge)
    assert panel.message.isVisible() and "Open a dataset" in panel.message.text()
    bridge.session.set_dataset(demo_table, {"kind": "demo", "path": "demo"})
    assert panel.message.isVisible()
    assert panel.message.text() == NO_RESULTS and "train a model first" in NO_RESULTS
    assert not panel.matrix.isVisible() and panel.counts is None
    assert panel.select_cell(0, 1).size == 0
    assert bridge.session.selection.size == 0


def test_a_trained_run_is_drawn_whole(qtbot, run_bridge):
    panel = make_panel(qtbot, run_bridge, width=400, height=640)
    QApplication.processEvents()
    # everything fits the dock's width: no column of the matrix is cut off
    m = panel.matrix
    assert m.horizontalHeader().length() + m.verticalHeader().width() <= m.viewport().width() + m.verticalHeader().width()
    last = m.visualItemRect(m.item(0, m.columnCount() - 1))
    assert last.right() <= m.viewport().width()
    assert m.height() >= m.horizontalHeader().height() + m.verticalHeader().length()
    assert "label issues" in panel.summary.text()
    image = panel.grab().toImage()
    assert image.width() == 400
    drawn = {part: len(image_colours(image, rect_in(part, panel), step=2))
             for part in (panel.summary, panel.rates_table, panel.matrix)}
    assert min(drawn.values()) >= 8, drawn                # text and tinted cells, not a blank area
    cells = rect_in(m.viewport(), panel)
    panel.train_only.click()  # every split: valid / test rows judged by their prediction
    assert panel.rates["estimated"].sum() > 0
    assert panel.grab().toImage().copy(cells) != image.copy(cells)   # the matrix was redrawn


def test_cross_fitted_training_samples_are_not_called_in_sample(qtbot):
    table = grid_table()
    for c in table.attrs["classes"]:
        table[f"oof_{c}"] = table[f"p_{c}"]
    bridge = SessionBridge()
    bridge.session.set_dataset(table, {"kind": "dataset", "path": "synthetic"})
    panel = make_panel(qtbot, bridge)
    assert "label issues" in panel.summary.text()
    assert "in-sample" not in panel.summary.text()
