# Sourced by scripts/test. The real MCP servers the end-to-end tests connect to:
# @modelcontextprotocol/server-everything from npm (pinned in tests/mcp/package.json
# and package-lock.json, run over stdio) and the official Python SDK `mcp` from PyPI
# (pinned here), which tests/mcp/py_server.py is built on.
provision_mcp() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  command -v node >/dev/null || die "Node.js is required by the MCP tests (server-everything) and could not be installed"
  (cd tests/mcp && npm ci --no-audit --no-fund --loglevel=error) \
    || die "could not install @modelcontextprotocol/server-everything (npm ci in tests/mcp), required by the MCP tests"
  [ -f tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js ] \
    || die "@modelcontextprotocol/server-everything is missing after npm ci in tests/mcp"
  pip_install 'mcp==2.3.0'
  "$CHORUS_TEST_PYTHON" -c 'import mcp.server.mcpserver' \
    || die "the Python package mcp (MCP SDK) is not importable from $CHORUS_TEST_PYTHON, required by the MCP tests"
}
provision_mcp
echo "MCP:        server-everything $(node -p 'require("./tests/mcp/node_modules/@modelcontextprotocol/server-everything/package.json").version'), python mcp $("$CHORUS_TEST_PYTHON" -c 'import importlib.metadata as m; print(m.version("mcp"))')"
