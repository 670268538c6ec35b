# Sourced by scripts/test. The standard validator the OpenAPI test
# (tests/tests/e2e/openapi.rs) runs on the served /api/openapi.json:
# `openapi-spec-validator` from PyPI, pinned, in the shared venv (00-python.sh).
OPENAPI_VALIDATOR_VERSION=0.9.0
provision_openapi_validator() {
  if ! "$CHORUS_TEST_PYTHON" -m pip show openapi-spec-validator 2>/dev/null | grep -qx "Version: $OPENAPI_VALIDATOR_VERSION"; then
    pip_install "openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION"
  fi
  "$CHORUS_TEST_PYTHON" -c 'import openapi_spec_validator' 2>/dev/null \
    || die "openapi-spec-validator $OPENAPI_VALIDATOR_VERSION is required by the OpenAPI test and cannot be imported by $CHORUS_TEST_PYTHON"
}
provision_openapi_validator
echo "OpenAPI:    openapi-spec-validator $OPENAPI_VALIDATOR_VERSION"
