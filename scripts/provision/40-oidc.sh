# Sourced by scripts/test. The OpenID Connect provider the SSO end-to-end tests log in
# against: oidc-provider-mock from PyPI, pinned (0.3.4 is the newest release that runs
# on Python 3.10/3.11; later ones need 3.12), run by the tests as
# `$CHORUS_TEST_PYTHON -m oidc_provider_mock`.
pip_install "oidc-provider-mock==0.3.4"
"$CHORUS_TEST_PYTHON" -c "import oidc_provider_mock" 2>/dev/null \
  || die "oidc-provider-mock is required by the SSO tests and could not be imported by $CHORUS_TEST_PYTHON"
echo "OIDC:       oidc-provider-mock $("$CHORUS_TEST_PYTHON" -m pip show oidc-provider-mock 2>/dev/null | sed -n 's/^Version: //p')"
