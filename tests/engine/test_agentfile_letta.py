"""Reading Letta agent files (.af): both layouts, a trimmed real file, and malformed input.

The hand-written documents copy the structure of real files of letta-ai/agent-file: the
single-agent layout of memgpt_agent/memgpt_agent_with_convo.af (April 2025, Letta 0.6.47) and the
multi-agent layout of memgpt_agent.af, customer_service.af and agents/@letta-ai/loop/loop.af
(Letta's AgentFileSchema), trimmed to what each test needs. data/letta_memgpt_agent.af is
memgpt_agent_with_convo.af itself, trimmed (see test_real_file_...).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.agentfile_letta import (
    LettaAgent,
    LettaBlock,
    LettaFormatError,
    LettaMessage,
    read_letta_agent_file,
)

DATA = Path(__file__).parent / "data"
BASE = "You are Letta, the latest version of Limnal Corporation's digital companion."


def ok_return(time: str) -> str:
    return json.dumps({"status": "OK", "message": "None", "time": time}, indent=2)


def packed_user(text: str) -> str:
    return json.dumps(
        {"type": "user_message", "message": text, "time": "2025-03-31 08:51:08 PM PDT-0700"},
        indent=2,
    )


def v1_message(created: str, role: str, text: str, **extra: Any) -> dict[str, Any]:
    message = {
        "created_at": created,
        "group_id": None,
        "model": "gpt-4-0613",
        "name": None,
        "role": role,
        "content": [{"type": "text", "text": text}],
        "tool_call_id": None,
        "tool_calls": [],
        "tool_returns": [],
        "updated_at": created[:19],
    }
    message.update(extra)
    return message


def call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "function": {"arguments": json.dumps(arguments, indent=2), "name": name},
        "type": "function",
    }


def single_agent_doc() -> dict[str, Any]:
    """The single-agent layout (memgpt_agent_with_convo.af), trimmed."""
    return {
        "agent_type": "memgpt_agent",
        "core_memory": [
            {
                "created_at": "2025-04-01T03:47:27",
                "description": None,
                "is_template": False,
                "label": "persona",
                "limit": 5000,
                "metadata_": {},
                "template_name": None,
                "updated_at": "2025-04-01T03:52:02.091007",
                "value": "\nI am BigChungus.\n",
            },
            {
                "created_at": "2025-04-01T03:47:27",
                "description": None,
                "is_template": False,
                "label": "human",
                "limit": 5000,
                "metadata_": {},
                "template_name": None,
                "updated_at": "2025-04-01T03:57:37.273860",
                "value": "\nFirst name: Sam\n",
            },
        ],
        "created_at": "2025-04-01T03:47:27",
        "description": "A simple MemGPT agent from the original project release",
        "embedding_config": {"embedding_model": "text-embedding-ada-002", "embedding_dim": 1536},
        "llm_config": {
            "model": "gpt-4-0613",
            "context_window": 8192,
            "put_inner_thoughts_in_kwargs": True,
            "handle": "openai/gpt-4-june",
        },
        "message_buffer_autoclear": False,
        "in_context_message_indices": [0, 1, 2, 3, 4, 5, 6, 7, 8],
        "messages": [
            v1_message(
                "2025-04-01T03:47:27.492924",
                "system",
                BASE + "\n### Memory [last modified: 2025-03-31 08:47:27 PM PDT-0700]\n...",
            ),
            v1_message(
                "2025-04-01T03:47:27.492966",
                "assistant",
                "Bootup sequence complete. Persona activated. Testing messaging functionality.",
                tool_calls=[call("7877", "send_message", {"message": "More human than human."})],
            ),
            v1_message(
                "2025-04-01T03:47:27.492997",
                "tool",
                json.dumps({"status": "OK", "message": None, "time": "..."}, indent=2),
                tool_call_id="7877",
            ),
            v1_message(
                "2025-04-01T03:47:27.493017",
                "user",
                json.dumps(
                    {"type": "login", "last_login": "Never (first login)", "time": "..."}, indent=2
                ),
            ),
            v1_message(
                "2025-04-01T03:51:08.745024",
                "user",
                packed_user("hi my name is actually sarah not chad "),
                model=None,
            ),
            v1_message(
                "2025-04-01T03:51:11.615592",
                "assistant",
                "The user has corrected their name. Updating core memory.",
                name="memgpt_agent",
                tool_calls=[
                    call(
                        "c7c4",
                        "core_memory_replace",
                        {
                            "label": "human",
                            "old_content": "First name: Chad",
                            "new_content": "First name: Sarah",
                            "request_heartbeat": True,
                        },
                    )
                ],
            ),
            v1_message(
                "2025-04-01T03:51:11.699136",
                "tool",
                ok_return("2025-03-31 08:51:11 PM PDT-0700"),
                tool_call_id="c7c4",
            ),
            v1_message(
                "2025-04-01T03:51:11.745048",
                "user",
                json.dumps(
                    {
                        "type": "heartbeat",
                        "reason": "[This is an automated system message hidden from the user] "
                        "Function called using request_heartbeat=true, returning control",
                        "time": "2025-03-31 08:51:11 PM PDT-0700",
                    },
                    indent=2,
                ),
            ),
            v1_message(
                "2025-04-01T03:51:14.576989",
                "assistant",
                "I've updated the user's name in my core memory.",
                tool_calls=[
                    call(
                        "4837",
                        "send_message",
                        {
                            "message": "Apologies for the confusion, Sarah.",
                            "request_heartbeat": False,
                        },
                    )
                ],
            ),
            v1_message("2025-04-01T03:51:14.587779", "tool", ok_return("..."), tool_call_id="4837"),
        ],
        "metadata_": None,
        "multi_agent_group": None,
        "name": "memgpt_agent",
        "system": BASE,
        "tags": [],
        "tool_exec_environment_variables": [],
        "tool_rules": [
            {"tool_name": "conversation_search", "type": "continue_loop"},
            {"tool_name": "send_message", "type": "exit_loop"},
        ],
        "tools": [
            {"name": "send_message", "source_code": None, "tool_type": "letta_core"},
            {"name": "core_memory_replace", "source_code": None, "tool_type": "letta_memory_core"},
        ],
        "updated_at": "2025-04-01T03:57:37.395846",
        "version": "0.6.47",
    }


def v2_message(mid: str, role: str, content: Any, created: str, **extra: Any) -> dict[str, Any]:
    message = {
        "type": "message",
        "role": role,
        "content": content,
        "name": None,
        "otid": None,
        "sender_id": None,
        "batch_item_id": None,
        "group_id": None,
        "id": mid,
        "model": "claude-opus-4-5-20251101",
        "agent_id": "agent-0",
        "tool_calls": None,
        "tool_call_id": None,
        "tool_returns": [],
        "created_at": created,
        "approve": None,
        "approval_request_id": None,
        "denial_reason": None,
        "approvals": [],
    }
    message.update(extra)
    return message


def text(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": value, "signature": None}]


def block(block_id: str, label: str, value: str, **extra: Any) -> dict[str, Any]:
    data = {
        "value": value,
        "limit": 20000,
        "project_id": None,
        "template_name": None,
        "is_template": False,
        "preserve_on_migration": False,
        "label": label,
        "read_only": False,
        "description": None,
        "metadata": {},
        "hidden": None,
        "id": block_id,
    }
    data.update(extra)
    return data


def multi_agent_doc() -> dict[str, Any]:
    """The multi-agent layout (loop.af, customer_service.af), trimmed, with one conversation."""
    system = "You are Loop. You remember."
    returned = json.dumps({"status": "OK", "message": "Order 42 is currently processing."})
    return {
        "agents": [
            {
                "name": "Loop",
                "memory_blocks": [],
                "tools": [],
                "tool_ids": ["tool-0", "tool-1"],
                "source_ids": [],
                "folder_ids": None,
                "block_ids": ["block-1", "block-0"],
                "tool_rules": [],
                "tags": ["origin:letta-chat"],
                "system": system,
                "agent_type": "letta_v1_agent",
                "description": "I'm Loop. I remember.",
                "llm_config": {"model": "claude-opus-4-5-20251101", "context_window": 90000},
                "embedding_config": {"embedding_model": "text-embedding-3-small"},
                "tool_exec_environment_variables": {},
                "timezone": "UTC",
                "id": "agent-0",
                "in_context_message_ids": ["message-0", "message-1", "message-2"],
                "messages": [
                    v2_message(
                        "message-0",
                        "system",
                        text(system + "\n\n<memory_blocks>\n...\n</memory_blocks>"),
                        "2026-01-06T02:05:49.731069+00:00",
                    ),
                    v2_message(
                        "message-1",
                        "assistant",
                        [],
                        "2026-01-06T02:05:49.731452+00:00",
                        tool_calls=[
                            {
                                "id": "5797",
                                "function": {
                                    "arguments": '{"message": "I\'m Loop. I remember. '
                                    "What's on your mind?\"}",
                                    "name": "send_message",
                                },
                                "type": "function",
                            }
                        ],
                    ),
                    v2_message(
                        "message-2",
                        "tool",
                        text(ok_return("2026-01-06 02:05:49 AM UTC+0000")),
                        "2026-01-06T02:05:49.731602+00:00",
                        tool_call_id="5797",
                        tool_returns=[
                            {
                                "tool_call_id": "5797",
                                "status": "success",
                                "stdout": None,
                                "stderr": None,
                                "func_response": ok_return("2026-01-06 02:05:49 AM UTC+0000"),
                            }
                        ],
                    ),
                    v2_message(
                        "message-3", "user", text("Where is order 42?"), "2026-01-06T02:06:10Z"
                    ),
                    v2_message(
                        "message-4",
                        "assistant",
                        [
                            {
                                "type": "reasoning",
                                "is_native": True,
                                "reasoning": "They want the order status.",
                                "signature": "sig",
                            },
                            {"type": "text", "text": "Checking.", "signature": None},
                        ],
                        "2026-01-06T02:06:12+00:00",
                        tool_calls=[
                            {
                                "id": "call-1",
                                "function": {
                                    "arguments": '{"order_number": 42}',
                                    "name": "check_order_status",
                                },
                                "type": "function",
                            }
                        ],
                    ),
                    v2_message(
                        "message-5",
                        "tool",
                        text(returned),
                        "2026-01-06T02:06:13+00:00",
                        tool_call_id="call-1",
                        tool_returns=[
                            {
                                "tool_call_id": "call-1",
                                "status": "success",
                                "func_response": returned,
                            }
                        ],
                    ),
                    v2_message(
                        "message-6",
                        "assistant",
                        text("Order 42 is still processing."),
                        "2026-01-06T02:06:15+00:00",
                    ),
                ],
                "files_agents": [],
                "group_ids": [],
            }
        ],
        "groups": [],
        "blocks": [
            block("block-0", "about_user", "Name: [unknown]"),
            block(
                "block-1",
                "persona",
                "I'm Loop. I persist.",
                description="The persona block: Stores details about your current persona.",
                read_only=True,
            ),
        ],
        "files": [],
        "sources": [],
        "tools": [
            {
                "id": "tool-0",
                "tool_type": "custom",
                "name": "check_order_status",
                "source_code": "def check_order_status(order_number: int):\n    ...\n",
                "json_schema": {"name": "check_order_status"},
            },
            {
                "id": "tool-1",
                "tool_type": "letta_core",
                "name": "send_message",
                "source_code": None,
            },
        ],
        "mcp_servers": [
            {"id": "mcp_server-0", "server_type": "sse", "server_name": "github", "server_url": "x"}
        ],
        "metadata": {"revision_id": "abc"},
        "created_at": "2026-01-06T02:10:00+00:00",
    }


# -- the single-agent layout --------------------------------------------------------------------


def test_single_agent_layout_reads_blocks_and_what_a_person_saw() -> None:
    [agent] = read_letta_agent_file(single_agent_doc())
    assert isinstance(agent, LettaAgent)
    assert agent.name == "memgpt_agent"
    assert agent.system == BASE
    assert agent.created_at == datetime(2025, 4, 1, 3, 47, 27, tzinfo=UTC)
    assert agent.blocks == [
        LettaBlock("persona", "\nI am BigChungus.\n", 5000, "", False),
        LettaBlock("human", "\nFirst name: Sam\n", 5000, "", False),
    ]
    assert [(m.role, m.text) for m in agent.messages] == [
        ("assistant", "More human than human."),
        ("system", "The user logged in (last login: Never (first login))"),
        ("user", "hi my name is actually sarah not chad "),
        ("assistant", ""),
        ("tool", "OK"),
        ("system", "Heartbeat: Function called using request_heartbeat=true, returning control"),
        ("assistant", "Apologies for the confusion, Sarah."),
    ]
    memory_call = agent.messages[3].tool_call
    assert memory_call == {
        "tool": "core_memory_replace",
        "arguments": {
            "label": "human",
            "old_content": "First name: Chad",
            "new_content": "First name: Sarah",
        },
        "request_heartbeat": True,
    }
    assert all(m.tool_call is None for m in agent.messages if m is not agent.messages[3])
    assert agent.messages[2].created_at == datetime(2025, 4, 1, 3, 51, 8, 745024, tzinfo=UTC)


def test_single_agent_layout_leaves_out_inner_thoughts_and_names_what_it_drops() -> None:
    [agent] = read_letta_agent_file(single_agent_doc())
    everything = " ".join(m.text for m in agent.messages)
    assert "Bootup sequence complete" not in everything  # MemGPT's inner monologue
    assert "Updating core memory" not in everything
    assert BASE not in everything  # the compiled system prompt message is not a chat message
    notes = "\n".join(agent.unmapped)
    for expected in (
        "agent type 'memgpt_agent'",
        "LLM settings (model openai/gpt-4-june, context window 8192)",
        "embedding settings (model text-embedding-ada-002)",
        "2 tool(s): send_message, core_memory_replace",
        "2 tool rule(s)",
        "context window",
        "archival memory",
        "3 inner thought(s)",
        "1 system message(s) holding Letta's compiled prompt",
        "description: 'A simple MemGPT agent from the original project release'",
    ):
        assert expected in notes, expected


def test_inner_thoughts_in_tool_arguments_are_left_out() -> None:
    doc = single_agent_doc()
    doc["messages"] = [
        v1_message(
            "2025-04-01T03:51:14",
            "assistant",
            "",
            tool_calls=[
                call("a", "send_message", {"inner_thoughts": "Be nice.", "message": "Hello!"}),
                call("b", "conversation_search", {"inner_thoughts": "Look.", "query": "ice cream"}),
            ],
        )
    ]
    [agent] = read_letta_agent_file(doc)
    assert [(m.role, m.text, m.tool_call) for m in agent.messages] == [
        ("assistant", "Hello!", None),
        ("assistant", "", {"tool": "conversation_search", "arguments": {"query": "ice cream"}}),
    ]
    assert any("2 inner thought(s)" in note for note in agent.unmapped)


# -- the multi-agent layout ---------------------------------------------------------------------


def test_multi_agent_layout_resolves_blocks_by_id_in_the_agents_order() -> None:
    [agent] = read_letta_agent_file(multi_agent_doc())
    assert agent.name == "Loop"
    assert agent.system == "You are Loop. You remember."
    assert agent.blocks == [
        LettaBlock(
            "persona",
            "I'm Loop. I persist.",
            20000,
            "The persona block: Stores details about your current persona.",
            True,
        ),
        LettaBlock("about_user", "Name: [unknown]", 20000, "", False),
    ]
    # no agent creation time in this layout: the first message's
    assert agent.created_at == datetime(2026, 1, 6, 2, 5, 49, 731069, tzinfo=UTC)


def test_multi_agent_layout_messages_reply_text_tool_calls_and_returns() -> None:
    [agent] = read_letta_agent_file(multi_agent_doc())
    assert agent.messages == [
        LettaMessage(
            "assistant",
            "I'm Loop. I remember. What's on your mind?",
            datetime(2026, 1, 6, 2, 5, 49, 731452, tzinfo=UTC),
            None,
        ),
        LettaMessage(
            "user", "Where is order 42?", datetime(2026, 1, 6, 2, 6, 10, tzinfo=UTC), None
        ),
        # letta_v1_agent: the text is the reply; the reasoning part is not
        LettaMessage("assistant", "Checking.", datetime(2026, 1, 6, 2, 6, 12, tzinfo=UTC), None),
        LettaMessage(
            "assistant",
            "",
            datetime(2026, 1, 6, 2, 6, 12, tzinfo=UTC),
            {"tool": "check_order_status", "arguments": {"order_number": 42}},
        ),
        LettaMessage(
            "tool",
            "Order 42 is currently processing.",
            datetime(2026, 1, 6, 2, 6, 13, tzinfo=UTC),
            None,
        ),
        LettaMessage(
            "assistant",
            "Order 42 is still processing.",
            datetime(2026, 1, 6, 2, 6, 15, tzinfo=UTC),
            None,
        ),
    ]
    assert "They want the order status." not in " ".join(m.text for m in agent.messages)


def test_multi_agent_layout_names_tools_code_and_file_level_parts() -> None:
    [agent] = read_letta_agent_file(multi_agent_doc())
    notes = "\n".join(agent.unmapped)
    for expected in (
        "agent type 'letta_v1_agent'",
        "2 tool(s): check_order_status, send_message",
        "source code of 1 custom tool(s): check_order_status",
        "1 tag(s)",
        "file: 1 MCP server(s): github",
        "1 inner thought(s) / reasoning part(s)",
        "archival memory: the file carries no archival passages",
    ):
        assert expected in notes, expected


def test_every_agent_of_a_file_is_read_and_shared_blocks_are_shared() -> None:
    doc = multi_agent_doc()
    second = copy.deepcopy(doc["agents"][0])
    second.update(name="Sleeper", id="agent-1", block_ids=["block-0"], messages=[])
    doc["agents"].append(second)
    agents = read_letta_agent_file(doc)
    assert [a.name for a in agents] == ["Loop", "Sleeper"]
    assert agents[1].blocks == [agents[0].blocks[1]]
    assert agents[1].messages == [] and agents[1].created_at is None


def test_unknown_fields_roles_and_parts_do_not_break_reading() -> None:
    doc = multi_agent_doc()
    doc["future_section"] = {"anything": [1, 2]}
    agent = doc["agents"][0]
    agent["brand_new_setting"] = True
    agent["messages"][3]["content"].append({"type": "image", "source": {"type": "base64"}})
    agent["messages"][3]["mystery"] = {"x": 1}
    agent["messages"].append(v2_message("message-7", "approval", [], "2026-01-06T02:07:00Z"))
    agent["messages"].append(v2_message("message-8", "telepathy", text("?"), "2026-01-06T02:08Z"))
    doc["blocks"][0]["unheard_of"] = "value"
    [read] = read_letta_agent_file(doc)
    assert read.messages[1].text == "Where is order 42?\n[image]"
    notes = "\n".join(read.unmapped)
    assert "1 image(s)" in notes
    assert "1 tool-approval answer(s)" in notes
    assert "1 message(s) with role 'telepathy'" in notes


def test_a_string_content_and_a_json_document_encoded_twice_are_read() -> None:
    doc = multi_agent_doc()
    doc["agents"][0]["messages"][3]["content"] = "Where is order 42?"
    [agent] = read_letta_agent_file(json.dumps(json.dumps(doc)))
    assert agent.messages[1] == LettaMessage(
        "user", "Where is order 42?", datetime(2026, 1, 6, 2, 6, 10, tzinfo=UTC), None
    )


def test_messages_follow_letta_sequence_ids_where_the_file_has_them() -> None:
    doc = multi_agent_doc()
    messages = doc["agents"][0]["messages"]
    user, reply = messages[3], messages[6]
    user["sequence_id"], reply["sequence_id"] = 2, 1
    doc["agents"][0]["messages"] = [user, reply]
    [agent] = read_letta_agent_file(doc)
    assert [m.text for m in agent.messages] == [
        "Order 42 is still processing.",
        "Where is order 42?",
    ]


def test_a_failed_tool_return_says_so() -> None:
    doc = multi_agent_doc()
    failed = json.dumps({"status": "Failed", "message": "Error: no such order", "time": "..."})
    doc["agents"][0]["messages"][5]["tool_returns"] = [
        {"tool_call_id": "call-1", "status": "error", "func_response": failed}
    ]
    [agent] = read_letta_agent_file(doc)
    assert agent.messages[4].role == "tool"
    assert agent.messages[4].text == "Failed: Error: no such order"


# -- a real file --------------------------------------------------------------------------------


def test_real_file_memgpt_agent_with_convo_reads() -> None:
    """letta-ai/agent-file memgpt_agent/memgpt_agent_with_convo.af (single-agent layout, Letta
    0.6.47), trimmed to 35 KB: the repeated compiled-prompt system messages and the middle of
    the conversation are cut, the rest is the file's own text."""
    path = DATA / "letta_memgpt_agent.af"
    assert path.stat().st_size < 40_000
    [agent] = read_letta_agent_file(json.loads(path.read_text(encoding="utf-8")))
    assert agent.name == "memgpt_agent"
    assert agent.system.startswith("You are Letta, the latest version of Limnal Corporation's")
    assert agent.system.endswith("From now on, you are going to act as your persona.")
    labels = {b.label: b for b in agent.blocks}
    assert list(labels) == ["persona", "human"]
    assert "I am BigChungus." in labels["persona"].value
    assert "First name: Sam" in labels["human"].value
    assert "Sailing partner: Jean-Luc" in labels["human"].value
    assert {b.limit for b in agent.blocks} == {5000}
    assert len(agent.messages) == 21
    first_user = next(m for m in agent.messages if m.role == "user")
    assert first_user.text == "hi my name is actually sarah not chad "
    assert first_user.created_at == datetime(2025, 4, 1, 3, 51, 8, 745024, tzinfo=UTC)
    assert agent.messages[0] == LettaMessage(
        "assistant",
        "More human than human is our motto.",
        datetime(2025, 4, 1, 3, 47, 27, 492966, tzinfo=UTC),
        None,
    )
    roles = [m.role for m in agent.messages]
    assert roles.count("user") == 7 and roles.count("system") == 3 and roles.count("tool") == 2
    summary = next(m for m in agent.messages if m.text.startswith("System alert:"))
    assert "suggested I change my name to BigChungus" in summary.text
    calls = [m.tool_call["tool"] for m in agent.messages if m.tool_call]
    assert calls == ["core_memory_replace"] * 3
    assert any("6 tool(s)" in note for note in agent.unmapped)


# -- malformed input ----------------------------------------------------------------------------


def _error(data: Any) -> str:
    with pytest.raises(LettaFormatError) as caught:
        read_letta_agent_file(data)
    return str(caught.value)


def test_what_is_not_a_letta_agent_file_is_refused() -> None:
    assert "expected a JSON object" in _error([{"name": "x"}])
    assert "not JSON" in _error("{not json")
    message = _error({"name": "x", "messages": []})
    assert "no 'agents' list" in message and "'core_memory'" in message
    assert _error({"agents": {"name": "x"}}) == "agents: must be a list, got an object"
    assert _error({"agents": []}) == "agents: the file holds no agents"
    assert isinstance(LettaFormatError("x"), ValueError)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d["blocks"][1].update(value=None), "blocks[1]: 'value' must be text, got null"),
        (lambda d: d["blocks"][0].pop("label"), "blocks[0]: 'label' must be non-empty text"),
        (lambda d: d["blocks"].append("block-9"), "blocks[2]: must be an object, got text"),
        (
            lambda d: d["agents"][0]["block_ids"].append("block-9"),
            "agents[0].block_ids[2]: no block with id 'block-9' in 'blocks'",
        ),
        (lambda d: d["agents"][0].pop("name"), "agents[0].name: must be non-empty text, got null"),
        (lambda d: d["agents"][0].update(system=["x"]), "agents[0].system: must be text"),
        (lambda d: d["agents"][0].update(messages="hi"), "agents[0].messages: must be a list"),
        (lambda d: d["agents"].append(3), "agents[1]: must be an object, got a number"),
        (
            lambda d: d["agents"][0]["messages"][3].pop("role"),
            "agents[0].messages[3]: 'role' must be text, got null",
        ),
        (
            lambda d: d["agents"][0]["messages"][3]["content"][0].update(text=7),
            "agents[0].messages[3].content[0]: 'text' must be text, got a number",
        ),
        (
            lambda d: d["agents"][0]["messages"][4].update(content=5),
            "agents[0].messages[4]: 'content' must be text or a list of parts",
        ),
        (
            lambda d: d["agents"][0]["messages"][4]["tool_calls"][0].update(function=None),
            "agents[0].messages[4].tool_calls[0]: 'function' must be an object",
        ),
        (
            lambda d: d["agents"][0]["messages"][4]["tool_calls"][0]["function"].pop("name"),
            "agents[0].messages[4].tool_calls[0].function: 'name' must be text",
        ),
    ],
)
def test_malformed_multi_agent_file_names_the_broken_part(breakage: Any, expected: str) -> None:
    doc = multi_agent_doc()
    breakage(doc)
    assert _error(doc).startswith(expected)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d["core_memory"][1].update(value=3), "core_memory[1]: 'value' must be text"),
        (lambda d: d["core_memory"][0].update(label=""), "core_memory[0]: 'label' must be"),
        (lambda d: d.update(core_memory={"persona": "x"}), "core_memory: must be a list"),
        (lambda d: d.update(name=None), "name: must be non-empty text, got null"),
        (lambda d: d["messages"].insert(2, "hello"), "messages[2]: a message must be an object"),
        (lambda d: d["messages"][2].update(tool_returns=["x"]), "messages[2].tool_returns[0]"),
        (lambda d: d["messages"][1].update(tool_calls="x"), "messages[1]: 'tool_calls' must be"),
    ],
)
def test_malformed_single_agent_file_names_the_broken_part(breakage: Any, expected: str) -> None:
    doc = single_agent_doc()
    breakage(doc)
    assert _error(doc).startswith(expected)


def test_lenient_where_memex_does_not_need_the_part() -> None:
    doc = multi_agent_doc()
    doc["blocks"][0].update(limit="big", description=5, read_only="yes")
    doc["tools"] = "not a list"
    doc["agents"][0]["messages"][3]["created_at"] = "yesterday"
    doc["agents"][0]["messages"][4]["tool_calls"][0]["function"]["arguments"] = "{oops"
    [agent] = read_letta_agent_file(doc)
    assert agent.blocks[1] == LettaBlock("about_user", "Name: [unknown]", None, "", False)
    assert agent.messages[1].created_at is None
    assert agent.messages[3].tool_call == {
        "tool": "check_order_status",
        "arguments": {"_unparsed": "{oops"},
    }
