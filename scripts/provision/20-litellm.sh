# Sourced by scripts/test. LiteLLM's proxy from PyPI, pinned: the e2e test
# litellm_proxy runs it on loopback with mock responses and points Chorus's `openai`
# and `anthropic` providers at it (tests/src/litellm.rs keeps the same version).
LITELLM_VERSION=1.106.12
provision_litellm() {
  local cli
  cli="$(dirname "$CHORUS_TEST_PYTHON")/litellm"
  if ! { [ -x "$cli" ] && "$CHORUS_TEST_PYTHON" -m pip show litellm 2>/dev/null | grep -qx "Version: $LITELLM_VERSION"; }; then
    pip_install "litellm[proxy]==$LITELLM_VERSION"
  fi
  [ -x "$cli" ] && "$CHORUS_TEST_PYTHON" -c 'import litellm.proxy.proxy_server' 2>/dev/null \
    || die "LiteLLM's proxy $LITELLM_VERSION is required by the e2e tests and could not be installed"
}
provision_litellm
echo "LiteLLM:    $LITELLM_VERSION"
