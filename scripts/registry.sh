#!/usr/bin/env bash
# A Confluent-compatible Schema Registry for tests and local runs: Apicurio Registry (in-memory
# storage) from Maven Central, serving the Confluent API at /apis/ccompat/v6.
#
#   scripts/registry.sh start   fetch the app (cached), start it, wait until ready, print the URL
#   scripts/registry.sh stop    stop the registry started by `start` and delete its run folder
#   scripts/registry.sh status  print the URL if running, exit 1 otherwise
#
# The URL printed is the one SchemaRegistryClient takes: http://127.0.0.1:<port>/apis/ccompat/v6
#
# Environment (all optional):
#   REGISTRY_PORT           HTTP port (default: a free port chosen at start)
#   REGISTRY_RUN_DIR        state folder: log, pid, url (default: .cache/registry-run)
#   CERT_CONSUMER_CACHE     download cache root (default: <repo>/.cache)
#   REGISTRY_START_TIMEOUT  seconds to wait for readiness (default: 90)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CERT_CONSUMER_CACHE:-$ROOT/.cache}"
VERSION="2.6.13.Final"
APP="$CACHE/apicurio/$VERSION"
RUNNER="$APP/apicurio-registry-app-$VERSION-runner.jar"
RUN="${REGISTRY_RUN_DIR:-$CACHE/registry-run}"
TIMEOUT="${REGISTRY_START_TIMEOUT:-90}"

NAME=registry.sh
# shellcheck source=scripts/lib/processes.sh
source "$ROOT/scripts/lib/processes.sh"

need_tools() {
  need_java
  command -v curl >/dev/null 2>&1 || die "curl is required for the readiness probe (no 'curl' on PATH)"
}

fetch_app() {
  [[ -f "$APP/.complete" ]] && return 0
  need_maven "Apicurio Registry"
  echo "registry.sh: fetching Apicurio Registry $VERSION from Maven Central into $APP" >&2
  rm -rf "$APP.tmp" && mkdir -p "$APP.tmp"
  # Run from the target folder: without a pom, the plugin writes its marker files under a
  # literal '${project.basedir}' folder in the working directory.
  (cd "$APP.tmp" && mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:unpack \
      -Dartifact="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all" \
      -DoutputDirectory="$APP.tmp" >&2) \
    || die "could not fetch Apicurio Registry with Maven (see the output above)"
  rm -rf "$APP.tmp/\${project.basedir}"
  [[ -f "$APP.tmp/$(basename "$RUNNER")" ]] || die "the download holds no $(basename "$RUNNER")"
  touch "$APP.tmp/.complete"
  rm -rf "$APP" && mv "$APP.tmp" "$APP"
}

start() {
  if is_running; then cat "$RUN/url"; return 0; fi
  need_tools
  fetch_app
  local port="${REGISTRY_PORT:-$(free_port)}"
  rm -rf "$RUN" && mkdir -p "$RUN"
  local started=$SECONDS
  # In-memory storage is Apicurio's default; 256 MiB of heap is ample for tests, and the C1-only
  # JIT starts a short-lived registry faster and smaller (measured: ~7 s and ~170 MB vs ~12 s
  # and ~270 MB with the defaults, on 2 cores).
  HTTP_PORT="$port" QUARKUS_HTTP_HOST=127.0.0.1 \
    java -Xmx256m -XX:TieredStopAtLevel=1 -jar "$RUNNER" > "$RUN/registry.log" 2>&1 </dev/null &
  echo $! > "$RUN/pid"
  until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; do
    if ! is_running; then
      if grep -q "Address already in use\|Port .* seems to be in use" "$RUN/registry.log" 2>/dev/null; then
        die "port $port is already in use on 127.0.0.1 (set REGISTRY_PORT to another)"
      fi
      die "the registry exited during start-up; last lines: $(tail -n 5 "$RUN/registry.log" | tr '\n' ' ')"
    fi
    if (( SECONDS - started > TIMEOUT )); then
      stop_registry
      die "the registry was not ready within ${TIMEOUT}s (see $RUN/registry.log)"
    fi
    sleep 0.25
  done
  echo "http://127.0.0.1:$port/apis/ccompat/v6" > "$RUN/url"
  echo "registry.sh: registry ready on port $port in $((SECONDS - started))s" >&2
  cat "$RUN/url"
}

stop_registry() {
  stop_process 20
}

stop() {
  stop_registry
  rm -rf "$RUN"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) is_running && cat "$RUN/url" ;;
  *) echo "usage: scripts/registry.sh start|stop|status" >&2; exit 2 ;;
esac
