#!/usr/bin/env bash
# A single-node Apache Kafka 4.x broker (KRaft, combined broker+controller) for tests and local runs.
#
#   scripts/kafka.sh start   fetch the jars (cached), format storage, start, wait, print bootstrap
#   scripts/kafka.sh stop    stop the broker started by `start` and delete its data
#   scripts/kafka.sh status  print the bootstrap address if running, exit 1 otherwise
#   scripts/kafka.sh halt    stop the broker but keep its data and port (outage tests)
#   scripts/kafka.sh resume  start a halted broker again on the same data and port
#
# Environment (all optional):
#   KAFKA_PORT         broker port (default: a free port chosen at start)
#   KAFKA_RUN_DIR      state folder: data, logs, pid, bootstrap (default: .cache/kafka-run)
#   CERT_CONSUMER_CACHE  jar cache root (default: <repo>/.cache)
#   KAFKA_START_TIMEOUT  seconds to wait for readiness (default: 120)
#   PYTHON             a python with confluent-kafka, used for the metadata readiness probe
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CERT_CONSUMER_CACHE:-$ROOT/.cache}"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")"
JARS="$CACHE/kafka-jars-$KAFKA_VERSION"
RUN="${KAFKA_RUN_DIR:-$CACHE/kafka-run}"
TIMEOUT="${KAFKA_START_TIMEOUT:-120}"

NAME=kafka.sh
# shellcheck source=scripts/lib/processes.sh
source "$ROOT/scripts/lib/processes.sh"

fetch_jars() {
  fetch_pom_jars "$ROOT/scripts/kafka/pom.xml" "$JARS" "the Kafka $KAFKA_VERSION jars"
}

jvm_args() {
  # Heap as in Kafka's own scripts (KAFKA-19890 is why not lower).
  JVM=(java -Xms1G -Xmx1G -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
       -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties"
       -Dkafka.log.file="$RUN/broker.log" -cp "$JARS/*")
}

write_config() {
  local port="$1" cport="$2"
  cat > "$RUN/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$RUN/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.flush.interval.messages=1000000
CONF
}

cluster_id() {
  # A KRaft cluster id is a URL-safe base64 UUID. One that starts with '-' would be read as an
  # option by the storage tool (1 run in 64 failed that way), so draw until it does not.
  python3 -c 'import base64,uuid
while True:
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not cid.startswith("-"):
        break
print(cid)'
}

probe_metadata() {
  # A real metadata request, when a python with confluent-kafka is at hand.
  local py="${PYTHON:-python3}"
  "$py" -c 'import confluent_kafka' 2>/dev/null || return 0
  "$py" -c 'import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=5)
sys.exit(0 if md.brokers else 1)' "$1" 2>/dev/null
}

start() {
  if is_running; then cat "$RUN/bootstrap"; return 0; fi
  need_java
  fetch_jars
  local port cport
  if [[ -n "${KAFKA_PORT:-}" ]]; then
    port="$KAFKA_PORT"
    port_in_use "$port" && die "port $port (KAFKA_PORT) is already in use on 127.0.0.1; free it or choose another"
  else
    port="$(free_port)"
  fi
  cport="$(free_port)"
  [[ "$cport" == "$port" ]] && cport="$(free_port)"
  rm -rf "$RUN" && mkdir -p "$RUN/data"
  write_config "$port" "$cport"
  jvm_args
  "${JVM[@]}" kafka.tools.StorageTool format --standalone --cluster-id="$(cluster_id)" \
      -c "$RUN/server.properties" > "$RUN/format.log" 2>&1 \
    || die "formatting KRaft storage failed: $(tail -n 3 "$RUN/format.log" | tr '\n' ' ')"
  launch_and_wait "$port"
}

launch_and_wait() {
  # Start the broker on the config in $RUN and wait until it answers metadata on port $1.
  local port="$1" started=$SECONDS
  "${JVM[@]}" kafka.Kafka "$RUN/server.properties" > "$RUN/stdout.log" 2>&1 </dev/null &
  echo $! > "$RUN/pid"
  while true; do
    if ! is_running; then
      if grep -q "Address already in use" "$RUN/broker.log" "$RUN/stdout.log" 2>/dev/null; then
        die "port $port is already in use on 127.0.0.1 (the broker could not bind)"
      fi
      die "the broker exited during start-up; last lines: $(tail -n 5 "$RUN/stdout.log" "$RUN/broker.log" 2>/dev/null | tr '\n' ' ')"
    fi
    if grep -q "Kafka Server started" "$RUN/broker.log" 2>/dev/null && probe_metadata "127.0.0.1:$port"; then
      break
    fi
    if (( SECONDS - started > TIMEOUT )); then
      stop_broker
      die "the broker was not ready within ${TIMEOUT}s (see $RUN/broker.log)"
    fi
    sleep 0.3
  done
  echo "127.0.0.1:$port" > "$RUN/bootstrap"
  echo "kafka.sh: broker ready at 127.0.0.1:$port in $((SECONDS - started))s" >&2
  echo "127.0.0.1:$port"
}

resume() {
  # Start again a broker stopped by `halt`: same data, same port.
  if is_running; then cat "$RUN/bootstrap"; return 0; fi
  [[ -f "$RUN/server.properties" && -f "$RUN/bootstrap" ]] || die "nothing to resume in $RUN (run start first)"
  local port; port="$(sed 's/.*://' "$RUN/bootstrap")"
  : > "$RUN/broker.log"
  jvm_args
  launch_and_wait "$port"
}

stop_broker() {
  stop_process 30
}

stop() {
  stop_broker
  rm -rf "$RUN"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) is_running && cat "$RUN/bootstrap" ;;
  halt) stop_broker ;;
  resume) resume ;;
  *) echo "usage: scripts/kafka.sh start|stop|status|halt|resume" >&2; exit 2 ;;
esac
