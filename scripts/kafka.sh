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
#   KAFKA_SECURITY     plaintext (default) or sasl_ssl: the only client listener is then
#                      SASL_SSL (SCRAM-SHA-512 over TLS, no client certificates), with ACLs on
#   KAFKA_CERT_DIR     sasl_ssl: TLS material from scripts/certs.sh, made when it has no ca.pem
#                      (default: <run dir>/certs, deleted by stop)
#   KAFKA_SCRAM_USERS  sasl_ssl: comma-separated name:password pairs made at format time, letters,
#                      digits, '.', '_' and '-' only; the first is the super user (the admin)
#                      (default: admin:admin-secret)
#
# In sasl_ssl mode <run dir>/client.env (mode 600) holds the admin's client settings as
# KAFKA_<LIBRDKAFKA PROPERTY>=value lines, the property upper-cased with dots as underscores:
# KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISMS, KAFKA_SASL_USERNAME,
# KAFKA_SASL_PASSWORD and KAFKA_SSL_CA_LOCATION. Passwords never go on a command line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CERT_CONSUMER_CACHE:-$ROOT/.cache}"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")"
JARS="$CACHE/kafka-jars-$KAFKA_VERSION"
RUN="${KAFKA_RUN_DIR:-$CACHE/kafka-run}"
TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
SECURITY="${KAFKA_SECURITY:-plaintext}"
CERTS="${KAFKA_CERT_DIR:-$RUN/certs}"

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
  {
    cat <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
CONF
    if [[ "$SECURITY" == sasl_ssl ]]; then
      cat <<CONF
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_SSL://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
CONF
    else
      cat <<CONF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
CONF
    fi
    cat <<CONF
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
    if [[ "$SECURITY" == sasl_ssl ]]; then secured_config; fi
  } > "$RUN/server.properties"
}

parse_scram_users() {
  # KAFKA_SCRAM_USERS into SCRAM_NAMES and SCRAM_PASSWORDS; messages never show a password.
  local pairs pair i=0
  SCRAM_NAMES=() SCRAM_PASSWORDS=()
  IFS=, read -ra pairs <<< "${KAFKA_SCRAM_USERS:-admin:admin-secret}"
  for pair in ${pairs[@]+"${pairs[@]}"}; do
    i=$((i + 1))
    [[ "$pair" =~ ^([A-Za-z0-9._-]+):([A-Za-z0-9._-]+)$ ]] \
      || die "KAFKA_SCRAM_USERS: entry $i is not name:password (letters, digits, '.', '_', '-')"
    SCRAM_NAMES+=("${BASH_REMATCH[1]}")
    SCRAM_PASSWORDS+=("${BASH_REMATCH[2]}")
  done
  (( ${#SCRAM_NAMES[@]} > 0 )) || die "KAFKA_SCRAM_USERS names no user"
}

secured_config() {
  # SASL_SSL for clients and inter-broker traffic (the broker logs in as the admin). KRaft
  # controllers cannot check SCRAM (its credentials live in the metadata log they serve), so the
  # CONTROLLER listener, on 127.0.0.1, takes SASL PLAIN with one static user, "controller", whose
  # password is drawn at start: no principal is anonymous anywhere, and only the admin and the
  # controller are super users.
  cat <<CONF
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${SCRAM_NAMES[0]}" password="${SCRAM_PASSWORDS[0]}";
ssl.keystore.type=PEM
ssl.keystore.location=$RUN/keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$CERTS/ca.pem
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$CONTROLLER_PASSWORD" user_controller="$CONTROLLER_PASSWORD";
super.users=User:${SCRAM_NAMES[0]};User:controller
CONF
}

prepare_secured() {
  # TLS material, the broker's PEM keystore (key + certificate), the storage tool's --add-scram
  # arguments (an @file, so no password shows in ps), the format log and client.env: all in $RUN,
  # owner-only.
  local port="$1" i
  CONTROLLER_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  "$ROOT/scripts/certs.sh" "$CERTS" || die "could not make TLS material in $CERTS"
  CERTS="$(cd "$CERTS" && pwd)"
  (
    umask 077
    cat "$CERTS/server.key" "$CERTS/server.pem" > "$RUN/keystore.pem"
    : > "$RUN/format.log"  # it lists the SCRAM records (stored and server keys)
    for i in "${!SCRAM_NAMES[@]}"; do
      printf -- '--add-scram\nSCRAM-SHA-512=[name=%s,password=%s]\n' "${SCRAM_NAMES[$i]}" "${SCRAM_PASSWORDS[$i]}"
    done > "$RUN/format.args"
    cat > "$RUN/client.env" <<ENV
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$port
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISMS=SCRAM-SHA-512
KAFKA_SASL_USERNAME=${SCRAM_NAMES[0]}
KAFKA_SASL_PASSWORD=${SCRAM_PASSWORDS[0]}
KAFKA_SSL_CA_LOCATION=$CERTS/ca.pem
ENV
  )
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
  # A real metadata request, when a python with confluent-kafka is at hand; in sasl_ssl mode
  # as the admin, with the settings (password included) read from client.env.
  local py="${PYTHON:-python3}" client=()
  "$py" -c 'import confluent_kafka' 2>/dev/null || return 0
  [[ -f "$RUN/client.env" ]] && client=("$RUN/client.env")
  "$py" -c 'import sys
from confluent_kafka.admin import AdminClient
conf = {"bootstrap.servers": sys.argv[1]}
for line in open(sys.argv[2]) if len(sys.argv) > 2 else ():
    key, _, value = line.rstrip("\n").partition("=")
    if key.startswith("KAFKA_") and key != "KAFKA_BOOTSTRAP_SERVERS":
        conf[key[6:].lower().replace("_", ".")] = value
md = AdminClient(conf).list_topics(timeout=5)
sys.exit(0 if md.brokers else 1)' "$1" ${client[@]+"${client[@]}"} 2>/dev/null
}

start() {
  if is_running; then cat "$RUN/bootstrap"; return 0; fi
  case "$SECURITY" in
    plaintext) ;;
    sasl_ssl) parse_scram_users ;;
    *) die "KAFKA_SECURITY must be plaintext or sasl_ssl, not '$SECURITY'" ;;
  esac
  need_java
  fetch_jars
  local port cport format=() formatted=0
  if [[ -n "${KAFKA_PORT:-}" ]]; then
    port="$KAFKA_PORT"
    port_in_use "$port" && die "port $port (KAFKA_PORT) is already in use on 127.0.0.1; free it or choose another"
  else
    port="$(free_port)"
  fi
  cport="$(free_port)"
  [[ "$cport" == "$port" ]] && cport="$(free_port)"
  rm -rf "$RUN" && mkdir -p "$RUN/data"
  if [[ "$SECURITY" == sasl_ssl ]]; then
    prepare_secured "$port"
    format=("@$RUN/format.args")
    (umask 077 && write_config "$port" "$cport")  # it holds the admin's password
  else
    write_config "$port" "$cport"
  fi
  jvm_args
  "${JVM[@]}" kafka.tools.StorageTool format --standalone --cluster-id="$(cluster_id)" \
      -c "$RUN/server.properties" ${format[@]+"${format[@]}"} > "$RUN/format.log" 2>&1 \
    || formatted=$?
  rm -f "$RUN/format.args"
  (( formatted == 0 )) || die "formatting KRaft storage failed: $(tail -n 3 "$RUN/format.log" | tr '\n' ' ')"
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
