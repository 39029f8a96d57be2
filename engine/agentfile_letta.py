"""Read a Letta agent file (.af) into typed values Memex can import. Pure: stdlib only, no store.

Two layouts of the file exist in the wild (both read here):

- single-agent (Letta up to about 0.7, e.g. letta-ai/agent-file memgpt_agent_with_convo.af of
  April 2025, "version": "0.6.47"): the agent is the top-level object, with "agent_type",
  "core_memory" (the blocks), "messages", "in_context_message_indices", "tools", "tool_rules",
  "system", "llm_config", "embedding_config".
- multi-agent (Letta's AgentFileSchema, letta/schemas/agent_file.py): {"agents": [...], "groups",
  "blocks", "files", "sources", "tools", "mcp_servers", "metadata", "created_at"}; an agent names
  its blocks, tools and sources by file-local ids ("block_ids": ["block-0"], "tool_ids") and
  carries its own "messages" and "in_context_message_ids".

Messages in both are Letta's stored messages: "role", "content" (a list of parts such as
{"type": "text", "text": ...} or {"type": "reasoning", ...}, or a string), OpenAI-style
"tool_calls", "tool_call_id", "tool_returns", "created_at". What a person saw is recovered the way
Letta itself shows a conversation: a `send_message` call is the assistant's reply (and its tool
return is left out); the text of an assistant message is the reply only for `letta_v1_agent`
agents (for MemGPT-style agents it is the inner monologue); user messages packed as JSON
({"type": "user_message", "message": ...}) are unpacked, and the packed heartbeat, login and
system-alert events become system messages. Everything that has no place in Memex (tools and
their code, tool rules, model settings, sources, MCP servers, ...) is named in each agent's
`unmapped` notes rather than silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "LettaAgent",
    "LettaBlock",
    "LettaFormatError",
    "LettaMessage",
    "read_letta_agent_file",
]

Role = Literal["system", "user", "assistant", "tool"]

SEND_MESSAGE = "send_message"  # Letta's reply tool (DEFAULT_MESSAGE_TOOL) and its argument
SEND_MESSAGE_ARG = "message"
REPLY_TEXT_AGENT_TYPES = frozenset({"letta_v1_agent"})  # assistant text is the reply, not thoughts
REASONING_PARTS = frozenset(
    {"reasoning", "redacted_reasoning", "omitted_reasoning", "summarized_reasoning"}
)
HIDDEN_PREFIX = "[This is an automated system message hidden from the user]"
# keys of the single-agent layout, any one of which marks a document as a Letta agent
SINGLE_AGENT_KEYS = ("agent_type", "core_memory", "in_context_message_indices")
PASSAGE_KEYS = ("passages", "archival_memory", "archival_passages")


class LettaFormatError(ValueError):
    """The document is not a Letta agent file, or a part Memex needs is missing or of the wrong
    type; the message says what and where (a JSON path such as "blocks[2]")."""


@dataclass(frozen=True)
class LettaBlock:
    label: str
    value: str
    limit: int | None
    description: str
    read_only: bool


@dataclass(frozen=True)
class LettaMessage:
    role: Role
    text: str  # what a person would read
    created_at: datetime | None
    tool_call: dict[str, Any] | None  # {"tool": name, "arguments": {...}} for an assistant call


@dataclass(frozen=True)
class LettaAgent:
    name: str
    system: str
    blocks: list[LettaBlock]
    messages: list[LettaMessage]
    created_at: datetime | None
    unmapped: list[str]  # human-readable notes on what of this agent was not brought over


def read_letta_agent_file(data: dict[str, Any] | str) -> list[LettaAgent]:
    """Every agent in a parsed Letta agent file, in the file's order.

    `data` is the parsed JSON document. Some published .af files are JSON encoded twice (the
    document is a JSON string holding the JSON); such a string is decoded once more."""
    for _ in range(2):
        if not isinstance(data, str | bytes):
            break
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise LettaFormatError(f"not a Letta agent file: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LettaFormatError(
            f"not a Letta agent file: expected a JSON object at the top, got {_kind(data)}"
        )
    if "agents" in data:
        return _read_multi(data)
    if any(key in data for key in SINGLE_AGENT_KEYS):
        tools = data.get("tools") if isinstance(data.get("tools"), list) else []
        return [_read_agent(data, "", blocks=_single_blocks(data), tools=tools)]
    raise LettaFormatError(
        "not a Letta agent file: no 'agents' list and none of the single-agent fields "
        + ", ".join(repr(k) for k in SINGLE_AGENT_KEYS)
    )


# -- the two layouts ----------------------------------------------------------------------------


def _read_multi(doc: dict[str, Any]) -> list[LettaAgent]:
    agents = doc["agents"]
    if not isinstance(agents, list):
        raise LettaFormatError(f"agents: must be a list, got {_kind(agents)}")
    if not agents:
        raise LettaFormatError("agents: the file holds no agents")
    blocks_by_id = _by_id(doc, "blocks")
    tools_by_id = _by_id(doc, "tools", strict=False)
    parsed_blocks: dict[str, LettaBlock] = {}
    file_notes = _file_notes(doc)
    result = []
    for i, agent in enumerate(agents):
        path = f"agents[{i}]"
        if not isinstance(agent, dict):
            raise LettaFormatError(f"{path}: must be an object, got {_kind(agent)}")
        blocks = []
        for j, block_id in enumerate(_list(agent, "block_ids", path)):
            ref = f"{path}.block_ids[{j}]"
            if not isinstance(block_id, str) or block_id not in blocks_by_id:
                raise LettaFormatError(f"{ref}: no block with id {block_id!r} in 'blocks'")
            if block_id not in parsed_blocks:
                index, raw = blocks_by_id[block_id]
                parsed_blocks[block_id] = _block(raw, f"blocks[{index}]")
            blocks.append(parsed_blocks[block_id])
        for j, raw in enumerate(_list(agent, "memory_blocks", path)):  # inline blocks, rarely used
            blocks.append(_block(raw, f"{path}.memory_blocks[{j}]"))
        tool_ids = [t for t in _list(agent, "tool_ids", path) if isinstance(t, str)]
        tools = [tools_by_id[t][1] if t in tools_by_id else {"name": t} for t in tool_ids]
        tools += [t if isinstance(t, dict) else {"name": t} for t in _list(agent, "tools", path)]
        result.append(_read_agent(agent, path, blocks=blocks, tools=tools, file_notes=file_notes))
    return result


def _single_blocks(doc: dict[str, Any]) -> list[LettaBlock]:
    if doc.get("core_memory") is None and isinstance(doc.get("memory"), dict):
        return [
            _block(raw, f"memory.blocks[{j}]")
            for j, raw in enumerate(_list(doc["memory"], "blocks", "memory"))
        ]
    return [_block(raw, f"core_memory[{j}]") for j, raw in enumerate(_list(doc, "core_memory", ""))]


def _read_agent(
    agent: dict[str, Any],
    path: str,
    *,
    blocks: list[LettaBlock],
    tools: list[Any],
    file_notes: list[str] | None = None,
) -> LettaAgent:
    name = agent.get("name")
    if not isinstance(name, str) or not name.strip():
        raise LettaFormatError(f"{_join(path, 'name')}: must be non-empty text, got {_kind(name)}")
    system = agent.get("system")
    if system is None:
        system = ""
    if not isinstance(system, str):
        raise LettaFormatError(f"{_join(path, 'system')}: must be text, got {_kind(system)}")
    agent_type = agent.get("agent_type") if isinstance(agent.get("agent_type"), str) else None
    reader = _MessageReader(agent_type=agent_type, system=system)
    messages = reader.read(_list(agent, "messages", path), _join(path, "messages"))
    created_at = _when(agent.get("created_at"))
    if created_at is None:  # the multi-agent layout keeps no agent creation time
        created_at = reader.earliest
    notes = _agent_notes(agent, agent_type, tools) + reader.notes() + list(file_notes or [])
    return LettaAgent(
        name=name,
        system=system,
        blocks=blocks,
        messages=messages,
        created_at=created_at,
        unmapped=notes,
    )


def _block(raw: Any, path: str) -> LettaBlock:
    if not isinstance(raw, dict):
        raise LettaFormatError(f"{path}: a block must be an object, got {_kind(raw)}")
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip():
        raise LettaFormatError(f"{path}: 'label' must be non-empty text, got {_kind(label)}")
    value = raw.get("value")
    if not isinstance(value, str):
        raise LettaFormatError(f"{path}: 'value' must be text, got {_kind(value)}")
    limit = raw.get("limit")
    description = raw.get("description")
    return LettaBlock(
        label=label,
        value=value,
        limit=limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
        description=description if isinstance(description, str) else "",
        read_only=raw.get("read_only") is True,
    )


# -- messages -----------------------------------------------------------------------------------


class _MessageReader:
    """Turns one agent's Letta messages into what a person reads, counting what it leaves out."""

    def __init__(self, *, agent_type: str | None, system: str) -> None:
        self.agent_type = agent_type
        self.system = system.strip()
        self.reply_calls: set[str] = set()  # ids of send_message calls: their returns are noise
        self.thoughts = 0
        self.snapshots = 0
        self.images = 0
        self.approvals = 0
        self.other_roles: dict[str, int] = {}
        self.earliest: datetime | None = None  # of every message, the left-out ones too

    def read(self, raw: list[Any], path: str) -> list[LettaMessage]:
        order = list(enumerate(raw))
        seqs = [m.get("sequence_id") if isinstance(m, dict) else None for m in raw]
        if raw and all(isinstance(s, int) and not isinstance(s, bool) for s in seqs):
            order.sort(key=lambda pair: seqs[pair[0]])  # Letta's own order where the file has it
        out: list[LettaMessage] = []
        for i, msg in order:
            out.extend(self._message(msg, f"{path}[{i}]"))
        return out

    def _message(self, msg: Any, path: str) -> list[LettaMessage]:
        if not isinstance(msg, dict):
            raise LettaFormatError(f"{path}: a message must be an object, got {_kind(msg)}")
        role = msg.get("role")
        if not isinstance(role, str):
            raise LettaFormatError(f"{path}: 'role' must be text, got {_kind(role)}")
        when = _when(msg.get("created_at"))
        if when and (self.earliest is None or when < self.earliest):
            self.earliest = when
        parts = _parts(msg.get("content"), path)
        if role == "user":
            return [self._user(parts, when)]
        if role == "system":
            text = "\n".join(t for kind, t in parts if kind == "text")
            if self.system and text.lstrip().startswith(self.system):
                self.snapshots += 1  # the compiled prompt (system + blocks): imported separately
                return []
            return [LettaMessage("system", text, when, None)]
        if role == "summary":
            return [
                LettaMessage("system", "\n".join(t for k, t in parts if k == "text"), when, None)
            ]
        if role in ("assistant", "approval"):
            calls = _tool_calls(msg, path)
            if role == "approval" and not calls:
                self.approvals += 1  # a person's approve/deny answer to a tool call
                return []
            return self._assistant(parts, calls, when)
        if role == "tool":
            return self._tool(msg, parts, when, path)
        self.other_roles[role] = self.other_roles.get(role, 0) + 1
        return []

    def _user(self, parts: list[tuple[str, str]], when: datetime | None) -> LettaMessage:
        texts = []
        for kind, text in parts:
            if kind == "text":
                texts.append(text)
            elif kind == "image":
                self.images += 1
                texts.append("[image]")
        role, text = _unpack_user("\n".join(texts))
        return LettaMessage(role, text, when, None)

    def _assistant(
        self,
        parts: list[tuple[str, str]],
        calls: list[tuple[str | None, str, dict[str, Any]]],
        when: datetime | None,
    ) -> list[LettaMessage]:
        text_is_reply = self.agent_type in REPLY_TEXT_AGENT_TYPES or (
            self.agent_type is None and not calls
        )
        out: list[LettaMessage] = []
        reply = []
        for kind, text in parts:
            if kind == "reasoning" or (kind == "text" and not text_is_reply):
                if kind == "reasoning" or text.strip():
                    self.thoughts += 1
            elif kind == "text":
                reply.append(text)
            elif kind == "image":
                self.images += 1
        if "".join(reply).strip():
            out.append(LettaMessage("assistant", "".join(reply), when, None))
        for call_id, name, arguments in calls:
            if isinstance(arguments.get("inner_thoughts"), str):
                arguments = {k: v for k, v in arguments.items() if k != "inner_thoughts"}
                self.thoughts += 1
            if name == SEND_MESSAGE and isinstance(arguments.get(SEND_MESSAGE_ARG), str):
                if call_id:
                    self.reply_calls.add(call_id)
                out.append(LettaMessage("assistant", arguments[SEND_MESSAGE_ARG], when, None))
                continue
            call: dict[str, Any] = {"tool": name, "arguments": arguments}
            if isinstance(arguments.get("request_heartbeat"), bool):
                call["arguments"] = {k: v for k, v in arguments.items() if k != "request_heartbeat"}
                call["request_heartbeat"] = arguments["request_heartbeat"]
            out.append(LettaMessage("assistant", "", when, call))
        return out

    def _tool(
        self, msg: dict[str, Any], parts: list[tuple[str, str]], when: datetime | None, path: str
    ) -> list[LettaMessage]:
        top_id = msg.get("tool_call_id")
        returns = msg.get("tool_returns")
        results: list[tuple[Any, Any, Any]] = []  # (call id, response, status)
        if isinstance(returns, list) and returns:
            for j, ret in enumerate(returns):
                if not isinstance(ret, dict):
                    raise LettaFormatError(
                        f"{path}.tool_returns[{j}]: must be an object, got {_kind(ret)}"
                    )
                call_id = ret.get("tool_call_id") or top_id
                results.append((call_id, ret.get("func_response"), ret.get("status")))
        else:
            results.append((top_id, "\n".join(t for k, t in parts if k == "text"), None))
        out = []
        for call_id, response, status in results:
            if isinstance(call_id, str) and call_id in self.reply_calls:
                continue  # the "OK" a send_message call got back; Letta hides it too
            out.append(LettaMessage("tool", _tool_text(response, status), when, None))
        return out

    def notes(self) -> list[str]:
        notes = []
        if self.snapshots:
            notes.append(
                f"{self.snapshots} system message(s) holding Letta's compiled prompt (system "
                "prompt plus memory blocks) left out: the system prompt and blocks are imported "
                "on their own"
            )
        if self.thoughts:
            notes.append(
                f"{self.thoughts} inner thought(s) / reasoning part(s) of the assistant left out "
                "(never shown to the user)"
            )
        if self.images:
            notes.append(f"{self.images} image(s) in messages not imported (shown as [image])")
        if self.approvals:
            notes.append(f"{self.approvals} tool-approval answer(s) not imported")
        for role, count in sorted(self.other_roles.items()):
            notes.append(f"{count} message(s) with role {role!r} not imported")
        return notes


def _parts(content: Any, path: str) -> list[tuple[str, str]]:
    """A message's content as (kind, text) pairs: kind "text", "reasoning", "image" or "other"."""
    if content is None:
        return []
    if isinstance(content, str):
        return [("text", content)]
    if not isinstance(content, list):
        raise LettaFormatError(
            f"{path}: 'content' must be text or a list of parts, got {_kind(content)}"
        )
    out = []
    for j, part in enumerate(content):
        where = f"{path}.content[{j}]"
        if isinstance(part, str):
            out.append(("text", part))
            continue
        if not isinstance(part, dict):
            raise LettaFormatError(f"{where}: a content part must be an object, got {_kind(part)}")
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise LettaFormatError(f"{where}: 'text' must be text, got {_kind(text)}")
            out.append(("text", text))
        elif kind in REASONING_PARTS:
            reasoning = part.get("reasoning")
            out.append(("reasoning", reasoning if isinstance(reasoning, str) else ""))
        elif kind == "image":
            out.append(("image", ""))
        else:  # tool_call / tool_return parts duplicate tool_calls / tool_returns; others unknown
            out.append(("other", ""))
    return out


def _tool_calls(msg: dict[str, Any], path: str) -> list[tuple[str | None, str, dict[str, Any]]]:
    raw = msg.get("tool_calls")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise LettaFormatError(f"{path}: 'tool_calls' must be a list, got {_kind(raw)}")
    calls = []
    for j, call in enumerate(raw):
        where = f"{path}.tool_calls[{j}]"
        if not isinstance(call, dict):
            raise LettaFormatError(f"{where}: a tool call must be an object, got {_kind(call)}")
        function = call.get("function")
        if not isinstance(function, dict):
            raise LettaFormatError(f"{where}: 'function' must be an object, got {_kind(function)}")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise LettaFormatError(f"{where}.function: 'name' must be text, got {_kind(name)}")
        call_id = call.get("id") if isinstance(call.get("id"), str) else None
        calls.append((call_id, name, _arguments(function.get("arguments"))))
    return calls


def _arguments(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return {"_unparsed": raw}
        return value if isinstance(value, dict) else {"value": value}
    return {"value": raw}


def _unpack_user(text: str) -> tuple[Role, str]:
    """Letta (MemGPT) packs what reaches the agent as JSON in a user message; unpack it."""
    if not text.lstrip().startswith("{"):
        return "user", text
    try:
        packed = json.loads(text)
    except ValueError:
        return "user", text
    if not isinstance(packed, dict):
        return "user", text
    kind = packed.get("type")
    message = packed.get("message")
    if kind == "user_message" and isinstance(message, str):
        return "user", message
    if kind == "heartbeat":
        reason = packed.get("reason")
        reason = reason.replace(HIDDEN_PREFIX, "").strip() if isinstance(reason, str) else ""
        return "system", f"Heartbeat: {reason}" if reason else "Heartbeat"
    if kind == "login":
        last = packed.get("last_login")
        return (
            "system",
            f"The user logged in (last login: {last})" if last else "The user logged in",
        )
    if kind == "system_alert" and isinstance(message, str):
        return "system", f"System alert: {message}"
    return "user", text


def _tool_text(response: Any, status: Any) -> str:
    """A tool return as a person reads it: the "message" of Letta's packed
    {"status", "message", "time"} result, or the text as it is."""
    if isinstance(response, list):  # multi-modal return: its text parts
        text = "\n".join(
            p.get("text", "") for p in response if isinstance(p, dict) and p.get("type") == "text"
        )
    elif response is None:
        text = ""
    else:
        text = response if isinstance(response, str) else json.dumps(response)
        try:
            packed = json.loads(text)
        except ValueError:
            packed = None
        if isinstance(packed, dict) and "message" in packed:
            status = status or packed.get("status")
            message = packed["message"]
            if message is None or message == "None":  # Letta's "nothing to say": read the status
                return "Failed" if status in ("Failed", "error") else "OK"
            text = message if isinstance(message, str) else json.dumps(message)
    if status in ("Failed", "error"):
        return f"Failed: {text}" if text else "Failed"
    return text


# -- what is left behind ------------------------------------------------------------------------


def _agent_notes(agent: dict[str, Any], agent_type: str | None, tools: list[Any]) -> list[str]:
    notes = []
    if agent_type:
        notes.append(f"agent type {agent_type!r} (Letta's agent loop; Memex runs its own)")
    description = agent.get("description")
    if isinstance(description, str) and description.strip():
        notes.append(f"description: {_short(description)}")
    llm = agent.get("llm_config")
    if isinstance(llm, dict):
        model = llm.get("handle") or llm.get("model") or "?"
        window = llm.get("context_window")
        notes.append(
            f"LLM settings (model {model}" + (f", context window {window}" if window else "") + ")"
        )
    embedding = agent.get("embedding_config")
    if isinstance(embedding, dict):
        notes.append(f"embedding settings (model {embedding.get('embedding_model') or '?'})")
    names = [t.get("name") for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
    if names:
        notes.append(f"{len(names)} tool(s): {', '.join(names)} (Memex has its own tools)")
    coded = [
        t["name"]
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("name"), str) and t.get("source_code")
    ]
    if coded:
        notes.append(f"source code of {len(coded)} custom tool(s): {', '.join(coded)}")
    for key, what in (
        ("tool_rules", "tool rule(s)"),
        ("tags", "tag(s)"),
        ("tool_exec_environment_variables", "tool environment variable(s)"),
        ("secrets", "secret(s)"),
        ("source_ids", "attached data source(s)"),
        ("folder_ids", "attached folder(s)"),
        ("files_agents", "open file(s)"),
        ("group_ids", "multi-agent group membership(s)"),
        ("identity_ids", "identity link(s)"),
    ):
        count = _count(agent.get(key))
        if count:
            notes.append(f"{count} {what}")
    if agent.get("multi_agent_group"):
        notes.append("multi-agent group settings")
    if agent.get("enable_sleeptime") is True:
        notes.append("sleep-time agent setting")
    if "in_context_message_ids" in agent or "in_context_message_indices" in agent:
        notes.append(
            "which messages were in Letta's context window (all messages come over as history)"
        )
    passages = sum(_count(agent.get(key)) for key in PASSAGE_KEYS)
    if passages:
        notes.append(f"{passages} archival passage(s) and their embeddings")
    else:
        notes.append("archival memory: the file carries no archival passages")
    return notes


def _file_notes(doc: dict[str, Any]) -> list[str]:
    """What the multi-agent layout holds beside the agents (named on every agent)."""
    notes = []
    for key, what in (
        ("mcp_servers", "MCP server(s)"),
        ("groups", "multi-agent group(s)"),
        ("sources", "data source(s)"),
        ("files", "file(s) of data sources"),
    ):
        items = doc.get(key)
        count = _count(items)
        if count:
            names = [
                str(i.get("server_name") or i.get("name") or i.get("file_name"))
                for i in items
                if isinstance(i, dict)
                and (i.get("server_name") or i.get("name") or i.get("file_name"))
            ]
            listed = f": {', '.join(names)}" if names and len(names) <= 10 else ""
            notes.append(f"file: {count} {what}{listed}")
    passages = sum(_count(doc.get(key)) for key in PASSAGE_KEYS)
    if passages:
        notes.append(f"file: {passages} archival passage(s) and their embeddings")
    return notes


# -- small helpers ------------------------------------------------------------------------------


def _by_id(doc: dict[str, Any], key: str, *, strict: bool = True) -> dict[str, tuple[int, Any]]:
    """The objects of the list doc[key] by their file-local "id", with their index. Strict: a
    missing list is empty and a non-object item is an error; lenient: both are ignored."""
    if not strict and not isinstance(doc.get(key), list):
        return {}
    out: dict[str, tuple[int, Any]] = {}
    for i, item in enumerate(_list(doc, key, "")):
        if not isinstance(item, dict):
            if not strict:
                continue
            raise LettaFormatError(f"{key}[{i}]: must be an object, got {_kind(item)}")
        if isinstance(item.get("id"), str):
            out[item["id"]] = (i, item)
    return out


def _list(obj: dict[str, Any], key: str, path: str) -> list[Any]:
    """obj[key] as a list: missing or null is empty, anything else than a list is an error."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise LettaFormatError(f"{_join(path, key)}: must be a list, got {_kind(value)}")
    return value


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | dict) else 0


def _when(value: Any) -> datetime | None:
    """An ISO timestamp; Letta's naive ones (older files) are UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text" if value.strip() else "empty text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
