# Sourced by scripts/test. The official client SDKs the gateway tests
# (tests/tests/e2e/gateway_*.rs) drive against Chorus's OpenAI- and
# Anthropic-compatible API: `openai` and `anthropic` from PyPI (pinned here; openai
# at the version LiteLLM's proxy resolves to, so both share one venv), and the
# `openai` Node SDK from npm (pinned by tests/gateway/package.json and
# package-lock.json).
OPENAI_PY_VERSION=2.54.0
ANTHROPIC_PY_VERSION=2.17.0
provision_gateway_sdks() {
  local have
  have="$("$CHORUS_TEST_PYTHON" -c 'import importlib.metadata as m; print(m.version("openai"), m.version("anthropic"))' 2>/dev/null || true)"
  if [ "$have" != "$OPENAI_PY_VERSION $ANTHROPIC_PY_VERSION" ]; then
    pip_install "openai==$OPENAI_PY_VERSION" "anthropic==$ANTHROPIC_PY_VERSION"
  fi
  "$CHORUS_TEST_PYTHON" -c 'import openai, anthropic' \
    || die "the OpenAI and Anthropic Python SDKs are not importable from $CHORUS_TEST_PYTHON, required by the gateway tests"
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  (cd tests/gateway && npm ci --no-audit --no-fund --loglevel=error) \
    || die "could not install the OpenAI Node SDK (npm ci in tests/gateway), required by the gateway tests"
  [ -f tests/gateway/node_modules/openai/package.json ] \
    || die "the openai npm package is missing after npm ci in tests/gateway"
}
provision_gateway_sdks
echo "SDKs:       openai (PyPI) $OPENAI_PY_VERSION, anthropic (PyPI) $ANTHROPIC_PY_VERSION, openai (npm) $(node -p 'require("./tests/gateway/node_modules/openai/package.json").version')"
