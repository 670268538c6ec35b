# Sourced by scripts/test. A Docker engine for the code sandbox tests, and the sandbox
# image. A running engine is used when `docker info` answers (DOCKER_HOST respected);
# otherwise Debian's docker.io is installed and dockerd started in the background
# (no systemd needed), with its log in $STATE_DIR/dockerd.log. The engine gets no
# bridge network and touches no iptables rules: sandbox containers have no network.
# Exports CHORUS_TEST_DOCKER_HOST (and DOCKER_HOST) for the tests.
docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

start_dockerd() {
  local driver="$1" sock="$STATE_DIR/docker.sock"
  export DOCKER_HOST="unix://$sock"
  rm -f "$sock"
  nohup dockerd --host "$DOCKER_HOST" --storage-driver "$driver" \
    --data-root "$STATE_DIR/docker-$driver" --exec-root "$STATE_DIR/docker-exec" \
    --pidfile "$STATE_DIR/dockerd.pid" \
    --bridge=none --iptables=false --ip6tables=false \
    >"$STATE_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 60); do docker_ok && return 0; sleep 0.5; done
  # Not up: stop what we started before trying the next driver.
  if [ -f "$STATE_DIR/dockerd.pid" ]; then
    kill "$(cat "$STATE_DIR/dockerd.pid")" 2>/dev/null || true
    sleep 2
  fi
  return 1
}

provision_docker() {
  if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    apt_install docker.io
  fi
  command -v docker >/dev/null || die "Docker is required for the sandbox tests and docker.io could not be installed"
  if [ -z "${DOCKER_HOST:-}" ] && [ -S "$STATE_DIR/docker.sock" ]; then
    DOCKER_HOST="unix://$STATE_DIR/docker.sock"  # ours, from an earlier run
    DOCKER_HOST_WAS_OURS=1
  fi
  if [ -n "${DOCKER_HOST:-}" ]; then export DOCKER_HOST; fi
  if ! docker_ok; then
    if [ -n "${DOCKER_HOST_WAS_OURS:-}" ]; then unset DOCKER_HOST; fi
    if ! docker_ok; then
      command -v dockerd >/dev/null || die "Docker is required for the sandbox tests: no engine answers and dockerd is missing"
      # overlay2 where the kernel and filesystem allow it, vfs (slow, but works
      # everywhere) otherwise.
      start_dockerd overlay2 || start_dockerd vfs \
        || die "Docker is required for the sandbox tests and dockerd could not be started (see $STATE_DIR/dockerd.log)"
    fi
  fi
  export CHORUS_TEST_DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"
  export DOCKER_HOST="$CHORUS_TEST_DOCKER_HOST"
  command -v debootstrap >/dev/null || apt_install debootstrap
  scripts/sandbox-image || die "the sandbox image (scripts/sandbox-image) could not be built"
}
provision_docker
echo "Docker:     $CHORUS_TEST_DOCKER_HOST ($(docker info --format '{{.ServerVersion}}, {{.Driver}}' 2>/dev/null))"
