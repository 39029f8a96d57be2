"""Memex desktop app (PySide6): a window onto the engine; all engine work runs on one worker."""
