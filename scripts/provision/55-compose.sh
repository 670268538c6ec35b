# Sourced by scripts/test, after 50-docker.sh (the engine and DOCKER_HOST). The compose
# test runs deploy/compose.yaml on that engine, so it needs a compose tool: the
# `docker compose` plugin when the machine has one, else Debian's `docker-compose`
# (bookworm ships compose v1.29, which reads the same file; Debian has no v2 plugin
# before trixie's docker-compose 2.x). It also builds the deployment's PostgreSQL,
# Redis and HAProxy images from Debian's packages (scripts/container-image; cached,
# seconds when nothing changed), so the test itself builds only the Chorus image.
provision_compose() {
  if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
    apt_install docker-compose
  fi
  if docker compose version >/dev/null 2>&1; then
    COMPOSE_VERSION="docker compose $(docker compose version --short 2>/dev/null)"
  elif docker-compose version --short >/dev/null 2>&1; then
    COMPOSE_VERSION="docker-compose $(docker-compose version --short)"
  else
    die "a compose tool is required for the compose test: neither \`docker compose\` nor \`docker-compose\` runs (apt-get install docker-compose)"
  fi
  scripts/container-image --service postgres --service redis --service proxy >/dev/null \
    || die "the deployment's service images (scripts/container-image) could not be built"
}
provision_compose
echo "Compose:    $COMPOSE_VERSION; service images built"
