"""Small dialogs of the main window."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QPlainTextEdit,
    QWidget,
)

from engine.agent import DEFAULT_DESCRIPTION


class NewAgentDialog(QDialog):
    """A new agent: its name (what it calls itself too) and, if the user likes, who it is."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New agent")
        form = QFormLayout(self)
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("new-agent-name")
        self.name_edit.setAccessibleName("Name of the new agent")
        self.name_edit.setPlaceholderText("e.g. Ada")
        self.description_edit = QPlainTextEdit()
        self.description_edit.setObjectName("new-agent-description")
        self.description_edit.setAccessibleName("Who the agent is")
        self.description_edit.setPlaceholderText(
            f"Who it is, in a sentence or two (optional). E.g. “A patient Spanish tutor.” "
            f"Left empty: “{DEFAULT_DESCRIPTION}”"
        )
        self.description_edit.setMaximumHeight(90)
        form.addRow("Name:", self.name_edit)
        form.addRow("Who it is:", self.description_edit)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setEnabled(False)
        self.name_edit.textChanged.connect(lambda t: self.ok_button.setEnabled(bool(t.strip())))
        form.addRow(buttons)

    @property
    def name(self) -> str:
        return self.name_edit.text().strip()

    @property
    def description(self) -> str:
        return self.description_edit.toPlainText().strip()
