# Sourced by scripts/test. The Matrix homeserver the Matrix end-to-end tests talk to:
# Synapse (`matrix-synapse` from PyPI), pinned (1.163.2 installs as a prebuilt abi3
# wheel on CPython 3.11). This only installs it: each test binary starts its own
# throwaway Synapse on loopback with a generated config (tests/src/synapse.rs, which
# keeps the same version), as `$CHORUS_TEST_PYTHON -m synapse.app.homeserver`.
SYNAPSE_VERSION=1.163.2
provision_synapse() {
  if ! "$CHORUS_TEST_PYTHON" -m pip show matrix-synapse 2>/dev/null | grep -qx "Version: $SYNAPSE_VERSION"; then
    "$CHORUS_TEST_PYTHON" -m pip install -q --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION" \
      || die "Synapse (matrix-synapse==$SYNAPSE_VERSION from PyPI) is required by the Matrix tests and could not be installed"
  fi
  "$CHORUS_TEST_PYTHON" -c 'import synapse.app.homeserver' 2>/dev/null \
    || die "Synapse (matrix-synapse $SYNAPSE_VERSION) is required by the Matrix tests and cannot be imported by $CHORUS_TEST_PYTHON"
}
provision_synapse
echo "Synapse:    matrix-synapse $SYNAPSE_VERSION"
