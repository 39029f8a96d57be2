"""The settings dialog: models (with what their files say), memory file, context size, threads,
memory-pressure lines and idle reflection. It returns new Settings; the main window saves them
and reloads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.panels import StatusLabel, error_message, submit
from desktop.session import ModelInfo, model_info
from desktop.settings import MAX_CONTEXT, MAX_IDLE_MINUTES, MIN_CONTEXT, Settings
from desktop.worker import EngineWorker
from engine.errors import InvalidInput
from engine.llm.factory import CHAT_MODEL_KEYS
from engine.llm.llama import available_cpus
from engine.store.db import default_db_path
from engine.store.migrations import EMBEDDING_DIM
from models.fetch import is_available

INFO_DELAY_MS = 250  # wait for the user to stop typing a path before reading its header
GGUF_FILTER = "GGUF models (*.gguf);;All files (*)"


def describe(info: ModelInfo) -> str:
    context = f"{info.context_length:,}" if info.context_length else "?"
    width = str(info.embedding_length) if info.embedding_length else "?"
    return (
        f"{info.name}\n{info.architecture} · {info.size_bytes / 1e6:,.0f} MB · "
        f"context {context} tokens · embedding length {width}"
    )


def model_warning(kind: str, info: ModelInfo) -> str | None:
    """Why a readable model file still will not do as the `kind` ("chat" or "embed") model."""
    if kind == "chat" and not info.has_chat_template:
        return "it has no chat template, so it is not an instruct/chat model"
    if kind == "embed" and info.embedding_length != EMBEDDING_DIM:
        return (
            f"it makes {info.embedding_length or '?'}-dimensional vectors; a Memex file needs "
            f"{EMBEDDING_DIM} (all-MiniLM-L6-v2)"
        )
    return None


class ModelField(QWidget):
    """An editable choice of model (the shipped names or a GGUF path), Browse…, and a label
    with what the file's header says, read on the engine thread."""

    def __init__(self, worker: EngineWorker, kind: str, choices: list[str], value: str) -> None:
        super().__init__()
        self._worker = worker
        self._kind = kind
        self._seq = 0  # answers about an earlier choice are dropped
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.combo = QComboBox()
        self.combo.setObjectName(f"settings-{kind}-model")
        self.combo.setEditable(True)
        self.combo.addItems(choices)
        self.combo.setCurrentText(value)
        row.addWidget(self.combo, 1)
        browse = QPushButton("Browse…")
        browse.setObjectName(f"settings-{kind}-browse")
        browse.clicked.connect(self._browse)
        row.addWidget(browse)
        layout.addLayout(row)
        self.info = StatusLabel()
        self.info.setObjectName(f"settings-{kind}-info")
        # room for the facts (two lines) or an error (three) before they arrive: the dialog is
        # on screen by then and would squeeze them
        self.info.setMinimumHeight(3 * self.info.fontMetrics().lineSpacing())
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.info)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(INFO_DELAY_MS)
        self._timer.timeout.connect(self.fetch_info)
        self.combo.currentTextChanged.connect(lambda _: self._timer.start())
        self.fetch_info()

    def value(self) -> str:
        return self.combo.currentText().strip()

    def fetch_info(self) -> None:
        """Read the chosen file's header (on the engine thread) into the info label."""
        self._timer.stop()
        self._seq += 1
        seq, model = self._seq, self.value()
        if not model:
            self.info.error("Choose a model.")
            return
        self.info.busy("Reading the model file…")
        submit(
            self,
            self._worker,
            lambda _session: model_info(model),
            lambda info: self._show(seq, info),
            lambda exc: self._failed(seq, exc),
        )

    def _show(self, seq: int, info: ModelInfo) -> None:
        if seq != self._seq:
            return
        warning = model_warning(self._kind, info)
        if warning:
            self.info.warning(f"{describe(info)}\nWarning: {warning}.")
        else:
            self.info.info(describe(info))
        self.info.setToolTip(str(info.path))

    def _failed(self, seq: int, exc: BaseException) -> None:
        if seq == self._seq:
            self.info.error(error_message(exc))
            self.info.setToolTip("")

    def _browse(self) -> None:
        current = Path(self.value()).expanduser()
        start = str(current.parent) if current.suffix.lower() == ".gguf" else ""
        title = "Chat model" if self._kind == "chat" else "Embedding model"
        path, _ = QFileDialog.getOpenFileName(self, title, start, GGUF_FILTER)
        if path:
            self.combo.setCurrentText(path)
            self.fetch_info()


class SettingsDialog(QDialog):
    """Edits a copy of the settings; OK checks them and keeps the dialog open on a bad value."""

    def __init__(
        self, worker: EngineWorker, settings: Settings, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(640)  # room for a model's facts and a path on one line each
        self._settings = settings
        self._result = settings
        layout = QVBoxLayout(self)
        form = QFormLayout()
        layout.addLayout(form)

        shipped = [key for key in CHAT_MODEL_KEYS if is_available(key)]  # a built app: its own
        self.chat = ModelField(worker, "chat", shipped, settings.chat_model)
        self.chat.combo.setToolTip(
            '"chat": Qwen2.5-Coder-0.5B (shipped), "small": SmolLM2-135M, or a GGUF file'
        )
        form.addRow("Chat model", self.chat)
        self.embed = ModelField(worker, "embed", ["embed"], settings.embed_model)
        self.embed.combo.setToolTip('"embed": all-MiniLM-L6-v2 (shipped), or a GGUF file')
        form.addRow("Embedding model", self.embed)
        form.addRow("Memory file", self._db_row(settings.db_path))

        self.n_ctx = self._spin("settings-n-ctx", MIN_CONTEXT, MAX_CONTEXT, settings.n_ctx)
        self.n_ctx.setSingleStep(1024)
        self.n_ctx.setSuffix(" tokens")
        form.addRow("Context size", self.n_ctx)
        cores = available_cpus()  # what the models may use (desktop.session caps at it)
        self.threads = self._spin("settings-threads", 0, cores, min(settings.n_threads, cores))
        self.threads.setSpecialValueText("all cores")
        form.addRow("Threads", self.threads)
        self.warn_at = self._percent("settings-warn-at", settings.warn_at)
        self.warn_at.setToolTip("Warn the model that memory is getting full above this share")
        form.addRow("Memory warning at", self.warn_at)
        self.flush_at = self._percent("settings-flush-at", settings.flush_at)
        self.flush_at.setToolTip("Page old messages out of the prompt above this share")
        form.addRow("Page out at", self.flush_at)
        self.target_at = self._percent("settings-target-at", settings.target_at)
        self.target_at.setToolTip("A page-out brings the prompt down to this share")
        form.addRow("Page out down to", self.target_at)
        self.idle = self._spin("settings-idle", 0, MAX_IDLE_MINUTES, settings.idle_minutes)
        self.idle.setSpecialValueText("off")
        self.idle.setSuffix(" min")
        self.idle.setToolTip("Let the agent reflect on its memory after this many idle minutes")
        form.addRow("Idle reflection after", self.idle)

        self.error = StatusLabel()
        self.error.setObjectName("settings-error")
        self.error.hide()
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.setObjectName("settings-buttons")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _db_row(self, value: str) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        self.db_path = QLineEdit(value)
        self.db_path.setObjectName("settings-db-path")
        self.db_path.setPlaceholderText(f"default: {default_db_path()}")
        layout.addWidget(self.db_path, 1)
        browse = QPushButton("Browse…")
        browse.setObjectName("settings-db-browse")
        browse.clicked.connect(self._browse_db)
        layout.addWidget(browse)
        return row

    def _spin(self, name: str, low: int, high: int, value: int) -> QSpinBox:
        spin = QSpinBox()
        spin.setObjectName(name)
        spin.setRange(low, high)
        spin.setValue(value)
        return spin

    def _percent(self, name: str, share: float) -> QSpinBox:
        spin = self._spin(name, 1, 100, round(share * 100))
        spin.setSuffix(" %")
        return spin

    def _browse_db(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Memory file",
            self.db_path.text() or str(default_db_path()),
            "Memex memory (*.db);;All files (*)",
            options=QFileDialog.Option.DontConfirmOverwrite,  # choosing an existing file opens it
        )
        if path:
            self.db_path.setText(path)

    # -- result ------------------------------------------------------------------------------
    def edited_settings(self) -> Settings:
        """The settings as the fields show them, unchecked."""
        return dataclasses.replace(
            self._settings,
            chat_model=self.chat.value(),
            embed_model=self.embed.value(),
            db_path=_absolute(self.db_path.text().strip()),
            n_ctx=self.n_ctx.value(),
            n_threads=self.threads.value(),
            warn_at=self.warn_at.value() / 100,
            flush_at=self.flush_at.value() / 100,
            target_at=self.target_at.value() / 100,
            idle_minutes=self.idle.value(),
        )

    def accept(self) -> None:
        try:
            self._result = self.edited_settings().checked()
        except InvalidInput as exc:
            self.error.error(str(exc))  # stay open: the user fixes the value
            return
        super().accept()

    def result_settings(self) -> Settings:
        """The checked new settings after OK; the settings given before that (or after Cancel)."""
        return self._result


def _absolute(path: str) -> str:
    """A typed path as the file it names now: `~` expanded, a relative one made absolute (the
    app may start from another folder next time). Empty stays empty: the default file."""
    return str(Path(path).expanduser().absolute()) if path else ""
