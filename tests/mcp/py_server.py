"""A small MCP server for Chorus's end-to-end tests, written with the official
Python SDK (`mcp` on PyPI). Run: `python py_server.py stdio` or
`python py_server.py http PORT` (streamable HTTP on 127.0.0.1 only).

Besides ordinary tools it misbehaves on request, so the tests can check how Chorus
copes: a slow call, a huge output, a process killed mid-call, a malformed JSON-RPC line.
"""

import asyncio
import os
import signal
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("chorus-test-py")


@server.tool()
def add(a: int, b: int) -> str:
    """Adds two integers."""
    return str(a + b)


@server.tool()
async def slow(seconds: float) -> str:
    """Sleeps, then says how long it slept."""
    await asyncio.sleep(seconds)
    return f"slept {seconds} s"


@server.tool(structured_output=False)
def big(megabytes: int) -> str:
    """Returns `megabytes` MB of text."""
    return "x" * (megabytes * 1024 * 1024)


@server.tool()
async def die() -> str:
    """Kills its own server process (SIGKILL) in the middle of the call."""
    await asyncio.sleep(0.3)
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


@server.tool()
def env(name: str) -> str:
    """The value of the environment variable `name` in this server, or `<unset>`."""
    return os.environ.get(name, "<unset>")


@server.tool()
def malformed() -> str:
    """Writes a line that is not JSON-RPC to stdout (stdio only), then answers."""
    sys.stdout.buffer.write(b'{"jsonrpc": "2.0", "id": this is not json\n')
    sys.stdout.buffer.flush()
    return "answered after a malformed line"


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
