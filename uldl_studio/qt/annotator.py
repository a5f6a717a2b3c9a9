"""Several annotators in the app: the name each person works under, their journal, blind
mode, progress, and the people's votes in the inspector, the map and the queue.

- The name is asked once: when a run opens and no name is kept yet, a small prompt in the
  status bar asks for it without taking the keyboard from the window ("Later" keeps the
  default annotator, whose journal is ``RUN/edits.jsonl``). The name is kept in the settings
  and shown in the status bar as "Annotator: name"; a click there (or View → Change
  annotator…) opens a small dialog to change it.
- View → Annotators and agreement… lists every source's votes, Dawid–Skene accuracy, vote
  weight and weakest class, who agrees with whom, and Krippendorff's α.
- The open run's journal follows the name (``core.labels.annotations.annotator_journal``):
  each person's relabels and confirmations are their votes, in their own journal.
- Blind mode (View → Blind mode, kept in the settings) hides the given label, the prediction,
  d, the scores and the other annotators' votes in the inspector until this annotator has
  voted on the sample, and keeps the map off the given and predicted label colours.
- The status bar counts the votes: "you: 37 votes · all: 120 on 80 samples · α 0.41" (α:
  Krippendorff's agreement, once two samples have two votes); its tooltip has each
  annotator's count and how many votes the model is worth in the combined label.
- The session's table gains the vote columns (``votes_<class>``, ``n_voters``,
  ``vote_agreement``, ``next_vote_gain``) when a run opens, after each epoch and on View →
  Reload votes, so the map, the grid and the queue can use ``vote_entropy``,
  ``model_vs_votes`` and ``needs_another_vote``. The inspector's vote bars follow every edit.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, QRegularExpression, Qt, Signal, Slot
from PySide6.QtGui import QAction, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QTableWidget,
    QTableWidgetItem, QToolButton, QVBoxLayout, QWidget,
)

from uldl_studio.core.review.frontend import annotations as A

#: what the name fields accept (``core.labels.annotations.validate_annotator_name`` decides)
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
#: colour modes that show the given or the predicted label (hidden in blind mode)
LABEL_COLOUR_MODES = ("given", "predicted")
#: what the map shows instead in blind mode, the first one it has
BLIND_COLOUR_MODES = ("needs_another_vote", "vote_entropy", "ambiguity")


def journal_annotator(session) -> str | None:
    """The annotator whose journal the session edits (None: no journal, or a file that is no
    annotator's journal of the open run)."""
    journal, run = getattr(session, "journal", None), getattr(session, "run", None)
    if journal is None or run is None:
        return None
    return A.journal_annotator(run.root, journal.path)


def use_annotator(session, name: str) -> bool:
    """Point the session's edits at annotator ``name``'s journal (in the open run and in every
    run opened later); True when that changed. AnnotatorError for a bad name."""
    before = session.annotator
    session.set_annotator(name)
    return before != name


class AnnotatorDialog(QDialog):
    """Asks for the annotator's name (letters, digits, '.', '_', '-')."""

    def __init__(self, current: str | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Annotator")
        layout = QVBoxLayout(self)
        text = QLabel("Your name as an annotator. Your relabels and confirmations are your votes, "
                      "kept in your own journal in the run; several people can vote on one run.")
        text.setWordWrap(True)
        layout.addWidget(text)
        self.edit = QLineEdit(current or "")
        self.edit.setPlaceholderText("e.g. alice")
        self.edit.setValidator(QRegularExpressionValidator(QRegularExpression(NAME_PATTERN)))
        layout.addWidget(self.edit)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #b02a37;")
        self.error.setWordWrap(True)
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Later")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def name(self) -> str:
        return self.edit.text().strip()

    def _accept(self) -> None:
        try:
            A.validate_annotator_name(self.name())
        except A.AnnotatorError as exc:
            self.error.setText(str(exc))
            return
        self.accept()


def _number(value: float, digits: int = 2) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"


class AgreementDialog(QDialog):
    """Who agrees with whom: every source's votes, Dawid–Skene accuracy, vote weight and weakest
    class, the share of agreeing votes with every other source, and Krippendorff's α."""

    def __init__(self, consensus: "A.Consensus", you: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Annotators and agreement")
        rel = consensus.reliability
        layout = QVBoxLayout(self)
        per_class = ", ".join(f"{c} {_number(a)}" for c, a in zip(rel.classes, rel.alpha_per_class))
        self.summary = QLabel(
            f"Krippendorff's α (agreement beyond chance: 1 unanimous, 0 chance): <b>{_number(rel.alpha)}</b>"
            f"<br>per class: {per_class}<br>The model's prediction counts as {_number(rel.prior_strength, 1)} "
            f"votes in the combined label (temperature {_number(rel.temperature)}).")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        names = [f"{n} (you)" if n == you else n for n in rel.sources]
        fixed = ["votes", "accuracy", "weight", "weakest class"]
        table = self.table = QTableWidget(len(names), len(fixed) + len(names))
        table.setHorizontalHeaderLabels(fixed + [f"agrees with {n}" for n in names])
        table.setVerticalHeaderLabels(names)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for s_, name in enumerate(rel.sources):
            weakest = int(np.argmin(rel.class_accuracy[s_])) if rel.class_accuracy.size else 0
            weight = rel.vote_weight[s_] if s_ < len(rel.vote_weight) else float("nan")
            cells = [f"{int(rel.votes_cast[s_]):,}", _number(rel.accuracy[s_]), _number(weight),
                     f"{rel.classes[weakest]} {_number(rel.class_accuracy[s_, weakest])}" if rel.class_accuracy.size
                     else "–"]
            for t, other in enumerate(rel.sources):
                share, count = rel.pairwise_agreement[s_, t], int(rel.pairwise_count[s_, t])
                trivial = t == s_ and name != A.CROWD  # the crowd with itself: its pairs of votes
                cells.append("–" if trivial or not count or not np.isfinite(share) else f"{share:.0%} of {count:,}")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(s_, c, item)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.setToolTip("accuracy: Dawid–Skene's estimate of how often the source votes the true class; "
                         "weight: what one of its votes counts in the combined label (an average person: 1); "
                         "agrees with: the share of agreeing votes on the samples both voted on")
        layout.addWidget(table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(760, 320)


class NamePrompt(QWidget):
    """The status bar's one-time question: "Who is annotating? [name] OK · Later"."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        label = QLabel("Who is annotating?")
        label.setStyleSheet("color: #084298; font-weight: bold;")
        layout.addWidget(label)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("your name")
        self.edit.setFixedWidth(120)
        self.edit.setValidator(QRegularExpressionValidator(QRegularExpression(NAME_PATTERN)))
        self.edit.setToolTip("your relabels and confirmations become your votes, in your own journal in the run")
        layout.addWidget(self.edit)
        self.ok_button = QPushButton("OK")
        self.later_button = QPushButton("Later")
        self.later_button.setToolTip("keep working as the default annotator (RUN/edits.jsonl)")
        layout.addWidget(self.ok_button)
        layout.addWidget(self.later_button)


class AnnotatorLabel(QToolButton):
    """The status bar's "Annotator: name" (click to change)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAutoRaise(True)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("the name your votes are journalled under: click to change it")


class AnnotatorController(QObject):
    """The annotator's name, journal, blind mode and progress for one main window.

    ``ask_name(current) -> name | None`` asks for a name (tests replace it; the default opens
    :class:`AnnotatorDialog` without blocking and applies its answer when it closes).
    """

    statusMessage = Signal(str)
    annotatorChanged = Signal(str)
    votesChanged = Signal()

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.bridge = window.bridge
        self.session = window.bridge.session
        self.settings = window.settings
        self.inspector = window.inspector
        self.map_view = getattr(window, "map_view", None)
        self.votes: A.Votes | None = None
        self.prior_strength = float("nan")
        self._syncing = False
        self._dialog: AnnotatorDialog | None = None
        self.ask_name: Callable[[str | None], str | None] | None = None  # None: the non-blocking dialog

        self.name_button = AnnotatorLabel()
        self.name_button.setObjectName("annotatorButton")
        self.name_button.clicked.connect(self.change_name)
        self.prompt = NamePrompt()
        self.prompt.setObjectName("annotatorPrompt")
        self.prompt.hide()
        self.prompt.ok_button.clicked.connect(self._prompt_answered)
        self.prompt.edit.returnPressed.connect(self._prompt_answered)
        self.prompt.later_button.clicked.connect(lambda: self._show_prompt(False))
        self.progress_label = QLabel()
        self.progress_label.setObjectName("annotatorProgress")
        self.change_action = QAction("Change &annotator…", window)
        self.change_action.setStatusTip("the name your relabels are journalled under, as your votes")
        self.change_action.triggered.connect(self.change_name)
        self.blind_action = QAction("&Blind mode", window, checkable=True)
        self.blind_action.setStatusTip("hide the given label, the prediction, d and the other votes of a sample "
                                       "until you have voted on it")
        self.blind_action.setChecked(self.settings.annotator_settings()["blind"])
        self.blind_action.toggled.connect(self.set_blind)
        self.agreement_action = QAction("Annotators and a&greement…", window)
        self.agreement_action.setStatusTip("each annotator's reliability and who agrees with whom")
        self.agreement_action.triggered.connect(self.show_agreement)
        self.reload_action = QAction("Reload &votes", window)
        self.reload_action.setStatusTip("read every annotator's journal again (others voting on a shared run)")
        self.reload_action.triggered.connect(self.reload_votes)

        self.inspector.set_vote_source(self.sample_votes)
        b = self.bridge
        b.runChanged.connect(self._on_run_changed)
        b.tableReset.connect(self.sync)
        b.resultsChanged.connect(self.sync)
        b.editsChanged.connect(self._on_edits)
        if self.map_view is not None and hasattr(self.map_view, "colorModeChanged"):
            self.map_view.colorModeChanged.connect(self._on_colour_mode)
        use_annotator(self.session, self.name)  # the next run opened edits this annotator's journal
        self._show_name()
        self._apply_blind()

    # -- installing -------------------------------------------------------------------------
    def install(self, status_bar, view_menu) -> None:
        """The status bar's name and progress, and the View menu's actions."""
        status_bar.addPermanentWidget(self.prompt)  # a message never hides it
        status_bar.addPermanentWidget(self.progress_label)
        status_bar.addPermanentWidget(self.name_button)
        view_menu.addSeparator()
        view_menu.addAction(self.blind_action)
        view_menu.addAction(self.change_action)
        view_menu.addAction(self.agreement_action)
        view_menu.addAction(self.reload_action)

    # -- the name ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The annotator's name (the default annotator until a name is given)."""
        return self.settings.annotator_settings()["name"] or A.DEFAULT_ANNOTATOR

    def set_name(self, name: str) -> None:
        """Work as ``name`` from now on: kept in the settings, the run's journal follows."""
        name = A.validate_annotator_name(name.strip())
        self.settings.set_annotator_settings(name=name, asked=True)
        self._show_name()
        self.sync()
        self.annotatorChanged.emit(name)
        self.statusMessage.emit(f"Annotating as {name}: your votes go to "
                                f"{A.annotator_journal_path('RUN', name).as_posix()}")

    def _show_name(self) -> None:
        given = self.settings.annotator_settings()["name"]
        self.name_button.setText(f"Annotator: {given}" if given else f"Annotator: {A.DEFAULT_ANNOTATOR} (click to name)")

    @Slot()
    def change_name(self) -> None:
        """Ask for a name and use it (the dialog does not block; its answer applies when it closes)."""
        current = self.settings.annotator_settings()["name"]
        if self.ask_name is not None:
            answer = self.ask_name(current)
            if answer:
                self.set_name(answer)
            return
        if self._dialog is not None:
            self._dialog.raise_()
            return
        dialog = self._dialog = AnnotatorDialog(current, self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def done(result: int) -> None:
            self._dialog = None
            if result == QDialog.DialogCode.Accepted:
                self.set_name(dialog.name())

        dialog.finished.connect(done)
        dialog.show()

    def _ask_once(self) -> None:
        """A run that can be edited is open and no name was ever given: ask, once (the status
        bar's prompt, which leaves the keyboard with the window; ``ask_name`` where set)."""
        values = self.settings.annotator_settings()
        if values["name"] is None and not values["asked"] and self.session.can_edit:
            self.settings.set_annotator_settings(asked=True)
            if self.ask_name is not None:
                self.change_name()
            else:
                self._show_prompt(True)

    def _show_prompt(self, visible: bool) -> None:
        """The one-time question in the status bar; while it asks, the name button (the same
        question, later) steps aside, leaving room for the messages that confirm each edit."""
        self.prompt.setVisible(visible)
        self.name_button.setVisible(not visible)

    @Slot()
    def _prompt_answered(self) -> None:
        text = self.prompt.edit.text().strip()
        try:
            A.validate_annotator_name(text)
        except A.AnnotatorError as exc:
            self.statusMessage.emit(str(exc))
            return
        self._show_prompt(False)
        self.set_name(text)

    # -- the journal and the votes -----------------------------------------------------------
    @Slot()
    def _on_run_changed(self) -> None:
        self.votes = None
        self.sync()
        self._ask_once()

    @Slot()
    def sync(self) -> None:
        """The open run's journal is this annotator's; the votes and the table's vote columns
        are read again when they are missing."""
        if self._syncing:
            return
        self._syncing = True
        try:
            session = self.session
            use_annotator(session, self.name)
            if session.run is None or session.dataset_table is None:
                self.votes = None
            elif self.votes is None or len(self.votes.sample_ids) != session.dataset_size or \
                    not self._has_vote_columns():
                self._read_votes()
        finally:
            self._syncing = False
        self._apply_blind()
        self._show_progress()

    def _has_vote_columns(self) -> bool:
        base = self.session.base_table
        return base is not None and "next_vote_gain" in base and "n_voters" in base

    def _read_votes(self) -> None:
        """Every journal and the dataset's crowd votes; the vote columns into the session's table."""
        session = self.session
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", A.VotesWarning)
            self.votes = A.read_votes(session.run.root, session.base_table)
        for warning in caught:
            self.statusMessage.emit(str(warning.message))
        try:
            table, self.prior_strength = A.review_table(session.base_table, self.votes)
        except Exception as exc:  # noqa: BLE001 - the votes must never stop the app
            self.statusMessage.emit(f"The votes could not be combined: {exc}")
            return
        session.update_results(table)
        self.votesChanged.emit()

    @Slot()
    def reload_votes(self) -> None:
        """Read every journal again (other people voting on the same run folder)."""
        if self.session.run is None:
            return
        self._syncing = True
        try:
            self._read_votes()
        finally:
            self._syncing = False
        self._show_progress()
        self.inspector.refresh()

    def current_votes(self) -> A.Votes | None:
        """The votes with this annotator's as their journal has them now (every edit included)."""
        if self.votes is None:
            return None
        journal = self.session.journal
        if journal is None or journal_annotator(self.session) != self.name:
            return self.votes
        return A.with_annotator(self.votes, self.name, journal.labels(), journal.unsure())

    @Slot(object)
    def _on_edits(self, rows) -> None:
        voted = self.votes is not None and self.session.journal is not None
        if voted:
            self.votes = self.current_votes()
        self._show_progress()
        if voted or self.blind_action.isChecked():
            # the inspector drew the edit before these votes had it: its Votes line, the vote
            # bars and (blind) what the vote reveals follow now
            self.inspector.refresh()

    def sample_votes(self, row: int) -> A.SampleVotes | None:
        """The votes on table row ``row`` (the inspector's source)."""
        if self.votes is None or not 0 <= row < len(self.votes.sample_ids):
            return None
        return A.sample_votes(self.votes, row)

    def has_voted(self, row: int) -> bool:
        """This annotator has voted on row ``row`` (their journal has a label for it)."""
        journal = self.session.journal
        if journal is None or not self.session.is_dataset_row(row):
            return False
        return str(self.session.table["sample_id"].iat[row]) in journal.labels()

    @Slot()
    def show_agreement(self) -> AgreementDialog | None:
        """Each source's reliability and who agrees with whom (a dialog; None without votes)."""
        votes, table = self.current_votes(), self.session.base_table
        if votes is None or table is None or votes.counts().sum() == 0:
            self.statusMessage.emit("Nobody has voted on this run yet")
            return None
        try:
            consensus = A.analyse_votes(table, votes, estimate=False)
        except Exception as exc:  # noqa: BLE001 - the votes must never stop the app
            self.statusMessage.emit(f"The votes could not be combined: {exc}")
            return None
        dialog = AgreementDialog(consensus, self.name, self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    # -- progress -----------------------------------------------------------------------------
    def progress_text(self) -> str:
        if self.votes is None:
            return ""
        progress = A.annotator_progress(self.votes, self.name)
        parts = [f"you: {progress['mine']:,} vote{'s' if progress['mine'] != 1 else ''}",
                 f"all: {progress['people']:,} on {progress['voted']:,} samples"]
        if np.isfinite(progress["alpha"]):
            parts.append(f"α {progress['alpha']:.2f}")
        return " · ".join(parts) + "  "

    def progress_tooltip(self) -> str:
        if self.votes is None:
            return ""
        progress = A.annotator_progress(self.votes, self.name)
        lines = [f"{self.name}: {progress['mine']:,} votes",
                 f"everybody (annotators and the dataset's crowd): {progress['people']:,} votes on "
                 f"{progress['voted']:,} samples, {progress['shared']:,} with two votes or more"]
        for name, cast in self.votes.votes_cast().items():
            if name != A.DATASET:
                lines.append(f"  {name}: {cast:,}")
        lines.append("α: Krippendorff's agreement (1 unanimous, 0 chance)" if np.isfinite(progress["alpha"])
                     else "agreement: needs two samples with two votes")
        if np.isfinite(self.prior_strength):
            lines.append(f"the model's prediction counts as {self.prior_strength:.1f} votes in the combined label")
        return "\n".join(lines)

    def _show_progress(self) -> None:
        self.progress_label.setText(self.progress_text())
        self.progress_label.setToolTip(self.progress_tooltip())

    # -- blind mode ---------------------------------------------------------------------------
    @Slot(bool)
    def set_blind(self, on: bool) -> None:
        """Blind mode on or off (kept in the settings)."""
        if self.blind_action.isChecked() != bool(on):
            self.blind_action.setChecked(bool(on))  # toggled → back here
            return
        self.settings.set_annotator_settings(blind=bool(on))
        self._apply_blind()
        self.statusMessage.emit("Blind mode: labels, prediction and other votes appear once you have voted"
                                if on else "Blind mode off")

    @property
    def blind(self) -> bool:
        return self.blind_action.isChecked()

    def _apply_blind(self) -> None:
        self.inspector.set_blind(self.blind, self.name, self.has_voted)
        if self.blind:
            self._on_colour_mode(getattr(self.map_view, "color_mode", None))

    @Slot(str)
    def _on_colour_mode(self, mode) -> None:
        """In blind mode the map does not colour by the given or the predicted label."""
        view = self.map_view
        if not self.blind or view is None or mode not in LABEL_COLOUR_MODES:
            return
        available = set(view.available_color_modes()) if hasattr(view, "available_color_modes") else set()
        for fallback in BLIND_COLOUR_MODES:
            if fallback in available:
                view.set_color_mode(fallback)
                self.statusMessage.emit("Blind mode: the map does not colour by the given or predicted label")
                return


def install(window) -> AnnotatorController:
    """The annotator's controller for ``window`` (a MainWindow), with its status bar widgets and
    View menu actions."""
    controller = AnnotatorController(window)
    view_menu = next((a.menu() for a in window.menuBar().actions() if a.menu() is not None
                      and a.text().replace("&", "") == "View"), None)
    if view_menu is None:
        view_menu = window.menuBar().addMenu("&View")
    controller.install(window.statusBar(), view_menu)
    controller.statusMessage.connect(lambda text: window.statusBar().showMessage(text, 8000))
    return controller
