"""The main window: chat in the middle, memory panels and the context viewer docked beside it.

It owns the flow of a turn on the UI side: a message is shown, queued while a step runs, sent to
the engine worker, and the step's events are drawn as they come. Everything the engine does runs
on the worker's thread (desktop.worker); this module only submits jobs and draws results.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.chat_view import (
    ChatView,
    Divider,
    ForgetCard,
    InputBox,
    MessageBubble,
    copy_to_clipboard,
)
from desktop.context_bar import ContextPanel
from desktop.dialogs import NewAgentDialog
from desktop.jobs import JobBar
from desktop.memory_view import MemoryView
from desktop.panels import count_of
from desktop.panels.archival import ArchivalPanel
from desktop.panels.core import CorePanel
from desktop.panels.facts import FactsPanel
from desktop.panels.recall import RecallPanel
from desktop.session import EngineSession, StepOutcome
from desktop.settings import (
    Settings,
    WindowState,
    load_window_state,
    save_settings_later,
    save_window_state_later,
)
from desktop.theme import SCALE_STEP, apply_scheme, clamp_scale, scaled_font
from desktop.turn import PHASE_REFLECTING, PHASE_STARTING, TurnRenderer
from desktop.worker import EngineWorker
from engine import __version__
from engine.agent import DEFAULT_DESCRIPTION
from engine.agents import AgentInfo
from engine.errors import FileInUse, InvalidInput
from engine.transcript import TranscriptPage, pageout_entry
from engine.types import (
    ContextUsage,
    ModelCallStarted,
    Organised,
    Persona,
    Remembered,
    StepEvent,
)
from models.fetch import repair_hint

logger = logging.getLogger(__name__)
REINDEX_WAIT_MS = 2_000  # how long indexing waits for the engine to be free again

SessionFactory = Callable[[Settings], EngineSession]
HISTORY_PAGE = 200
STATUS_SECONDS = 8  # how long a passing word stays in the status bar
ORGANISING = "Organising memory…"


class MainWindow(QMainWindow):
    ask_before_discarding = True  # closing with unsaved core edits asks first (tests: off)
    ready = Signal()  # an agent is on screen and takes input (after every load and switch)

    def __init__(
        self,
        settings: Settings,
        session_factory: SessionFactory = EngineSession,
        save: Callable[[Settings], object] = save_settings_later,
    ) -> None:
        super().__init__()
        self.setWindowTitle("Memex")
        self.resize(1200, 780)
        self.settings = settings
        self._save = save
        self.session = session_factory(settings)
        self.worker = EngineWorker(self.session, self)
        self.worker.event.connect(self._on_event)
        self.worker.progress.connect(self._on_progress)
        self.worker.failed.connect(self.show_error)
        self.loaded = False
        self.stepping = False
        self._cancel: threading.Event | None = None
        self._pending_settings: Settings | None = None
        self._queue: deque[tuple[str, MessageBubble]] = deque()
        self._oldest_id: int | None = None
        self.error_box: QMessageBox | None = None
        self._build_ui()
        self.turn = TurnRenderer(self.chat)
        self._reflected = False
        self._reflecting = False  # the running step is an idle reflection
        self.memory_view: MemoryView | None = None
        self._editing = False  # the input holds an edit of the last message (edit_last)
        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.timeout.connect(self.reflect)
        self._reindex_left: int | None = None
        self._reindex_total = 0  # messages and passages to index when it began
        self._reindex_stopped = False  # the user cancelled it: not again until the next start
        self._closed = False
        self._organise_wanted = False  # idle memory work is due (after a turn)
        self._reindex_later = QTimer(self)  # a child: it goes when the window goes
        self._reindex_later.setSingleShot(True)
        self._reindex_later.setInterval(REINDEX_WAIT_MS)
        self._reindex_later.timeout.connect(lambda: self._reindex(self._reindex_left))
        # the engine is free again: idle work stopped by a job the user started goes on (after
        # the event loop turns, so that the finished job's own callback has run)
        self.worker.busy_changed.connect(
            lambda busy: busy or QTimer.singleShot(0, self._organise_when_free)
        )
        self._restore_layout()
        self._apply_look()
        QApplication.styleHints().colorSchemeChanged.connect(self._system_scheme_changed)
        self.load()

    # -- layout ------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.chat = ChatView()
        self.chat.load_earlier.connect(self._load_earlier)
        self.input = InputBox()
        self.input.submitted.connect(self.send)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("send")
        self.send_button.clicked.connect(self._send_typed)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addLayout(buttons)
        centre = QWidget()
        layout = QVBoxLayout(centre)
        self.temporary_banner = QLabel(
            "Temporary chat: nothing said here is kept or reviewed, and Memex does not use your "
            "memory in it. Conversation > Temporary chat (Ctrl+Shift+N) ends it."
        )
        self.temporary_banner.setObjectName("temporary-banner")
        self.temporary_banner.setWordWrap(True)
        self.temporary_banner.setStyleSheet(
            "background:#fef3c7; color:#78350f; border-radius:6px; padding:6px;"
        )
        self.temporary_banner.hide()
        layout.addWidget(self.temporary_banner)
        layout.addWidget(self.chat, 1)
        layout.addLayout(row)
        self.setCentralWidget(centre)
        self._build_docks()
        self._build_actions()
        self._build_toolbar()
        self._build_menus()
        self._build_status()

    def _build_docks(self) -> None:
        self.context_panel = ContextPanel()
        self.core_panel = CorePanel(self.worker)
        self.archival_panel = ArchivalPanel(self.worker)
        self.recall_panel = RecallPanel(self.worker)
        self.facts_panel = FactsPanel(self.worker)
        self.core_panel.edited.connect(self.refresh_usage)
        self.archival_panel.edited.connect(self.refresh_usage)
        self.recall_panel.message_activated.connect(self.show_message)
        docks = []
        for title, widget in (
            ("Context window", self.context_panel),
            ("Core memory", self.core_panel),
            ("Archival memory", self.archival_panel),
            ("Recall", self.recall_panel),
            ("Facts", self.facts_panel),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock-{title}")
            dock.setWidget(widget)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            docks.append(dock)
        self.splitDockWidget(docks[0], docks[1], Qt.Orientation.Vertical)
        for dock in docks[2:]:
            self.tabifyDockWidget(docks[1], dock)
        docks[1].raise_()
        self.resizeDocks([docks[0], docks[1]], [290, 460], Qt.Orientation.Vertical)
        self.resizeDocks([docks[0]], [420], Qt.Orientation.Horizontal)

    def _restore_layout(self) -> None:
        """Size, position and docks as the user left them (QMainWindow's own state format)."""
        state = load_window_state()
        if state:
            self.restoreGeometry(QByteArray(state.geometry))
            self.restoreState(QByteArray(state.docks))

    def _layout_state(self) -> WindowState:
        return WindowState(bytes(self.saveGeometry().data()), bytes(self.saveState().data()))

    def _build_actions(self) -> None:
        """Every action of the window, each with its shortcut; the menu bar holds them all and
        the toolbar the common ones."""
        self.commands: dict[str, QAction] = {}
        for key, text, slot, keys in (
            ("new", "New agent…", self._ask_new_agent, "Ctrl+N"),
            ("rename", "Rename agent…", self._ask_rename_agent, "F2"),
            ("delete", "Delete agent…", self._ask_delete_agent, ""),
            ("export", "Export agent…", self._ask_export_agent, "Ctrl+E"),
            ("import", "Import agent…", self._ask_import_agent, "Ctrl+O"),
            ("settings", "Settings…", self.open_settings, "Ctrl+,"),
            ("quit", "Quit", self.close, "Ctrl+Q"),
            ("copy_reply", "Copy last reply", self.copy_last_reply, "Ctrl+Shift+C"),
            ("stop", "Stop", self.stop, "Escape"),
            ("reflect", "Reflect now", self.reflect, "Ctrl+R"),
            ("memory", "What Memex knows…", self.open_memory_view, "Ctrl+M"),
            ("temporary", "Temporary chat", self.toggle_temporary, "Ctrl+Shift+N"),
            ("regenerate", "Regenerate last reply", self.regenerate, "Ctrl+Shift+R"),
            ("edit_last", "Edit last message", self.edit_last, "Ctrl+Shift+E"),
            ("zoom_in", "Larger text", lambda: self.zoom(+1), "Ctrl++"),
            ("zoom_out", "Smaller text", lambda: self.zoom(-1), "Ctrl+-"),
            ("zoom_reset", "Actual size", lambda: self.zoom(0), "Ctrl+0"),
            ("about", "About Memex", self._about, ""),
        ):
            action = QAction(text, self)
            action.setObjectName(f"action-{key}")
            action.triggered.connect(slot)
            if keys:
                action.setShortcut(QKeySequence(keys))
                action.setToolTip(f"{text.rstrip('…')} ({QKeySequence(keys).toString()})")
            self.addAction(action)  # its shortcut works with the menu bar hidden too
            self.commands[key] = action
        # Ctrl+= is where Ctrl++ is on most keyboards (no Shift needed)
        self.commands["zoom_in"].setShortcuts([QKeySequence("Ctrl++"), QKeySequence("Ctrl+=")])
        self._agent_actions = [self.commands[k] for k in ("new", "delete", "import", "rename")]
        self.commands["temporary"].setCheckable(True)
        self.commands["temporary"].setToolTip(
            "A chat that is neither kept nor reviewed, and does not use your memory"
        )
        self.scheme_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for scheme, text in (
            ("system", "Colours of the system"),
            ("light", "Light"),
            ("dark", "Dark"),
        ):
            action = QAction(text, self, checkable=True)
            action.setObjectName(f"action-scheme-{scheme}")
            action.setChecked(scheme == self.settings.scheme)
            action.triggered.connect(lambda _=False, s=scheme: self.set_scheme(s))
            group.addAction(action)
            self.scheme_actions[scheme] = action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        sections: dict[str, list[str | None]] = {
            "&File": [
                "new",
                "rename",
                "delete",
                None,
                "import",
                "export",
                None,
                "settings",
                None,
                "quit",
            ],
            "&Edit": ["copy_reply"],
            "&Conversation": ["stop", "regenerate", "edit_last", None, "reflect", "temporary"],
            "&Memory": ["memory"],
            "&View": ["zoom_in", "zoom_out", "zoom_reset", None],
            "&Help": ["about"],
        }
        self.menus: dict[str, QMenu] = {}
        for title, keys in sections.items():
            menu = bar.addMenu(title)
            for key in keys:
                if key is None:
                    menu.addSeparator()
                else:
                    menu.addAction(self.commands[key])
            self.menus[title.replace("&", "")] = menu
        view = self.menus["View"]
        colours = view.addMenu("Colours")
        for action in self.scheme_actions.values():
            colours.addAction(action)
        view.addSeparator()
        panels = view.addMenu("Panels")
        for dock in self.findChildren(QDockWidget):
            panels.addAction(dock.toggleViewAction())

    def _build_toolbar(self) -> None:
        bar = self.addToolBar("Agents")
        bar.setObjectName("toolbar")
        bar.addWidget(QLabel(" Agent: "))
        self.agent_box = QComboBox()
        self.agent_box.setObjectName("agents")
        self.agent_box.setAccessibleName("Agent")
        self.agent_box.setMinimumWidth(160)
        self.agent_box.activated.connect(lambda i: self.switch_agent(self.agent_box.itemText(i)))
        bar.addWidget(self.agent_box)
        keys = (
            "new",
            "rename",
            "delete",
            "export",
            "import",
            None,
            "memory",
            "reflect",
            "settings",
        )
        for key in keys:
            if key is None:
                bar.addSeparator()
            else:
                bar.addAction(self.commands[key])

    def _build_status(self) -> None:
        self._said = ""
        self._status_later = QTimer(self)
        self._status_later.setSingleShot(True)
        self._status_later.timeout.connect(self._status_expired)
        self.status = QLabel("Starting…")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setObjectName("status")
        self.job = JobBar()
        # idle memory work: a word beside the status, never in the way of typing
        self.organising = QLabel(ORGANISING)
        self.organising.setObjectName("organising")
        self.organising.setToolTip(
            "Memory is being tidied while you read and type (old messages summarised, the "
            "next prompt read ahead). Sending a message stops it at once."
        )
        self.organising.setAccessibleName("Memory is being organised")
        self.organising.setVisible(False)
        self.statusBar().addWidget(self.status, 1)
        self.statusBar().addPermanentWidget(self.organising)
        self.statusBar().addPermanentWidget(self.job)

    # -- look --------------------------------------------------------------------------
    def _apply_look(self) -> None:
        """Colours and text size as the settings say (theme.py)."""
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        colours = apply_scheme(app, self.settings.scheme)
        font = scaled_font(app.font(), self.settings.text_scale)
        self.chat.set_style(colours, font)
        self.input.setFont(font)
        self.context_panel.set_dark(colours.dark)

    def _system_scheme_changed(self) -> None:
        if self.settings.scheme == "system" and not self._closed:
            self._apply_look()

    def set_scheme(self, scheme: str) -> None:
        """Colours: "system" (follow it), "light" or "dark"; kept for the next start."""
        self.scheme_actions[scheme].setChecked(True)
        if scheme != self.settings.scheme:
            self._update_settings(dataclasses.replace(self.settings, scheme=scheme))
        self._apply_look()

    def zoom(self, step: int) -> None:
        """Text one step larger (+1) or smaller (-1), or the system's size (0)."""
        scale = 1.0 if step == 0 else clamp_scale(self.settings.text_scale + step * SCALE_STEP)
        if scale != self.settings.text_scale:
            self._update_settings(dataclasses.replace(self.settings, text_scale=scale))
            self._apply_look()
        self.say(f"Text size {round(scale * 100)}%")

    def copy_last_reply(self) -> None:
        replies = [w for w in self.chat.entries() if isinstance(w, MessageBubble)]
        replies = [w for w in replies if w.role == "assistant" and w.text]
        if replies:
            copy_to_clipboard(replies[-1].text)
            self.say("Copied the last reply")

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About Memex",
            f"Memex {__version__}\n\nA local assistant that remembers. Everything it "
            "remembers stays in one file on this computer; nothing is sent anywhere unless "
            "you choose a model on a server in Settings.",
        )

    def say(self, text: str) -> None:
        """A passing word in the status bar ("Exported …"): it gives way to what holds
        (the model line, a running step's state) after STATUS_SECONDS."""
        self.status.setText(text)
        self._said = text
        self._status_later.start(int(STATUS_SECONDS * 1000))

    def _status_expired(self) -> None:
        if self.status.text() == self._said and self.loaded and not self.stepping:
            self.status.setText(self._model_line())

    # -- loading -----------------------------------------------------------------------
    def load(self, settings: Settings | None = None) -> None:
        """Load the models and the file (with new `settings`) on the worker; the window stays
        usable meanwhile. New settings are kept only once they load."""
        settings = settings or self.settings
        self.loaded = False
        self.job.start("load")  # a load cannot be stopped half way: no Cancel
        self._set_enabled(False)
        report = self.worker.emit_progress
        self.worker.submit(
            lambda s: (s.load(report, settings), s.settings)[1],  # as loaded (agent included)
            self._loaded,
            lambda error: self._load_failed(error, settings),
        )

    def _on_progress(self, text: str, percent: int) -> None:
        self.status.setText(text)
        self.job.progress(percent)

    def _loaded(self, settings: Settings) -> None:
        if settings != self.settings:
            self._update_settings(settings)
        self.job.end("load")
        self.status.setText(self._model_line())
        self._show_agent()

    def _model_line(self) -> str:
        llm = self.session.llm
        name = getattr(llm, "name", "?")
        return f"Model: {name} · context {self.settings.n_ctx:,} tokens"

    def _load_failed(self, error: BaseException, settings: Settings) -> None:
        self.job.end("load")
        if self.session.loaded:  # new settings failed: the previous models are still in use
            self.status.setText("The new settings did not load; the previous ones are in use")
            self._show_agent()
        else:
            self.status.setText("No model loaded: open Settings to choose one")
        if isinstance(error, FileInUse):
            box = self.show_error(
                error,
                title="The memory file is in use",
                hint="Memex opens a memory file in one place at a time, so that nothing is "
                "written twice. Close the other Memex and press Retry, or open Settings to "
                "choose another memory file.",
                offer_settings=True,
            )
            retry = box.addButton("Retry", QMessageBox.ButtonRole.ActionRole)
            retry.clicked.connect(lambda: QTimer.singleShot(0, lambda: self.load(settings)))
            return
        if self.session.loaded:
            self.show_error(
                error,
                title="The new settings did not load",
                hint="Memex goes on with the settings it had. Open Settings to choose another "
                "model file or memory file. Nothing in your memory file was changed.",
                offer_settings=True,
            )
            return
        self.show_error(
            error,
            title="Memex could not load its models",
            hint="Open Settings to choose another model file or memory file (or "
            f"{repair_hint()} to get the default models back). Nothing in your memory file was "
            "changed.",
            offer_settings=True,
        )

    def _set_enabled(self, on: bool) -> None:
        for widget in (self.send_button, self.agent_box):
            widget.setEnabled(on)

    # -- the agent on screen -----------------------------------------------------------
    def _show_agent(self) -> None:
        """Redraw everything for the current agent: list, chat history, panels, context. Input
        waits until the history is drawn, so nothing typed lands in a chat about to be redrawn."""
        self.loaded = False
        self._set_enabled(False)
        self.worker.submit(
            lambda s: (
                s.agents(),
                s.agent.name,
                s.transcript(HISTORY_PAGE),
                s.usage(),
                str(s.store.path) if s.store is not None else "",
                s.temporary,
            ),
            self._agent_shown,
        )
        self.refresh_panels()

    def _agent_shown(
        self, result: tuple[list[AgentInfo], str, TranscriptPage, ContextUsage, str, bool]
    ) -> None:
        agents, current, page, usage, file, temporary = result
        self._fill_agents(agents, current)
        self._show_history(page)
        if not page.entries and not temporary:
            self.chat.show_welcome(file).example_chosen.connect(self._use_example)
        self.context_panel.show_usage(usage)
        self.loaded = True
        self._set_enabled(True)
        self._restart_idle()
        self._organise_wanted = True  # the prompt read ahead while the first message is typed
        self._organise_when_free()
        self._show_temporary(temporary)
        self.ready.emit()
        self._reindex()

    def _reindex(self, left: int | None = None) -> None:
        """Bring over the vectors another embedding model made (engine.memory.reembed), a batch
        at a time when the engine has nothing else to do: the user never waits for it."""
        if self._closed or self._reindex_stopped:
            return
        if self.worker.busy or self.stepping:
            self._reindex_left = left
            self._reindex_later.start()
            return
        if left == 0:
            self.job.end("reindex")
            if self._reindex_total:  # the indexing line gives way
                self.status.setText(self._model_line())
            return
        if left is not None:
            self._reindex_total = max(self._reindex_total, left)
            if self.job.name != "reindex":
                self.job.start("reindex", self._stop_reindex)
            self.job.progress(100 * (self._reindex_total - left) // self._reindex_total)
            self.status.setText(f"Indexing your memory for the new embedding model: {left:,} left")
        self.worker.submit(
            lambda s: s.reembed_some(),
            self._reindex,
            lambda error: logger.warning("indexing for the embedding model stopped: %s", error),
        )

    def _stop_reindex(self) -> None:
        """Cancel on the indexing: it waits for the next start (search by meaning misses what
        is not indexed yet for this embedding model until then)."""
        self._reindex_stopped = True
        self.job.end("reindex")
        self.say("Indexing paused until Memex starts again")

    def _fill_agents(self, agents: list[AgentInfo], current: str) -> None:
        self.agent_box.clear()
        for agent in agents:
            self.agent_box.addItem(agent.name)
        self.agent_box.setCurrentText(current)
        self._show_agent_name(current)

    def _show_agent_name(self, name: str) -> None:
        """The agent's name where the window shows it, and as the agent to open next time."""
        self.chat.speaker = name
        self.setWindowTitle(f"Memex — {name}")
        if self.settings.agent != name:
            self._update_settings(dataclasses.replace(self.settings, agent=name))

    def _show_history(self, page: TranscriptPage) -> None:
        self.chat.clear()
        for entry in page.entries:
            self.chat.add_entry(entry)
        self._show_earlier_button(page)
        self.input.history = [e.text for e in page.entries if e.kind == "user"]
        self.input.remember("")
        self.chat.scroll_to_end()

    def _use_example(self, text: str) -> None:
        self.input.setPlainText(text)
        self.input.setFocus()
        self.input.moveCursor(self.input.textCursor().MoveOperation.End)

    def _load_earlier(self) -> None:
        if not self.chat.earlier.isEnabled():
            return  # a page is on its way: one page at a time
        before = self._oldest_id
        self.chat.earlier.setEnabled(False)
        self.worker.submit(lambda s: s.transcript(HISTORY_PAGE, before), self._prepend)

    def _prepend(self, page: TranscriptPage) -> None:
        for entry in reversed(page.entries):
            self.chat.add_entry(entry, at_top=True)
        self._show_earlier_button(page)

    def _show_earlier_button(self, page: TranscriptPage) -> None:
        if page.first_message_id is not None:
            self._oldest_id = page.first_message_id
        self.chat.earlier.setVisible(page.has_earlier)
        self.chat.earlier.setEnabled(True)

    def refresh_usage(self) -> None:
        if self.loaded:
            self.worker.submit(lambda s: s.usage(), self.context_panel.show_usage)

    def refresh_panels(self) -> None:
        for panel in (self.core_panel, self.archival_panel, self.recall_panel, self.facts_panel):
            panel.refresh()

    def show_message(self, message_id: int) -> None:
        """Scroll the chat to a message picked in the recall panel."""
        if not self.chat.show_message(message_id):
            self.say(
                f"Message {message_id} is older than the chat shows: use “Load earlier messages”"
            )

    # -- a turn ------------------------------------------------------------------------
    def _send_typed(self) -> None:
        self.input._send()

    def send(self, text: str) -> None:
        """Show the message and run a step for it, or queue it while a step runs."""
        if not self.loaded:
            self.status.setText("No model is loaded yet: the message was not sent")
            self.input.setPlainText(text)  # nothing typed is lost
            return
        self.chat.end_welcome()  # the conversation has begun
        if self._editing and not self.stepping:
            self._editing = False
            asked = self._last_user_bubble()
            if asked is not None:
                self.chat.drop_from(asked)
            bubble = self.chat.bubble("user", text)
            self.chat.scroll_to_end()
            self._start_step(text, bubble, edited=True)
            return
        bubble = self.chat.bubble("user", text)
        self.chat.scroll_to_end()
        if self.stepping:
            bubble.set_tag("queued")
            self._queue.append((text, bubble))
            if self._reflecting and self._cancel is not None:
                # the user comes first: the reflection stops at its next token and runs again
                # at the next idle spell (what it saved stays; what it had not read waits)
                self.turn.keep_above(bubble)
                self._cancel.set()
                self._reflected = False
                self.status.setText("Stopping the reflection to answer you…")
                return
            waiting = count_of(len(self._queue), "message")
            self.status.setText(f"{waiting} queued until this step ends")
            return
        self._start_step(text, bubble)

    def _start_step(self, text: str, bubble: MessageBubble, edited: bool = False) -> None:
        """Runs the step for `text` (shown as `bubble`); `edited`: it replaces the last message
        (desktop.session.edit_last)."""
        bubble.set_tag("")
        bubble.set_time(dt.datetime.now(dt.UTC))  # a queued message is stored as it starts
        self._reflected = False  # the user is back: the next idle spell earns a reflection
        cancel = self._begin_step("Thinking…")
        emit = self.worker.emit_event
        self.worker.submit(
            (lambda s: s.edit_last(text, emit, cancel))
            if edited
            else (lambda s: s.step(text, emit, cancel)),
            self._step_done,
            lambda e: self._step_failed(e, bubble, text),
        )

    # -- another reply, an edited message --------------------------------------------------
    def regenerate(self) -> None:
        """Another reply to the last message: the old one leaves the chat (recall keeps it,
        marked) and the model answers again."""
        asked = self._last_user_bubble()
        if asked is None or not self._free_for("regenerate"):
            return
        self.chat.drop_after(asked)
        self._reflected = False
        cancel = self._begin_step("Thinking again…")
        emit = self.worker.emit_event
        self.worker.submit(lambda s: s.regenerate(emit, cancel), self._step_done, self._step_failed)

    def edit_last(self) -> None:
        """Puts the last message in the input: sent, it takes the old one's place (recall
        keeps that, marked); Esc leaves it as it was."""
        asked = self._last_user_bubble()
        if asked is None or not self._free_for("edit"):
            return
        self._editing = True
        self.input.setPlainText(asked.text)
        self.input.setFocus()
        self.input.moveCursor(self.input.textCursor().MoveOperation.End)
        asked.set_tag("editing")
        self.status.setText("Editing your last message: Enter sends it in its place, Esc cancels")

    def _cancel_edit(self) -> None:
        self._editing = False
        asked = self._last_user_bubble()
        if asked is not None:
            asked.set_tag("")
        self.input.clear()
        self.status.setText(self._model_line())

    def _last_user_bubble(self) -> MessageBubble | None:
        bubbles = [w for w in self.chat.entries() if isinstance(w, MessageBubble)]
        asked = [b for b in bubbles if b.role == "user"]
        if not asked:
            self.say("There is no message of yours yet")
            return None
        return asked[-1]

    def _free_for(self, what: str) -> bool:
        if not self.loaded or self.stepping or self._queue:
            self.say(f"Wait for the assistant to finish before you {what}")
            return False
        return True

    def reflect(self) -> None:
        """An idle turn: the agent reviews and saves what matters; shown as its own turn."""
        if not self.loaded or self.stepping or self._editing:
            return
        self._reflected = True
        self._reflecting = True
        self.chat.add(Divider("heartbeat", f"{self.chat.speaker} reflects (no user message)"))
        cancel = self._begin_step("Reflecting…", PHASE_REFLECTING)
        emit = self.worker.emit_event
        self.worker.submit(lambda s: s.heartbeat(emit, cancel), self._step_done, self._step_failed)

    def stop(self) -> None:
        """Stop the running step, even one still waiting for the engine thread (and leave an
        edit of the last message unsent)."""
        if self._editing and not self.stepping:
            self._cancel_edit()
            return
        if self.stepping and self._cancel is not None:
            self.status.setText("Stopping…")
            self._cancel.set()

    def _begin_step(self, status: str, phase: str = PHASE_STARTING) -> threading.Event:
        """UI state for a running step; returns the step's stop flag (set by Stop, read by the
        engine between tokens)."""
        self._cancel = threading.Event()
        self.stepping = True
        self._set_agent_actions(False)
        self._idle.stop()
        self.turn.begin(phase)
        self.stop_button.setEnabled(True)
        self.status.setText(status)
        return self._cancel

    def _on_event(self, event: StepEvent) -> None:
        if isinstance(event, ModelCallStarted) and event.index:
            self.status.setText(f"Thinking… (model call {event.index + 1})")
        self.turn.on_event(event)

    def _step_done(self, outcome: StepOutcome) -> None:
        card = self.turn.finish(outcome.result)
        if card is not None:
            card.chosen.connect(lambda items, c=card: self._forget_chosen(c, items))
        self.context_panel.show_usage(outcome.usage)
        self._end_step("Stopped" if outcome.result.cancelled else self._model_line())

    def _step_failed(
        self, error: BaseException, bubble: MessageBubble | None = None, text: str = ""
    ) -> None:
        if bubble is not None and isinstance(error, InvalidInput):
            bubble.mark_failed("not sent")  # refused before it was stored: give the text back
            if not self.input.toPlainText():
                self.input.setPlainText(text)
        elif bubble is not None:
            bubble.mark_failed("saved; no reply")
        self.turn.abandon()
        self.refresh_usage()
        self._end_step("The step failed")
        self.show_error(error, title="The assistant could not answer")

    def _end_step(self, status: str) -> None:
        self.stepping = False
        self._reflecting = False
        self._cancel = None
        self.stop_button.setEnabled(False)
        self.status.setText(status)
        self.refresh_panels()
        if self._queue:
            text, bubble = self._queue.popleft()
            self._start_step(text, bubble)
        elif self._pending_settings is not None:
            settings, self._pending_settings = self._pending_settings, None
            self._set_agent_actions(True)
            self.load(settings)
        else:
            self._set_agent_actions(True)
            self._restart_idle()
            self._organise_wanted = True
            self._organise_when_free()

    # -- idle memory work --------------------------------------------------------------
    def _organise_when_free(self) -> None:
        """Memory work while the user reads and types (MemGPTAgent.organise: a page-out when
        the next turn would need one, its summary, the next prompt read ahead), so that their
        next step does not wait for it. It never stands in their way: any job they start stops
        it within a fraction of a second, and it goes on once the engine is free again."""
        if (
            not self._organise_wanted
            or self._closed
            or not self.loaded
            or self.stepping
            or self.worker.busy
        ):
            return
        self.organising.setVisible(True)
        self.worker.submit_idle(
            lambda s, stop: s.organise(stop), self._organised, self._organise_failed
        )

    def _organised(self, done: Organised) -> None:
        if not done.stopped:
            self._organise_wanted = False
        self.organising.setVisible(False)
        if done.page_out is not None and not self._closed:
            # the divider goes where the conversation stands: the messages before it left
            self.chat.add_entry(pageout_entry(done.page_out.summary, dt.datetime.now(dt.UTC)))
            self.refresh_usage()

    def _organise_failed(self, error: BaseException) -> None:
        logger.warning("idle memory work failed: %s", error)  # the next step does what it must
        self._organise_wanted = False
        self.organising.setVisible(False)

    def _restart_idle(self) -> None:
        """Arm the idle reflection: once per idle spell, not again and again while the user
        is away (each costs a model call)."""
        if self.settings.idle_minutes > 0 and not self._reflected and not self.session.temporary:
            self._idle.start(self.settings.idle_minutes * 60_000)

    # -- agents ------------------------------------------------------------------------
    def switch_agent(self, name: str) -> None:
        if name and name != self.chat.speaker and self._agents_free():
            self.worker.submit(lambda s: s.switch(name), lambda _: self._show_agent())

    def create_agent(self, name: str, description: str = "") -> None:
        """A new agent called `name`, who is `name` to itself too ("I am Ada. ..."), described
        by `description` (the default words where "")."""
        if self._agents_free():
            persona = Persona(
                name=name.strip(), description=description.strip() or DEFAULT_DESCRIPTION
            )
            self.worker.submit(lambda s: s.create(name, persona), lambda _: self._show_agent())

    def rename_agent(self, name: str) -> None:
        """Renaming keeps the agent (and a running step and its queue); only labels change."""
        self.worker.submit(lambda s: s.rename(name), self._renamed)

    def _renamed(self, name: str) -> None:
        self.agent_box.setItemText(self.agent_box.currentIndex(), name)
        self._show_agent_name(name)

    def delete_agent(self, name: str) -> None:
        if self._agents_free():
            self.worker.submit(lambda s: s.delete(name), lambda _: self._show_agent())

    def _agents_free(self) -> bool:
        """Agents change only between steps: a running step and the messages queued behind
        it belong to the agent they were typed to."""
        if self.stepping or self._queue:
            self.say("Wait for the assistant to finish before changing agents")
            self.agent_box.setCurrentText(self.chat.speaker)
            return False
        return True

    def _set_agent_actions(self, on: bool) -> None:
        """The agent list, New and Delete: off from a step's start until its queue is done,
        and through a temporary chat."""
        on = on and not self.session.temporary
        self.agent_box.setEnabled(on)
        for action in self._agent_actions:
            action.setEnabled(on)

    def _ask_new_agent(self) -> None:
        dialog = NewAgentDialog(self)
        if dialog.exec() and dialog.name:
            self.create_agent(dialog.name, dialog.description)

    def _ask_rename_agent(self) -> None:
        current = self.agent_box.currentText()
        name, ok = QInputDialog.getText(self, "Rename agent", "New name:", text=current)
        if ok and name.strip() and name != current:
            self.rename_agent(name)

    def _ask_delete_agent(self) -> None:
        name = self.agent_box.currentText()
        answer = QMessageBox.question(
            self,
            "Delete agent",
            f"Delete {name!r} and all its memory (messages, core blocks, archival passages)? "
            "This cannot be undone.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_agent(name)

    def _ask_export_agent(self) -> None:
        name = self.agent_box.currentText()
        suggested = documents_dir() / f"{name}.memex-agent.json"
        path, _ = QFileDialog.getSaveFileName(
            self, "Export agent", str(suggested), "Memex agent file (*.json)"
        )
        if path:
            self.worker.submit(
                lambda s: s.export_agent(Path(path)),
                lambda saved: self.say(f"Exported {name!r} to {saved}"),
                self._export_failed,
            )

    def _export_failed(self, error: BaseException) -> None:
        self.show_error(error, title="The agent was not exported")

    def _ask_import_agent(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Import agent",
            str(documents_dir()),
            "Agent files (*.json *.af);;Letta agent file (*.af);;All files (*)",
        )
        if path:
            self.import_agent(Path(path))

    def import_agent(self, path: Path, name: str | None = None) -> None:
        """Import an agent file and show its agent; a name already taken is asked again
        (an import never overwrites an agent)."""
        if not self._agents_free():
            return

        stop = threading.Event()
        self.job.start("import", stop.set)
        self.status.setText(f"Importing {path.name}…")

        def report(done: int, total: int) -> None:  # on the engine thread: a queued signal
            self.worker.emit_progress(
                f"Importing {path.name}: {done:,} of {total:,}", 100 * done // max(1, total)
            )

        def failed(error: BaseException) -> None:
            from engine.agentfile import AgentExists, ImportStopped

            self.job.end("import")
            if isinstance(error, ImportStopped):
                self.say(f"Stopped importing {path.name}: nothing was imported")
                return
            if not isinstance(error, AgentExists):
                self.show_error(
                    error,
                    title="The agent was not imported",
                    hint="Nothing was changed. Memex imports the agent files it exports and "
                    "Letta's .af files.",
                )
                return
            new, ok = QInputDialog.getText(
                self, "Import agent", f"{error}\n\nName for the imported agent:"
            )
            if ok and new.strip():
                self.import_agent(path, new)

        self.worker.submit(
            lambda s: s.import_agent(path, name, report, stop), self._imported, failed
        )

    def _imported(self, reports: list) -> None:
        self.job.end("import")
        notes = [n for r in reports for n in r.notes]
        names = ", ".join(repr(r.name) for r in reports)
        self.say(f"Imported {names}" + (f" ({count_of(len(notes), 'note')})" if notes else ""))
        if notes:
            QMessageBox.information(
                self,
                "Import agent",
                f"Imported {names}. Not brought over:\n- " + "\n- ".join(notes),
            )
        self._show_agent()

    def _forget_chosen(self, card: ForgetCard, items: list[Remembered]) -> None:
        """The user's choice on a request to forget (a ForgetCard): forget those, for real."""
        if not items:
            card.done("Kept: nothing was forgotten.")
            return

        with_messages = card.with_messages.isChecked()

        def done(gone: int) -> None:
            card.done(f"Forgotten: {count_of(gone, 'thing')}.")
            if with_messages:  # deleted from recall: gone from the chat too
                self.chat.drop_messages([i.source for i in items if i.source is not None])
            self.refresh_panels()
            self.refresh_usage()

        self.worker.submit(lambda s: s.forget_chosen(items, with_messages), done)

    # -- a temporary chat ----------------------------------------------------------------
    def toggle_temporary(self) -> None:
        """Start a temporary chat (desktop.session.start_temporary), or end the one on."""
        on = self.session.temporary  # read between jobs: only this thread starts or ends one
        if not self.loaded or not self._agents_free():
            self.commands["temporary"].setChecked(on)
            return
        job = (lambda s: s.end_temporary()) if on else (lambda s: s.start_temporary())
        self.worker.submit(job, lambda _: self._show_agent())

    def _show_temporary(self, on: bool) -> None:
        self.temporary_banner.setVisible(on)
        self.commands["temporary"].setChecked(on)
        for key in ("new", "delete", "import", "export", "rename", "memory", "reflect"):
            self.commands[key].setEnabled(not on)
        self.agent_box.setEnabled(not on)
        if on:
            self._idle.stop()  # nothing of a temporary chat is reviewed

    # -- the Memory view -----------------------------------------------------------------
    def open_memory_view(self) -> MemoryView | None:
        """What Memex knows, with Forget (desktop.memory_view); not while models load."""
        if not self.loaded:
            self.say("The models are still loading")
            return None
        view = MemoryView(self.worker, self)
        view.forgotten.connect(self.refresh_panels)
        view.forgotten.connect(self.refresh_usage)
        view.show()
        self.memory_view = view
        return view

    # -- settings ----------------------------------------------------------------------
    def open_settings(self) -> None:
        from desktop.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.worker, self.settings, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, settings: Settings) -> None:
        """Reload the models and file with new settings; they are saved once they load. While
        a step runs (or messages wait) they apply after it: those messages belong to the
        models and file they were typed to."""
        if settings == self.settings and self.session.loaded:
            return
        if self.stepping or self._queue:
            self._pending_settings = settings
            self.status.setText("The new settings apply when the assistant has finished")
            return
        self.load(settings)

    def _update_settings(self, settings: Settings) -> None:
        self.settings = settings
        self._save(settings)  # off the UI thread; a failure is logged

    # -- errors ------------------------------------------------------------------------
    def show_error(
        self,
        error: BaseException,
        title: str = "Something went wrong",
        hint: str = "",
        offer_settings: bool = False,
    ) -> QMessageBox:
        """A non-blocking dialog saying what failed and what to do."""
        text = str(error) or type(error).__name__
        # a child of the window: it closes with it (a lone dialog would keep the app running)
        box = QMessageBox(QMessageBox.Icon.Critical, title, text, parent=self)
        box.setTextFormat(Qt.TextFormat.PlainText)  # messages quote names and paths verbatim
        box.setObjectName("error-dialog")
        if hint:
            box.setInformativeText(hint)
        if offer_settings:
            settings = box.addButton("Open Settings…", QMessageBox.ButtonRole.AcceptRole)
            settings.clicked.connect(lambda: QTimer.singleShot(0, self.open_settings))
        box.addButton(QMessageBox.StandardButton.Close)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self.error_box = box
        logger.info("%s: %s", title, error)
        return box

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.ask_before_discarding and self.core_panel.has_unsaved():
            answer = QMessageBox.question(
                self,
                "Unsaved core memory",
                "Some core memory edits are not saved. Close and discard them?",
                QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
                QMessageBox.StandardButton.Cancel,
            )
            if answer != QMessageBox.StandardButton.Discard:
                event.ignore()
                return
        self._closed = True
        self._idle.stop()
        self._reindex_later.stop()
        if self.error_box is not None:
            self.error_box.close()
        save_window_state_later(self._layout_state())
        if self._cancel is not None:
            self._cancel.set()
        queued = [text for text, _ in self._queue]
        self._queue.clear()
        if queued:  # typed but not sent: stored for the next step to answer
            self.worker.submit(lambda s: s.keep_unanswered(queued))
        self.hide()  # the engine may need a moment to finish the job it is on
        self.worker.shutdown()
        super().closeEvent(event)


def documents_dir() -> Path:
    """Where file dialogs open: the user's documents folder, else their home."""
    found = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(found) if found and Path(found).is_dir() else Path.home()
