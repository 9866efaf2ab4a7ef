#!/usr/bin/env bash
# Sourced by deploy/*.sh and kvdb.sh: ensure_docker makes `docker` usable on a fresh Debian machine.
# Installs Debian's docker.io (20.10, API 1.41 — hence Testcontainers 3.6.0) and debootstrap when they are
# missing (needs root and the apt mirror), and starts dockerd in the background when its socket does not answer,
# waiting at most KVDB_DOCKER_WAIT_S seconds (default 60) for it. Returns non-zero (with a message on stderr)
# when Docker cannot be made to answer; callers decide whether that is fatal.

kvdb_docker_log() { echo "docker-env: $*" >&2; }

ensure_docker() {
  local need=()
  [ -x /usr/sbin/dockerd ] || need+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      kvdb_docker_log "missing ${need[*]} and cannot install them (needs root and apt-get)"
      return 1
    fi
    kvdb_docker_log "installing ${need[*]} (log: /tmp/kvdb-docker-apt.log)"
    # A package's service start may fail without systemd; what counts is that the binaries are there afterwards.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/kvdb-docker-apt.log 2>&1 \
      || { apt-get update -q >>/tmp/kvdb-docker-apt.log 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >>/tmp/kvdb-docker-apt.log 2>&1; } \
      || true
    if [ ! -x /usr/sbin/dockerd ] || [ ! -x /usr/sbin/debootstrap ]; then
      kvdb_docker_log "apt-get install ${need[*]} failed; last lines of /tmp/kvdb-docker-apt.log:"
      tail -5 /tmp/kvdb-docker-apt.log >&2 || true
      return 1
    fi
  fi
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    kvdb_docker_log "the Docker daemon does not answer and only root can start it"
    return 1
  fi
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    kvdb_docker_log "starting dockerd (log: /tmp/dockerd.log)"
    # setsid: the daemon outlives this script (and the CI step that ran it).
    setsid nohup /usr/sbin/dockerd --host unix:///var/run/docker.sock >/tmp/dockerd.log 2>&1 < /dev/null &
  fi
  local waited=0 limit="${KVDB_DOCKER_WAIT_S:-60}"
  until [ -S /var/run/docker.sock ] && docker info >/dev/null 2>&1; do
    if [ "$waited" -ge "$limit" ]; then
      kvdb_docker_log "dockerd did not answer within ${limit}s; last lines of /tmp/dockerd.log:"
      tail -5 /tmp/dockerd.log >&2 2>/dev/null || true
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  return 0
}
