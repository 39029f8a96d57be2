"""The engine's error hierarchy: each says what went wrong and what the user can do."""

import sys


def running_built_app() -> bool:
    """True inside the PyInstaller build (build.spec), where there is no make and no pip."""
    return bool(getattr(sys, "frozen", False))


def reinstall_hint() -> str:
    """What to do about a missing or broken part of Memex itself (a library, not user data)."""
    if running_built_app():
        return "this copy of Memex is damaged: download it again"
    return "reinstall Memex's packages: `make clean` then `make run`"


def models_hint() -> str:
    """How to get the default model files back, as this Memex runs (from source or built)."""
    from models.fetch import repair_hint  # models/ is imported late: the engine runs without it

    return repair_hint()


class MemexError(Exception):
    """Base of every error the engine raises on purpose."""


class StoreError(MemexError):
    """The database file cannot be opened, read or written."""


class FileInUse(StoreError):
    """Another Memex (a window or the terminal chat) has the database file open."""


class ExtensionUnavailable(StoreError):
    """sqlite-vec could not be loaded into the SQLite connection."""


class SchemaTooNew(StoreError):
    """The database was written by a newer Memex than this one."""


class ModelLoadError(MemexError):
    """A GGUF model file is missing, corrupt, or not the kind of model asked for."""


class ModelNotMaterialised(ModelLoadError):
    """A default model has not been assembled from its packages yet."""


class GenerationError(MemexError):
    """The model failed while generating (not a bad tool call, which goes back to the model)."""


class Interrupted(GenerationError):
    """The model call was stopped by the caller's stop flag (while it read its prompt or wrote),
    as asked: idle work that yields to the user. Nothing it would have written was kept."""


class ToolArgumentError(MemexError):
    """A tool call's arguments do not match the tool's schema."""


class InvalidInput(MemexError):
    """User input that cannot be stored as given (e.g. not text)."""


class ContextOverflowError(MemexError):
    """The fixed part of the prompt (system prompt + core memory) alone does not fit the window."""
