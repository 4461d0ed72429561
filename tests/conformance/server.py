"""bicameral's own MCP server for the official conformance suite's server scenarios.

Written with the official Python SDK from the scenarios' descriptions
(``@modelcontextprotocol/conformance`` 0.1.16, ``conformance list``): the
``test_*`` tools, the ``test://`` resources and template, the ``test_*``
prompts, logging and completion.

Run as ``python server.py`` it speaks MCP over stdio (how bicameral runs it,
behind ``/mcp/NAME``); ``python server.py --http PORT`` serves it directly
over streamable HTTP on 127.0.0.1 with the SDK's DNS-rebinding protection,
the baseline the suite is run against first.

The 0.2 suite's scenario families live in ``scenarios/``: ``mrtr`` (the
``input-required-result-*`` tools and prompt) and ``tasks`` (the
``io.modelcontextprotocol/tasks`` extension and its fixtures).
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS as MODERN
from scenarios import mrtr, tasks

warnings.simplefilter(
    "ignore"
)  # the SDK deprecates sampling, roots and logging; the suite tests them

# A 1x1 PNG and a tiny WAV: content the scenarios only check for shape.
IMAGE = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJ"
    "RU5ErkJggg=="
)
AUDIO = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="

task_store = tasks.TaskStore()
server: MCPServer = MCPServer(
    "bicameral-conformance",
    version="1.0.0",
    log_level="WARNING",
    extensions=[tasks.extension(task_store)],
)
subscriptions: set[str] = set()

JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

# A tool whose `region` argument travels as the `Mcp-Param-Region` HTTP header
# too (SEP-2243); the SDK checks the header against the body.
CUSTOM_HEADER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "query": {"type": "string"},
    },
    "required": ["region"],
}


def text(value: str) -> types.TextContent:
    return types.TextContent(type="text", text=value)


# -- tools ------------------------------------------------------------------------


def test_simple_text() -> str:
    """Tests simple text content response"""
    return "This is a simple text response for testing."


def test_image_content() -> list[Any]:
    """Tests image content response"""
    return [types.ImageContent(type="image", data=IMAGE, mime_type="image/png")]


def test_audio_content() -> list[Any]:
    """Tests audio content response"""
    return [types.AudioContent(type="audio", data=AUDIO, mime_type="audio/wav")]


def _embedded(uri: str, mime: str, body: str) -> types.EmbeddedResource:
    return types.EmbeddedResource(
        type="resource",
        resource=types.TextResourceContents(uri=uri, mime_type=mime, text=body),
    )


def test_embedded_resource() -> list[Any]:
    """Tests embedded resource content response"""
    return [
        _embedded("test://embedded-resource", "text/plain", "This is an embedded resource content.")
    ]


def test_multiple_content_types() -> list[Any]:
    """Tests response with multiple content types (text, image, resource)"""
    return [
        text("Multiple content types test:"),
        types.ImageContent(type="image", data=IMAGE, mime_type="image/png"),
        _embedded(
            "test://mixed-content-resource",
            "application/json",
            json.dumps({"test": "data", "value": 123}),
        ),
    ]


async def test_tool_with_logging(ctx: Context) -> str:
    """Tests tool that emits log messages during execution"""
    for i, message in enumerate(
        ("Tool execution started", "Tool processing data", "Tool execution completed")
    ):
        if i:
            await anyio.sleep(0.05)
        await ctx.info(message)
    return "Tool with logging executed successfully"


async def test_tool_with_progress(ctx: Context) -> str:
    """Tests tool that reports progress notifications"""
    for i, value in enumerate((0, 50, 100)):
        if i:
            await anyio.sleep(0.05)
        await ctx.report_progress(value, 100, f"Completed step {value} of 100")
    meta = ctx.request_context.meta
    token = getattr(meta, "progress_token", None) if meta is not None else None
    return str(token if token is not None else 0)


def test_error_handling() -> str:
    """Tests error response handling"""
    raise RuntimeError("This tool intentionally returns an error for testing")


async def test_reconnection(ctx: Context) -> str:
    """Tests SSE stream disconnection and client reconnection (SEP-1699)"""
    await ctx.close_sse_stream()
    await anyio.sleep(0.1)
    return (
        "Reconnection test completed successfully. If you received this, the client "
        "properly reconnected after stream closure."
    )


async def test_sampling(prompt: str, ctx: Context) -> str:
    """Tests server-initiated sampling (LLM completion request)"""
    try:
        result = await ctx.session.create_message(
            [types.SamplingMessage(role="user", content=text(prompt))], max_tokens=100
        )
    except Exception as exc:
        return f"Sampling not supported or error: {exc}"
    content = result.content
    reply = content.text if isinstance(content, types.TextContent) else "No response"
    return f"LLM response: {reply}"


async def _elicit(ctx: Context, message: str, schema: dict[str, Any], label: str) -> str:
    try:
        result = await ctx.session.elicit_form(
            message,
            schema,  # type: ignore[arg-type]
            related_request_id=ctx.request_id,
        )
    except Exception as exc:
        return f"Elicitation not supported or error: {exc}"
    return f"{label}: action={result.action}, content={json.dumps(result.content or {})}"


async def test_elicitation(message: str, ctx: Context) -> str:
    """Tests server-initiated elicitation (user input request)"""
    schema = {
        "type": "object",
        "properties": {"response": {"type": "string", "description": "User's response"}},
        "required": ["response"],
    }
    return await _elicit(ctx, message, schema, "User response")


async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Tests elicitation with default values per SEP-1034"""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {
                "type": "boolean",
                "description": "Verification status",
                "default": True,
            },
        },
        "required": [],
    }
    message = "Please review and update the form fields with defaults"
    return await _elicit(ctx, message, schema, "Elicitation completed")


async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Tests elicitation with enum schema improvements per SEP-1330"""
    options = ["option1", "option2", "option3"]
    titled = [
        {"const": f"value{i}", "title": title}
        for i, title in enumerate(("First Option", "Second Option", "Third Option"), 1)
    ]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "description": "Select one", "enum": options},
            "titledSingle": {"type": "string", "description": "Select one", "oneOf": titled},
            "legacyEnum": {
                "type": "string",
                "description": "Select one (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select several",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": options},
            },
            "titledMulti": {
                "type": "array",
                "description": "Select several",
                "minItems": 1,
                "maxItems": 3,
                "items": {"anyOf": titled},
            },
        },
        "required": [],
    }
    message = "Please select options from the enum fields"
    return await _elicit(ctx, message, schema, "Elicitation completed")


def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, Any] | None = None,
    contactMethod: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> str:
    """Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613, SEP-2106)"""
    args = {"name": name, "address": address, "contactMethod": contactMethod}
    args.update(phone=phone, email=email)
    return f"JSON Schema 2020-12 tool called with: {json.dumps(args)}"


def test_custom_header(region: str, query: str | None = None) -> str:
    """Echoes an argument mirrored into the Mcp-Param-Region header (SEP-2243)"""
    return f"region={region} query={query}"


def test_missing_capability(ctx: Context) -> str:
    """Needs the client's sampling capability; refused with -32021 without it (SEP-2575)"""
    caps = ctx.client_capabilities
    if caps is None or caps.sampling is None:
        raise MCPError(
            code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="This tool needs the client's sampling capability",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    return "The client declared sampling"


def _toggle_tool() -> str:
    """A tool that test_trigger_tool_change adds and removes"""
    return "toggled"


def _toggle_prompt() -> list[Message]:
    """A prompt that test_trigger_prompt_change adds and removes"""
    return [UserMessage("toggled")]


async def test_trigger_tool_change(ctx: Context) -> str:
    """Adds or removes a tool, then notifies tools/list_changed (SEP-2575 listen streams)"""
    if server._tool_manager.get_tool("test_toggled_tool") is None:
        server.add_tool(_toggle_tool, name="test_toggled_tool")
    else:
        server.remove_tool("test_toggled_tool")
    await ctx.notify_tools_changed()
    if ctx.session.protocol_version not in MODERN:  # a handshake-era client (bicameral's)
        await ctx.session.send_tool_list_changed()
    return "tool list changed"


async def test_trigger_prompt_change(ctx: Context) -> str:
    """Adds or removes a prompt, then notifies prompts/list_changed (SEP-2575 listen streams)"""
    if any(p.name == "test_toggled_prompt" for p in await server.list_prompts()):
        server.remove_prompt("test_toggled_prompt")
    else:
        server.prompt(name="test_toggled_prompt")(_toggle_prompt)
    await ctx.notify_prompts_changed()
    if ctx.session.protocol_version not in MODERN:
        await ctx.session.send_prompt_list_changed()
    return "prompt list changed"


for fn in (
    test_simple_text,
    test_image_content,
    test_audio_content,
    test_embedded_resource,
    test_multiple_content_types,
    test_tool_with_logging,
    test_tool_with_progress,
    test_error_handling,
    test_reconnection,
    test_sampling,
    test_elicitation,
    test_elicitation_sep1034_defaults,
    test_elicitation_sep1330_enums,
    json_schema_2020_12_tool,
    test_custom_header,
    test_missing_capability,
    test_trigger_tool_change,
    test_trigger_prompt_change,
):
    server.add_tool(fn)

# Schemas given verbatim: the 2020-12 keywords and the x-mcp-header annotation
# kept as written (tools/list and the SDK's Mcp-Param check read these).
for tool_name, schema in (
    ("json_schema_2020_12_tool", JSON_SCHEMA_2020_12),
    ("test_custom_header", CUSTOM_HEADER_SCHEMA),
):
    registered = server._tool_manager.get_tool(tool_name)
    assert registered is not None
    registered.parameters = schema
mrtr.install(server)
tasks.install(server)


# -- resources ----------------------------------------------------------------------


@server.resource("test://static-text", name="static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource for testing"""
    return "This is the content of the static text resource."


@server.resource("test://static-binary", name="static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (image) for testing"""
    import base64

    return base64.b64decode(IMAGE)


@server.resource("test://template/{id}/data", name="template", mime_type="application/json")
def template(id: str) -> str:
    """A resource template with parameter substitution"""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@server.resource("test://watched-resource", name="watched-resource", mime_type="text/plain")
def watched() -> str:
    """A resource that can be subscribed to"""
    return "Watched resource content"


async def _subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    subscriptions.add(str(params.uri))
    return types.EmptyResult()


async def _unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    subscriptions.discard(str(params.uri))
    return types.EmptyResult()


async def _set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


async def _complete(ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
    return types.CompleteResult(completion=types.Completion(values=[], total=0, has_more=False))


lowlevel = server._lowlevel_server
lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _subscribe)
lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, _unsubscribe)
lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, _set_level)
lowlevel.add_request_handler("completion/complete", types.CompleteRequestParams, _complete)

# -- prompts ------------------------------------------------------------------------


@server.prompt(name="test_simple_prompt", title="Simple Test Prompt")
def simple_prompt() -> list[Message]:
    """A simple prompt without arguments"""
    return [UserMessage("This is a simple prompt for testing.")]


@server.prompt(name="test_prompt_with_arguments", title="Prompt With Arguments")
def prompt_with_arguments(arg1: str, arg2: str) -> list[Message]:
    """A prompt with required arguments"""
    return [UserMessage(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]


@server.prompt(name="test_prompt_with_embedded_resource", title="Prompt With Embedded Resource")
def prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
    """A prompt that includes an embedded resource"""
    return [
        UserMessage(_embedded(resourceUri, "text/plain", "Embedded resource content for testing.")),
        UserMessage("Please process the embedded resource above."),
    ]


@server.prompt(name="test_prompt_with_image", title="Prompt With Image")
def prompt_with_image() -> list[Message]:
    """A prompt that includes image content"""
    return [
        UserMessage(types.ImageContent(type="image", data=IMAGE, mime_type="image/png")),
        UserMessage("Please analyze the image above."),
    ]


# -- running --------------------------------------------------------------------------


async def serve_http(port: int) -> None:
    import uvicorn

    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*"],
    )
    app = server.streamable_http_app(transport_security=security)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    async with anyio.create_task_group() as group:
        task_store.bind(group)
        await uvicorn.Server(config).serve()
        group.cancel_scope.cancel()


async def serve_stdio() -> None:
    async with anyio.create_task_group() as group:
        task_store.bind(group)
        await server.run_stdio_async()
        group.cancel_scope.cancel()


if __name__ == "__main__":
    if "--http" in sys.argv:
        anyio.run(serve_http, int(sys.argv[sys.argv.index("--http") + 1]))
    else:
        anyio.run(serve_stdio)
