"""The settings dialog: models (with what their files say, or for a chat model on a server what
the server says), memory file, context size, threads, memory-pressure lines and idle reflection.
It returns new Settings; the main window saves them and reloads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.panels import StatusLabel, error_message, submit
from desktop.session import API_KEY_ENV, ModelInfo, ServerInfo, model_info, server_info
from desktop.settings import MAX_CONTEXT, MAX_IDLE_MINUTES, MIN_CONTEXT, Settings
from desktop.worker import EngineWorker
from engine.errors import InvalidInput
from engine.llm.factory import CHAT_MODEL_KEYS, is_remote_model
from engine.llm.llama import available_cpus
from engine.store.db import default_db_path
from engine.store.migrations import EMBEDDING_DIM
from engine.store.profiles import profile_for, stored_width
from models.fetch import is_available

INFO_DELAY_MS = 250  # wait for the user to stop typing a path before reading its header
GGUF_FILTER = "GGUF models (*.gguf);;All files (*)"
TOKENIZER_FILTER = "Tokenizer (tokenizer.json);;JSON files (*.json);;All files (*)"
TEMPLATE_FILTER = (
    "Chat template sources (*.gguf tokenizer_config.json *.jinja);;GGUF models (*.gguf);;"
    "JSON files (*.json);;Jinja templates (*.jinja);;All files (*)"
)
SERVER_EXAMPLE = "http://127.0.0.1:8080/v1"


# What a larger context costs, beside its setting (issue 16: it gave no hint)
# (the default 1.5B model: 28 layers x 2 KV heads x 128 x K and V x 2 bytes = 28 KiB a token,
# in two contexts (engine.llm.llama side_client); it reads about 100 prompt tokens a second on
# 2 cores with llama.cpp's default batch)
CONTEXT_COST = (
    "More context keeps more of the conversation in view, at a cost: with the default model, "
    "each 1,024 tokens take about 56 MB more memory, and a reply that must read a full window "
    "of 4,096 tokens first spends about 40 s reading it on 2 cores (twice that for 8,192; a few "
    "seconds when little has changed since the last reply)."
)


def describe(info: ModelInfo) -> str:
    context = f"{info.context_length:,}" if info.context_length else "?"
    width = str(info.embedding_length) if info.embedding_length else "?"
    kept = stored_width(profile_for(info.name, info.architecture), info.embedding_length or 0)
    if kept is not None and kept != info.embedding_length:
        width += f" (its first {kept} kept)"  # a Matryoshka embedder: engine.store.profiles
    return (
        f"{info.name}\n{info.architecture} · {info.size_bytes / 1e6:,.0f} MB · "
        f"context {context} tokens · embedding length {width}"
    )


def describe_server(info: ServerInfo, n_ctx: int) -> tuple[str, str | None]:
    """What a server said, for the info label, and a warning when the app's context size
    `n_ctx` will not do."""
    server = info.server or "an OpenAI-compatible server"
    if info.context_length is None:
        context = (
            "the server does not report its context window: set Context size to the one it "
            "was started with (--n_ctx, num_ctx)"
        )
    else:
        context = f"context {info.context_length:,} tokens"
    text = (
        f"{info.model} on {server} at {info.url}\n{context}\n"
        f"tokens counted by {info.counted_by}; chat template from {info.template_source}"
    )
    warning = None
    if info.context_length is not None and n_ctx > info.context_length:
        warning = (
            f"Context size ({n_ctx:,} tokens) is larger than the server's context window: set it "
            f"to {info.context_length:,} or less"
        )
    return text, warning


def model_warning(kind: str, info: ModelInfo) -> str | None:
    """Why a readable model file still will not do as the `kind` ("chat" or "embed") model."""
    if kind == "chat" and not info.has_chat_template:
        return "it has no chat template, so it is not an instruct/chat model"
    if (
        kind == "embed"
        and stored_width(profile_for(info.name, info.architecture), info.embedding_length or 0)
        is None
    ):
        return (
            f"it makes {info.embedding_length or '?'}-dimensional vectors; a Memex file needs "
            f"{EMBEDDING_DIM}, or a model whose first {EMBEDDING_DIM} are an embedding too"
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
        self.problem: str | None = None  # why the chosen model will not do, once checked
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
        self._add_options(layout)
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

    def _add_options(self, layout: QVBoxLayout) -> None:
        """Widgets between the choice and the info label (none here)."""

    def value(self) -> str:
        return self.combo.currentText().strip()

    def fetch_info(self) -> None:
        """Read the chosen file's header (on the engine thread) into the info label."""
        self._timer.stop()
        self._seq += 1
        seq, model = self._seq, self.value()
        self.problem = None
        if not model:
            self._bad("Choose a model.")
            return
        if self._kind == "embed" and is_remote_model(model):
            self._bad('The embedding model runs on this computer: choose "embed" or a GGUF file.')
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
            self.problem = warning
        else:
            self.info.info(describe(info))
        self.info.setToolTip(str(info.path))

    def _failed(self, seq: int, exc: BaseException) -> None:
        if seq == self._seq:
            self._bad(error_message(exc))
            self.info.setToolTip("")

    def _bad(self, why: str) -> None:
        self.info.error(why)
        self.problem = why

    def _browse(self) -> None:
        current = Path(self.value()).expanduser()
        start = str(current.parent) if current.suffix.lower() == ".gguf" else ""
        title = "Chat model" if self._kind == "chat" else "Embedding model"
        path, _ = QFileDialog.getOpenFileName(self, title, start, GGUF_FILTER)
        if path:
            self.combo.setCurrentText(path)
            self.fetch_info()


class ChatModelField(ModelField):
    """The chat model: a shipped name, a GGUF file, or the URL of an OpenAI-compatible server.
    For a URL the server's options show (served model, tokenizer.json, chat template source),
    and the server is asked what it serves (on the engine thread) instead of reading a file."""

    def __init__(
        self,
        worker: EngineWorker,
        choices: list[str],
        settings: Settings,
        context_size: Callable[[], int],
    ) -> None:
        # set before ModelField.__init__, which builds the options and asks for the first info
        self._settings = settings
        self._context_size = context_size
        self._server_info: ServerInfo | None = None  # the last answer, shown again on changes
        super().__init__(worker, "chat", choices, settings.chat_model)
        self.combo.setToolTip(
            '"chat" (the default): Qwen2.5-Coder-1.5B, a 1.04 GiB file, about 1.8 GiB of memory '
            'loaded, the better answers from memory; "fast": Qwen2.5-Coder-0.5B, 469 MiB, about '
            "0.6 GiB loaded, 2-3x quicker steps, for machines with 2 cores or little memory; "
            '"small": SmolLM2-135M; a GGUF file, or the '
            f"URL of an OpenAI-compatible server (llama-server, vLLM, Ollama), e.g. "
            f"{SERVER_EXAMPLE}. A server's API key is read from ${API_KEY_ENV}."
        )
        edit = self.combo.lineEdit()
        if edit is not None:
            edit.setPlaceholderText(f"chat, fast, small, a GGUF file or {SERVER_EXAMPLE}")
        self.combo.currentTextChanged.connect(lambda _: self._show_options())

    def _add_options(self, layout: QVBoxLayout) -> None:
        self.server = QGroupBox("Model server")
        self.server.setObjectName("settings-server")
        form = QFormLayout(self.server)
        self.served_model = QLineEdit(self._settings.server_model)
        self.served_model.setObjectName("settings-server-model")
        self.served_model.setPlaceholderText("default: the only model the server lists")
        self.served_model.setToolTip("The model's name on the server (its /v1/models list)")
        form.addRow("Served model", self.served_model)
        self.tokenizer = QLineEdit(self._settings.server_tokenizer)
        self.tokenizer.setObjectName("settings-server-tokenizer")
        self.tokenizer.setPlaceholderText("default: the server's tokenize endpoint")
        self.tokenizer.setToolTip(
            "The model's tokenizer.json, to count tokens without asking the server "
            "(Ollama has no tokenize endpoint: needed there)"
        )
        form.addRow("Tokenizer", self._with_browse(self.tokenizer, "tokenizer", TOKENIZER_FILTER))
        self.template = QLineEdit(self._settings.server_template)
        self.template.setObjectName("settings-server-template")
        self.template.setPlaceholderText("default: beside the tokenizer, or from llama-server")
        self.template.setToolTip(
            "Where the model's chat template is: its GGUF file, its tokenizer_config.json or a "
            ".jinja file (token counts need the exact template)"
        )
        form.addRow("Chat template", self._with_browse(self.template, "template", TEMPLATE_FILTER))
        for edit in (self.served_model, self.tokenizer, self.template):
            edit.textChanged.connect(lambda _: self._timer.start())
        layout.addWidget(self.server)
        self._show_options()

    def _with_browse(self, edit: QLineEdit, name: str, filter_: str) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit, 1)
        browse = QPushButton("Browse…")
        browse.setObjectName(f"settings-server-{name}-browse")
        browse.clicked.connect(lambda: self._browse_file(edit, filter_))
        layout.addWidget(browse)
        return row

    def _browse_file(self, edit: QLineEdit, filter_: str) -> None:
        current = edit.text().strip()
        start = str(Path(current).expanduser().parent) if current else ""
        path, _ = QFileDialog.getOpenFileName(self, "Model server", start, filter_)
        if path:
            edit.setText(path)
            self.fetch_info()

    def is_server(self) -> bool:
        return is_remote_model(self.value())

    def _show_options(self) -> None:
        self.server.setVisible(self.is_server())

    def server_settings(self) -> Settings:
        """The server options as typed (paths as _absolute makes them), in `settings`."""
        return dataclasses.replace(
            self._settings,
            server_model=self.served_model.text().strip(),
            server_tokenizer=_absolute(self.tokenizer.text().strip()),
            server_template=_absolute(self.template.text().strip()),
        )

    def fetch_info(self) -> None:
        """Ask the server (on the engine thread) for a URL; read the file header otherwise."""
        self._server_info = None
        self._show_options()
        if not self.is_server():
            super().fetch_info()
            return
        self._timer.stop()
        self._seq += 1
        self.problem = None  # a server's warnings (an unreported context size) do not block
        seq, url = self._seq, self.value()
        probe = dataclasses.replace(
            self.server_settings(), chat_model=url, n_ctx=self._context_size()
        )
        self.info.busy(f"Asking the model server at {url}…")
        self.info.setToolTip("")
        submit(
            self,
            self._worker,
            lambda _session: server_info(probe),
            lambda info: self._show_server(seq, info),
            lambda exc: self._failed(seq, exc),
        )

    def _show_server(self, seq: int, info: ServerInfo) -> None:
        if seq == self._seq:
            self._server_info = info
            self.context_size_changed()

    def context_size_changed(self) -> None:
        """Show the server's answer again against the app's context size now."""
        if self._server_info is None:
            return
        text, warning = describe_server(self._server_info, self._context_size())
        if warning:
            self.info.warning(f"{text}\nWarning: {warning}.")
        else:
            self.info.info(text)
        self.info.setToolTip(self._server_info.url)


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

        # made first: the chat field asks a server about the context size
        self.n_ctx = self._spin("settings-n-ctx", MIN_CONTEXT, MAX_CONTEXT, settings.n_ctx)
        self.n_ctx.setSingleStep(1024)
        self.n_ctx.setSuffix(" tokens")
        self.n_ctx.setToolTip("For a model on a server: at most the server's context window")
        shipped = [key for key in CHAT_MODEL_KEYS if is_available(key)]  # a built app: its own
        self.chat = ChatModelField(worker, shipped, settings, self.n_ctx.value)
        self.n_ctx.valueChanged.connect(lambda _: self.chat.context_size_changed())
        form.addRow("Chat model", self.chat)
        embedders = [key for key in ("embed", "minilm") if is_available(key)]
        self.embed = ModelField(worker, "embed", embedders, settings.embed_model)
        self.embed.combo.setToolTip(
            '"embed": nomic-embed-text-v1.5 (shipped, finds more); "minilm": all-MiniLM-L6-v2 '
            "(shipped, faster); or a GGUF file"
        )
        form.addRow("Embedding model", self.embed)
        form.addRow("Memory file", self._db_row(settings.db_path))

        form.addRow("Context size", self.n_ctx)
        cost = QLabel(CONTEXT_COST)
        cost.setObjectName("settings-n-ctx-cost")
        cost.setWordWrap(True)
        cost.setStyleSheet("color: palette(mid);")
        form.addRow("", cost)
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
            self.chat.server_settings(),
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
        for field, name in ((self.chat, "chat model"), (self.embed, "embedding model")):
            if field.problem is not None:  # its own check found it will not load
                self.error.error(f"The {name} will not do: {field.problem.rstrip('.')}.")
                return
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
