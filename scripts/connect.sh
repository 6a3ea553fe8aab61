#!/usr/bin/env bash
# A single-node Kafka Connect worker (distributed mode) with the Debezium PostgreSQL connector,
# for the CDC integration tests and local runs. It needs a running broker (scripts/kafka.sh).
#
#   scripts/connect.sh start               fetch the Connect jars and the Debezium plugin (cached),
#                                          start a worker, wait until it lists the PostgreSQL
#                                          connector plugin, print the REST URL
#   scripts/connect.sh stop                delete every connector (best effort), stop the worker
#                                          and delete its run folder
#   scripts/connect.sh status              print the REST URL if running, exit 1 otherwise
#   scripts/connect.sh register NAME FILE  create or update connector NAME from the JSON in FILE
#                                          ({"name": ..., "config": {...}} or the config alone) and
#                                          wait until the connector and all its tasks are RUNNING
#   scripts/connect.sh delete NAME         stop connector NAME (its task releases the slot), reset
#                                          its offsets, delete it and wait until it is gone
#
# The REST URL printed (http://127.0.0.1:<port>) is also kept in $CONNECT_RUN_DIR/rest.
# `register` fails as soon as a task is FAILED, even if the connector itself is RUNNING.
#
# Replication slots outlive their connector: neither `delete` nor `stop` drops the connector's
# slot (Debezium's slot.drop.on.stop is false), and an inactive slot retains WAL forever. The
# caller drops it: SELECT pg_drop_replication_slot('<slot.name>') (see CDC.md, pitfall 7). When
# `delete` returns, the task has stopped, so the slot is inactive and can be dropped at once.
# The publication (publication.name) stays too. Connect keeps a deleted connector's offsets,
# which is why `delete` resets them first: a connector registered again under the same name
# would otherwise resume from an LSN its dropped slot no longer has, and its task would FAIL.
#
# Each `start` uses a fresh group.id and fresh internal topics (config, offsets, status), so a
# new worker never sees the connectors or offsets of an earlier one.
#
# Environment:
#   KAFKA_BOOTSTRAP          broker host:port (required by `start`, e.g. from scripts/kafka.sh start)
#   CONNECT_PORT             REST port (default: a free port chosen at start)
#   CONNECT_RUN_DIR          state folder: config, logs, pid, rest (default: .cache/connect-run)
#   CERT_CONSUMER_CACHE      jar cache root (default: <repo>/.cache)
#   CONNECT_START_TIMEOUT    seconds to wait for the worker's REST API and plugin (default: 120)
#   CONNECT_RUNNING_TIMEOUT  seconds `register` waits for RUNNING, `delete` for removal (default: 60)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CERT_CONSUMER_CACHE:-$ROOT/.cache}"
POM="$ROOT/scripts/connect/pom.xml"
CONNECT_VERSION="$(sed -n 's:.*<connect.version>\(.*\)</connect.version>.*:\1:p' "$POM")"
DEBEZIUM_VERSION="$(sed -n 's:.*<debezium.version>\(.*\)</debezium.version>.*:\1:p' "$POM")"
JARS="$CACHE/connect-jars-$CONNECT_VERSION"
PLUGINS="$CACHE/debezium-$DEBEZIUM_VERSION"
RUN="${CONNECT_RUN_DIR:-$CACHE/connect-run}"
START_TIMEOUT="${CONNECT_START_TIMEOUT:-120}"
RUNNING_TIMEOUT="${CONNECT_RUNNING_TIMEOUT:-60}"
PLUGIN_CLASS=io.debezium.connector.postgresql.PostgresConnector

NAME=connect.sh
# shellcheck source=scripts/lib/processes.sh
source "$ROOT/scripts/lib/processes.sh"

# The REST client: python3's urllib (python3 is needed anyway for free_port), so no curl.
# Messages go to stderr; the exit status says whether the step succeeded.
read -r -d '' REST_PY <<'PY' || true
import json, sys, time, urllib.error, urllib.request

def say(message):
    print(f"connect.sh: {message}", file=sys.stderr)

def call(method, url, body=None, timeout=10):
    """(status, parsed JSON or text); raises OSError when the worker does not answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")

def message(body):
    return body.get("message", body) if isinstance(body, dict) else body

def trace_head(entry, lines=8):
    trace = (entry or {}).get("trace") or "(no trace)"
    return "\n".join(trace.splitlines()[:lines])

def plugin(url, cls):
    """Exit 0 once GET /connector-plugins lists the class."""
    try:
        status, body = call("GET", f"{url}/connector-plugins", timeout=5)
    except OSError:
        return 1
    return 0 if status == 200 and any(p.get("class") == cls for p in body) else 1

def register(url, name, path, timeout):
    started = time.monotonic()
    with open(path) as handle:
        document = json.load(handle)
    config = document["config"] if isinstance(document.get("config"), dict) else document
    config = dict(config)
    for label, value in (("name", document.get("name")), ("config.name", config.get("name"))):
        if isinstance(value, str) and value != name:
            say(f"{path} names the connector {value!r} ({label}), not {name!r}")
            return 1
    config["name"] = name
    # PUT creates or updates. A 409 means the worker is rebalancing: try again.
    while True:
        try:
            status, body = call("PUT", f"{url}/connectors/{name}/config", config, timeout=30)
        except OSError as error:
            say(f"the worker at {url} does not answer: {error}")
            return 1
        if status in (200, 201):
            break
        if status == 409 and time.monotonic() - started < timeout:
            time.sleep(0.5)
            continue
        say(f"PUT /connectors/{name}/config failed ({status}): {message(body)}")
        return 1
    last = None
    while time.monotonic() - started < timeout:
        try:
            status, last = call("GET", f"{url}/connectors/{name}/status", timeout=5)
        except OSError as error:
            say(f"the worker at {url} does not answer: {error}")
            return 1
        if status == 200:
            connector, tasks = last.get("connector", {}), last.get("tasks", [])
            if connector.get("state") == "FAILED":
                say(f"connector {name} FAILED:\n{trace_head(connector)}")
                return 1
            for task in tasks:
                if task.get("state") == "FAILED":
                    say(f"connector {name}: task {task.get('id')} FAILED:\n{trace_head(task)}")
                    return 1
            if connector.get("state") == "RUNNING" and tasks and all(
                    t.get("state") == "RUNNING" for t in tasks):
                say(f"connector {name} and its {len(tasks)} task(s) RUNNING "
                    f"in {time.monotonic() - started:.2f}s")
                return 0
        time.sleep(0.2)
    say(f"connector {name} not RUNNING within {timeout:g}s; last status: {json.dumps(last)}")
    return 1

def retrying(method, url, ok, started, timeout, body=None):
    """Send until the status is in ok; 409 (rebalancing) and, for offsets, 400 (not yet
    STOPPED) are retried until the deadline. Returns (status, body) of the last answer."""
    while True:
        status, answer = call(method, url, body, timeout=30)
        if status in ok or status not in (400, 409) or time.monotonic() - started >= timeout:
            return status, answer
        time.sleep(0.3)

def delete(url, name, timeout):
    """Stop the connector (its task releases the replication slot), reset its offsets (so a later
    register of the same name starts afresh instead of failing on a dropped slot's LSN), then
    delete it and wait until it is no longer listed."""
    started = time.monotonic()
    base = f"{url}/connectors/{name}"
    status, body = retrying("PUT", f"{base}/stop", (200, 202, 204), started, timeout)
    if status == 404:
        say(f"connector {name} does not exist")
        return 0
    if status not in (200, 202, 204):
        say(f"PUT /connectors/{name}/stop failed ({status}): {message(body)}")
        return 1
    while True:
        status, body = call("GET", f"{base}/status", timeout=5)
        if status == 200 and body.get("connector", {}).get("state") == "STOPPED" and not body.get("tasks"):
            break
        if time.monotonic() - started >= timeout:
            say(f"connector {name} not STOPPED within {timeout:g}s; last status: {json.dumps(body)}")
            return 1
        time.sleep(0.2)
    status, body = retrying("DELETE", f"{base}/offsets", (200, 202, 204), started, timeout)
    if status not in (200, 202, 204):
        say(f"DELETE /connectors/{name}/offsets failed ({status}): {message(body)}")
        return 1
    status, body = retrying("DELETE", base, (200, 204, 404), started, timeout)
    if status not in (200, 204, 404):
        say(f"DELETE /connectors/{name} failed ({status}): {message(body)}")
        return 1
    while time.monotonic() - started < timeout:
        status, body = call("GET", f"{url}/connectors", timeout=5)
        if status == 200 and name not in body:
            say(f"connector {name} stopped, offsets reset and deleted in {time.monotonic() - started:.2f}s")
            return 0
        time.sleep(0.2)
    say(f"connector {name} still listed {timeout:g}s after DELETE")
    return 1

def delete_all(url, timeout):
    status, names = call("GET", f"{url}/connectors", timeout=5)
    if status != 200:
        return 1
    return max([delete(url, name, timeout) for name in names], default=0)

def main(command, url, *args):
    try:
        if command == "plugin":
            return plugin(url, args[0])
        if command == "register":
            return register(url, args[0], args[1], float(args[2]))
        if command == "delete":
            return delete(url, args[0], float(args[1]))
        if command == "delete-all":
            return delete_all(url, float(args[0]))
    except OSError as error:
        say(f"the worker at {url} does not answer: {error}")
        return 1
    raise SystemExit(f"unknown REST command {command}")

sys.exit(main(*sys.argv[1:]))
PY

rest() { python3 -c "$REST_PY" "$@"; }

rest_url() {
  is_running && [[ -f "$RUN/rest" ]] || die "no Connect worker is running for $RUN (run scripts/connect.sh start first)"
  cat "$RUN/rest"
}

fetch_jars() {
  fetch_pom_jars "$POM" "$JARS" "the Kafka Connect $CONNECT_VERSION jars"
}

fetch_plugin() {
  # The plugin tarball is Debezium's intended Connect install: debezium-connector-postgres/*.jar.
  [[ -f "$PLUGINS/.complete" ]] && return 0
  need_maven "the Debezium PostgreSQL connector"
  echo "connect.sh: fetching the Debezium PostgreSQL connector $DEBEZIUM_VERSION from Maven Central into $PLUGINS" >&2
  local download="$PLUGINS.download"
  rm -rf "$PLUGINS.tmp" "$download" && mkdir -p "$PLUGINS.tmp" "$download"
  # Run from a scratch folder: without a pom, the plugin writes its marker files under a
  # literal '${project.basedir}' folder in the working directory.
  (cd "$download" && mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
      -Dartifact="io.debezium:debezium-connector-postgres:$DEBEZIUM_VERSION:tar.gz:plugin" \
      -DoutputDirectory="$download" >&2) \
    || die "could not fetch the Debezium PostgreSQL connector $DEBEZIUM_VERSION with Maven (see the output above)"
  local tarball="$download/debezium-connector-postgres-$DEBEZIUM_VERSION-plugin.tar.gz"
  [[ -f "$tarball" ]] || die "the download holds no $(basename "$tarball")"
  tar xzf "$tarball" -C "$PLUGINS.tmp" || die "could not unpack $tarball"
  rm -rf "$download"
  compgen -G "$PLUGINS.tmp/debezium-connector-postgres/*.jar" >/dev/null \
    || die "the Debezium tarball holds no debezium-connector-postgres/*.jar"
  touch "$PLUGINS.tmp/.complete"
  rm -rf "$PLUGINS" && mv "$PLUGINS.tmp" "$PLUGINS"
}

write_config() {
  local port="$1" run_id
  run_id="$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
  cat > "$RUN/worker.properties" <<CONF
bootstrap.servers=$KAFKA_BOOTSTRAP
group.id=cdc-connect-$run_id
key.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=false
config.storage.topic=cdc-connect-$run_id-configs
config.storage.replication.factor=1
offset.storage.topic=cdc-connect-$run_id-offsets
offset.storage.replication.factor=1
offset.storage.partitions=1
status.storage.topic=cdc-connect-$run_id-status
status.storage.replication.factor=1
status.storage.partitions=1
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:$port
rest.advertised.host.name=127.0.0.1
plugin.path=$PLUGINS
plugin.discovery=service_load
CONF
}

start() {
  if is_running; then cat "$RUN/rest"; return 0; fi
  [[ -n "${KAFKA_BOOTSTRAP:-}" ]] \
    || die "KAFKA_BOOTSTRAP is required: the broker's host:port (what scripts/kafka.sh start prints)"
  need_java
  fetch_jars
  fetch_plugin
  local port
  if [[ -n "${CONNECT_PORT:-}" ]]; then
    port="$CONNECT_PORT"
    port_in_use "$port" && die "port $port (CONNECT_PORT) is already in use on 127.0.0.1; free it or choose another"
  else
    port="$(free_port)"
  fi
  rm -rf "$RUN" && mkdir -p "$RUN"
  write_config "$port"
  local url="http://127.0.0.1:$port" started=$SECONDS
  # 256 MiB of heap is ample for a test worker (measured: ~210 MB RSS with one connector).
  nohup java -Xms64m -Xmx256m -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$ROOT/scripts/connect/log4j2.properties" \
      -Dconnect.log.file="$RUN/connect.log" -cp "$JARS/*" \
      org.apache.kafka.connect.cli.ConnectDistributed "$RUN/worker.properties" \
      > "$RUN/connect.out" 2>&1 </dev/null &
  echo $! > "$RUN/pid"
  until rest plugin "$url" "$PLUGIN_CLASS"; do
    if ! is_running; then
      if grep -q "Address already in use" "$RUN/connect.log" "$RUN/connect.out" 2>/dev/null; then
        die "port $port is already in use on 127.0.0.1 (the worker could not bind)"
      fi
      die "the worker exited during start-up; last lines of its log:
$(tail -n 20 "$RUN/connect.log" 2>/dev/null; tail -n 20 "$RUN/connect.out" 2>/dev/null)"
    fi
    if (( SECONDS - started > START_TIMEOUT )); then
      stop_process 20
      die "the worker did not list $PLUGIN_CLASS within ${START_TIMEOUT}s (see $RUN/connect.log)"
    fi
    sleep 0.3
  done
  echo "$url" > "$RUN/rest"
  echo "connect.sh: worker ready at $url in $((SECONDS - started))s" >&2
  echo "$url"
}

stop() {
  if is_running && [[ -f "$RUN/rest" ]]; then
    # Deleting first lets each task stop cleanly and release its replication slot.
    rest delete-all "$(cat "$RUN/rest")" 15 || echo "connect.sh: could not delete every connector; stopping anyway" >&2
  fi
  stop_process 20
  rm -rf "$RUN"
}

register() {
  [[ $# -eq 2 ]] || die "usage: scripts/connect.sh register NAME FILE"
  [[ -f "$2" ]] || die "no connector config file $2"
  local url; url="$(rest_url)"
  rest register "$url" "$1" "$2" "$RUNNING_TIMEOUT" || exit 1
}

delete() {
  [[ $# -eq 1 ]] || die "usage: scripts/connect.sh delete NAME"
  local url; url="$(rest_url)"
  rest delete "$url" "$1" "$RUNNING_TIMEOUT" || exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) is_running && cat "$RUN/rest" ;;
  register) shift; register "$@" ;;
  delete) shift; delete "$@" ;;
  *) echo "usage: scripts/connect.sh start|stop|status|register NAME FILE|delete NAME" >&2; exit 2 ;;
esac
