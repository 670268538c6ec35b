# syntax=docker/dockerfile:1
# The Chorus server image, for machines that can pull from a container registry:
#
#   docker build -t chorus .
#   docker run -p 3000:3000 -v chorus-data:/data chorus
#
# Two stages: `build` compiles the release binary and splits its symbol table off
# (scripts/release-binary), `runtime` is a distroless base (glibc, libgcc, CA
# certificates, time zones, no shell) with the binary, running as the unprivileged
# user 65532 with its data under the volume /data.
#
# Without a registry, scripts/container-image builds this same `runtime` stage (every
# line from `FROM ${RUNTIME_IMAGE} AS runtime` to the end) on a base it makes from
# Debian's packages, with a binary it is given: keep that stage free of anything a
# local build cannot do (its `COPY --from=build /out/` lines read from the binary's
# directory there).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The registry and target caches make a rebuild after a code change take minutes, not
# the half hour of a cold release build.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_TARGET_DIR=/src/target scripts/release-binary /out/bin \
 && mkdir -p /out/data

FROM ${RUNTIME_IMAGE} AS runtime
# The binary and its symbol table (backtraces name functions through its
# .gnu_debuglink, looked up beside the binary).
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data/ /data/
USER 65532:65532
WORKDIR /data
# Listen on every interface of the container; the data directory is the volume.
# Everything else comes from a config file (CHORUS_CONFIG=/etc/chorus/chorus.toml,
# mounted read-only) or CHORUS_SECTION__KEY variables.
ENV CHORUS_DATA_DIR=/data \
    CHORUS_SERVER__LISTEN=0.0.0.0:3000
VOLUME ["/data"]
EXPOSE 3000
# `chorus healthcheck` asks this instance's /healthz (no shell or curl in the image).
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/chorus", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/chorus"]
CMD ["serve"]
