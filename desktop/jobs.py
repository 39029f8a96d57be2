"""The status bar's job area: a bar for how far a long job is (loading the models, importing an
agent file, indexing memory for a new embedding model) and, for a job that can be stopped, a
Cancel button beside it. The memory review is stopped from the chat (Stop), where it shows."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget


class JobBar(QWidget):
    """One long job at a time, by name: start() shows it, progress() moves it, end() hides it.
    A job started while another shows takes the bar over (the other waits on the engine
    thread meanwhile, and takes it back with start() when it goes on)."""

    def __init__(self) -> None:
        super().__init__()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(220)
        self.bar.setRange(0, 100)
        self.bar.setAccessibleName("Progress of the running job")
        self.cancel = QPushButton("Cancel")
        self.cancel.setAccessibleName("Cancel the running job")
        self.cancel.clicked.connect(self._cancelled)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel)
        self._on_cancel: Callable[[], None] | None = None
        self.name: str | None = None  # the job shown
        self.end()

    def start(self, name: str, on_cancel: Callable[[], None] | None = None) -> None:
        """Job `name` begins at 0%; with `on_cancel`, Cancel shows and calls it (once)."""
        self.name = name
        self._on_cancel = on_cancel
        self.bar.setValue(0)
        self.cancel.setVisible(on_cancel is not None)
        self.cancel.setEnabled(True)
        self.setVisible(True)

    def progress(self, percent: int) -> None:
        self.bar.setValue(max(0, min(100, percent)))

    def end(self, name: str | None = None) -> None:
        """Hides job `name` (any job: None); another job that took the bar over stays."""
        if name is not None and name != self.name:
            return
        self.name = None
        self._on_cancel = None
        self.setVisible(False)

    def _cancelled(self) -> None:
        if self._on_cancel is not None:
            self.cancel.setEnabled(False)  # asked once: the job stops at its next batch
            self._on_cancel()
