# One image for every cluster node; the SERVICES variable picks the role of a container
# (docker-compose.yml). Build: docker compose build

# The base image by tag: no registry could be reached to read its digest, and an invented one
# would only break the pull. Pin it as node:26-bookworm-slim@sha256:<digest> (docs/security-secrets.md).

# --- build: compile the TypeScript sources to dist/ ---
FROM node:26-bookworm-slim AS build
WORKDIR /app
# Dependencies first, so that a source change reuses the cached npm ci layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json moleculer.config.ts ./
COPY lib ./lib
COPY middlewares ./middlewares
COPY mixins ./mixins
COPY repl ./repl
COPY services ./services
RUN npm run build

# --- runtime: compiled code and production dependencies only ---
FROM node:26-bookworm-slim AS runtime
# tini is PID 1: it hands SIGTERM to node (whose broker then drains and stops) and reaps zombies.
RUN apt-get update \
	&& apt-get install -y --no-install-recommends tini \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Each node's peak RSS stays under 150 MB at full load: a smaller young generation (8 MB
# semi-spaces) and a capped old generation (docs/decisions/0008-node-26-and-v8-heap-limits.md).
ENV NODE_ENV=production \
	NODE_OPTIONS="--max-semi-space-size=8 --max-old-space-size=96" \
	SERVICEDIR=dist/services
COPY package.json package-lock.json ./
# The image's own Node 26 runs the code; the `node` npm package is a dev dependency and stays out.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Files stay owned by root: the process can read its code but not change it. docker-compose.yml
# also makes the whole root file system read-only and drops every capability.
USER node
ENTRYPOINT ["/usr/bin/tini", "--"]
# Same as `npm run node`, without npm in between, so that signals reach node directly.
CMD ["node", "node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js"]
