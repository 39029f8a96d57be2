"""The engine's error hierarchy: each says what went wrong and what the user can do."""


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


class ToolArgumentError(MemexError):
    """A tool call's arguments do not match the tool's schema."""


class InvalidInput(MemexError):
    """User input that cannot be stored as given (e.g. not text)."""


class ContextOverflowError(MemexError):
    """The fixed part of the prompt (system prompt + core memory) alone does not fit the window."""
