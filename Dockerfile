# fleetprobe: build on the current Node LTS, ship production dependencies only, run as non-root
# under an init process that forwards SIGTERM (so the daemon drains runs and flushes its log).
ARG NODE_VERSION=24
# The runtime stage's base: Node on Debian bookworm. By default the official Node image; where that
# registry is out of reach, the local base that scripts/base-image.sh makes from Debian and npm parts
# (docs/container.md). The build stage needs npm too: the official image has it, the local base
# keeps it in a separate -build image so that it stays out of the runtime image.
ARG BASE_IMAGE=node:${NODE_VERSION}-bookworm-slim
ARG BUILD_IMAGE=${BASE_IMAGE}

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: nothing is built before the sources are here; `npm run build` does it below.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="fleetprobe" \
      org.opencontainers.image.description="Synthetic end-to-end probes for device fleet platforms, exported as Prometheus metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The official image has no tini; the local base has it already.
RUN [ -x /usr/bin/tini ] || { apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*; }
WORKDIR /app
# TMPDIR: the only writable place with a read-only root filesystem (an emptyDir in Kubernetes).
ENV NODE_ENV=production \
    TMPDIR=/tmp \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    FLEETPROBE_CONFIG=/etc/fleetprobe/probes \
    FLEETPROBE_LISTEN=0.0.0.0:9437
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY probes ./probes
# Probe definitions are mounted here (a ConfigMap in Kubernetes); the shipped lab probes serve
# `fleetprobe daemon --lab` for a demo, with the build-context/ folder lab-build names beside them.
RUN mkdir -p /etc/fleetprobe/probes && cp -R probes/. /etc/fleetprobe/probes/ \
 && ln -s /app/dist/cli/main.js /usr/local/bin/fleetprobe && chmod +x /app/dist/cli/main.js
# The image's `node` user (uid 1000); nothing here needs root, and the root filesystem can be
# read-only (the lab writes its CA to $TMPDIR, an emptyDir in Kubernetes).
USER 1000:1000
EXPOSE 9437
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli/main.js"]
CMD ["daemon"]
