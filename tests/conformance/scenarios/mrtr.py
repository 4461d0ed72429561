"""The ``input-required-result-*`` scenarios (SEP-2322, 2026-07-28 multi-round trips).

Each tool answers its first round with an ``InputRequiredResult`` and completes
once the client retries with the answers. ``requestState`` is sealed and
verified by the SDK's ``RequestStateBoundary`` (a tampered echo is -32602
before any handler runs); the tools here only see the plaintext they minted.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage

NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def elicit(message: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "elicitation/create",
        "params": {"message": message, "requestedSchema": schema},
    }


def sample(text: str, max_tokens: int) -> dict[str, Any]:
    return {
        "method": "sampling/createMessage",
        "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
            "maxTokens": max_tokens,
        },
    }


ROOTS: dict[str, Any] = {"method": "roots/list", "params": {}}


def ask(requests: dict[str, Any], state: str | None = None) -> types.InputRequiredResult:
    body: dict[str, Any] = {"resultType": "input_required", "inputRequests": requests}
    if state is not None:
        body["requestState"] = state
    return types.InputRequiredResult.model_validate(body)


def answers(ctx: Context) -> dict[str, Any]:
    """The client's answers as wire dicts, keyed as asked."""
    return {
        key: value.model_dump(mode="json", by_alias=True, exclude_none=True)
        for key, value in (ctx.input_responses or {}).items()
    }


def elicited(answer: dict[str, Any] | None, field: str) -> Any:
    if not answer or answer.get("action") != "accept":
        return None
    return (answer.get("content") or {}).get(field)


def sampled(answer: dict[str, Any] | None) -> str | None:
    content = (answer or {}).get("content")
    if isinstance(content, dict) and content.get("type") == "text":
        return str(content.get("text"))
    return None


def text(value: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=value)])


async def test_input_required_result_elicitation(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    """Asks the user's name through an input_required round (SEP-2322)"""
    name = elicited(answers(ctx).get("user_name"), "name")
    if name is None:
        return ask({"user_name": elicit("What is your name?", NAME_SCHEMA)})
    return text(f"Hello, {name}!")


async def test_input_required_result_sampling(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    """Asks the client's LLM a question through an input_required round (SEP-2322)"""
    reply = sampled(answers(ctx).get("capital_question"))
    if reply is None:
        return ask({"capital_question": sample("What is the capital of France?", 100)})
    return text(f"LLM response: {reply}")


async def test_input_required_result_list_roots(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    """Asks the client's roots through an input_required round (SEP-2322)"""
    roots = (answers(ctx).get("client_roots") or {}).get("roots")
    if roots is None:
        return ask({"client_roots": ROOTS})
    return text("Client roots: " + ", ".join(str(root.get("uri")) for root in roots))


async def test_input_required_result_request_state(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    """Round-trips requestState through an input_required round (SEP-2322)"""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    got = answers(ctx).get("confirm")
    if got is None or ctx.request_state != "confirm-round-1":
        return ask({"confirm": elicit("Please confirm", schema)}, "confirm-round-1")
    return text(f"state-ok: confirmed={elicited(got, 'ok')}")


async def test_input_required_result_multiple_inputs(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    """Asks for an elicitation, a sampling and the roots in one round (SEP-2322)"""
    got = answers(ctx)
    wanted = {
        "user_name": elicit("What is your name?", NAME_SCHEMA),
        "greeting": sample("Generate a greeting", 50),
        "client_roots": ROOTS,
    }
    if ctx.request_state != "multiple-inputs" or any(key not in got for key in wanted):
        return ask(wanted, "multiple-inputs")
    name = elicited(got["user_name"], "name")
    roots = len(got["client_roots"].get("roots") or [])
    return text(f"name={name}, greeting={sampled(got['greeting'])}, roots={roots}")


async def test_input_required_result_multi_round(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    """Gathers two answers over two input_required rounds (SEP-2322)"""
    got = answers(ctx)
    state = json.loads(ctx.request_state) if ctx.request_state else {}
    if "name" not in state:
        name = elicited(got.get("step1"), "name")
        if name is None:
            return ask(
                {"step1": elicit("Step 1: What is your name?", NAME_SCHEMA)},
                json.dumps({"round": 1}),
            )
        state = {"round": 2, "name": name}
    color = elicited(got.get("step2"), "color")
    if color is None:
        schema = {
            "type": "object",
            "properties": {"color": {"type": "string"}},
            "required": ["color"],
        }
        return ask(
            {"step2": elicit("Step 2: What is your favorite color?", schema)}, json.dumps(state)
        )
    return text(f"{state['name']} likes {color}")


async def test_input_required_result_tampered_state(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    """Mints an integrity-protected requestState; a tampered echo is refused (SEP-2322)"""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    if ctx.request_state != "untampered" or "confirm" not in answers(ctx):
        return ask({"confirm": elicit("Please confirm", schema)}, "untampered")
    return text("state verified")


async def test_input_required_result_capabilities(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    """Asks only for what the client declared it can answer (SEP-2322)"""
    caps = ctx.client_capabilities
    wanted: dict[str, Any] = {}
    if caps is not None and caps.sampling is not None:
        wanted["greeting"] = sample("Generate a greeting", 50)
    if caps is not None and caps.elicitation is not None:
        wanted["user_name"] = elicit("What is your name?", NAME_SCHEMA)
    if caps is not None and caps.roots is not None:
        wanted["client_roots"] = ROOTS
    got = answers(ctx)
    if not wanted:
        return text("The client declared no capability to ask anything of")
    if any(key not in got for key in wanted):
        return ask(wanted)
    return text("Answered: " + ", ".join(sorted(wanted)))


async def test_input_required_result_prompt(
    ctx: Context,
) -> list[Message] | types.InputRequiredResult:
    """A prompt that asks for its context through an input_required round (SEP-2322)"""
    context = elicited(answers(ctx).get("user_context"), "context")
    if context is None:
        schema = {
            "type": "object",
            "properties": {"context": {"type": "string"}},
            "required": ["context"],
        }
        return ask({"user_context": elicit("What context should the prompt use?", schema)})
    return [UserMessage(f"Use this context: {context}")]


def install(server: MCPServer) -> None:
    for fn in (
        test_input_required_result_elicitation,
        test_input_required_result_sampling,
        test_input_required_result_list_roots,
        test_input_required_result_request_state,
        test_input_required_result_multiple_inputs,
        test_input_required_result_multi_round,
        test_input_required_result_tampered_state,
        test_input_required_result_capabilities,
    ):
        server.add_tool(fn, structured_output=False)
    server.prompt(name="test_input_required_result_prompt")(test_input_required_result_prompt)
