# Sourced by scripts/test. One Python virtual environment for every test tool that
# comes from PyPI (MCP servers, OpenID provider, LiteLLM, Synapse...). Later files call
# `pip_install PACKAGE...`; tests find the interpreter in CHORUS_TEST_PYTHON.
provision_python() {
  command -v python3 >/dev/null || apt_install python3 python3-venv
  local venv="$STATE_DIR/venv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { apt_install python3-venv; python3 -m venv "$venv"; } \
      || die "a Python virtual environment is required for the test tools and could not be created"
  fi
  export CHORUS_TEST_PYTHON="$venv/bin/python"
  export PATH="$venv/bin:$PATH"
}
pip_install() {
  "$CHORUS_TEST_PYTHON" -m pip install -q --disable-pip-version-check "$@" \
    || die "could not install $* from PyPI (required by the tests)"
}
provision_python
echo "Python:     $CHORUS_TEST_PYTHON"
