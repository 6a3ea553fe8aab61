# Shared by scripts/kafka.sh, scripts/registry.sh and scripts/connect.sh: ports, pid files,
# stopping, and fetching a pom's jars.
# The sourcing script defines NAME (for messages) and RUN (its state folder) first.

die() { echo "$NAME: $*" >&2; exit 1; }

need_java() {
  command -v java >/dev/null 2>&1 || die "Java 17+ is required (no 'java' on PATH); install a JDK 17 and retry"
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/ *java.specification.version = //p')"
  [[ "${major%%.*}" -ge 17 ]] 2>/dev/null || die "Java 17+ is required, found Java ${major:-unknown}"
}

need_maven() {
  command -v mvn >/dev/null 2>&1 || die "Maven is required to fetch $1 (no 'mvn' on PATH)"
}

fetch_pom_jars() {
  # fetch_pom_jars POM DEST WHAT: the runtime jars of POM into DEST, once (DEST/.complete).
  local pom="$1" dest="$2" what="$3"
  [[ -f "$dest/.complete" ]] && return 0
  need_maven "$what"
  echo "$NAME: fetching $what from Maven Central into $dest" >&2
  rm -rf "$dest.tmp"
  mvn -q -B -f "$pom" dependency:copy-dependencies \
      -DoutputDirectory="$dest.tmp" -DincludeScope=runtime >&2 \
    || die "could not fetch $what with Maven (see the output above)"
  touch "$dest.tmp/.complete"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
}

free_port() {
  # Bind port 0 and report what the kernel chose; the tiny race is acceptable for tests.
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_in_use() {
  python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: sys.exit(0)
sys.exit(1)' "$1"
}

is_running() {
  [[ -f "$RUN/pid" ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null
}

stop_process() {
  # SIGTERM, wait up to $1 seconds, then SIGKILL.
  local seconds="$1"
  is_running || return 0
  local pid; pid="$(cat "$RUN/pid")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((seconds * 5))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  echo "$NAME: process $pid did not stop in ${seconds}s, killing it" >&2
  kill -9 "$pid" 2>/dev/null || true
}
