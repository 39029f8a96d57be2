"""Memex engine: MemGPT-style memory (core, recall, archival) on one SQLite file, local models."""

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

from engine.agent import MemGPTAgent, ModelCall, StepResult
from engine.errors import MemexError
from engine.llm.factory import default_llm_client
from engine.memory.core import CoreMemory
from engine.store.db import Store, open_store
from engine.tools.memory_tools import MemoryTool
from engine.types import AgentResponse, Assists, Message, Persona, ToolCall, ToolResult

__all__ = [
    "AgentResponse",
    "Assists",
    "CoreMemory",
    "MemGPTAgent",
    "MemexError",
    "MemoryTool",
    "Message",
    "ModelCall",
    "Persona",
    "StepResult",
    "Store",
    "ToolCall",
    "ToolResult",
    "default_llm_client",
    "open_store",
]
