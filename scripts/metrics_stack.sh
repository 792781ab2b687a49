#!/usr/bin/env bash
# Prometheus (and Grafana, where installed) for a running memroute Ray cluster, from the configs Ray itself writes.
#
#   scripts/metrics_stack.sh start  [RAY_TEMP_DIR]   # default /tmp/ray-memroute (what `memroute cluster up` uses)
#   scripts/metrics_stack.sh status [RAY_TEMP_DIR]
#   scripts/metrics_stack.sh stop
#
# What Ray expects (docs/cluster.md, "Monitoring"): every node serves Prometheus text on its metrics export port;
# the head writes <temp_dir>/session_latest/metrics/prometheus/prometheus.yml, which scrapes the ports listed in
# the session's prom_metrics_service_discovery.json, and <...>/metrics/grafana/ (grafana.ini, provisioning, Ray's
# dashboards). The Ray dashboard's Metrics view embeds Grafana panels; it looks for Prometheus on
# http://localhost:9090 and Grafana on http://localhost:3000 unless RAY_PROMETHEUS_HOST / RAY_GRAFANA_HOST were set
# when the head started. So this script starts them on exactly those ports, with exactly those configs.
#
# `ray metrics launch-prometheus` is Ray's own one-liner, but it downloads Prometheus from GitHub and reads only
# /tmp/ray's config; offline, or for a cluster with its own --temp-dir, use a local binary: Debian/Ubuntu
# `apt-get install prometheus` (what this script finds on PATH, or set PROMETHEUS_BIN). Grafana is in neither
# Debian's archive nor PyPI: install it from grafana.com (apt repository or tarball) where that is reachable.
set -euo pipefail

ACTION="${1:-start}"
TEMP_DIR="${2:-/tmp/ray-memroute}"
STATE="${METRICS_STATE_DIR:-runs/cluster/metrics}"   # pid files, logs, Prometheus' data
PROM_ADDR="${PROM_ADDR:-127.0.0.1:9090}"
GRAFANA_PORT="${GRAFANA_PORT:-3000}"
SESSION="$TEMP_DIR/session_latest"
PROM_CFG="$SESSION/metrics/prometheus/prometheus.yml"
GRAFANA_INI="$SESSION/metrics/grafana/grafana.ini"

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
# already NAME: true (and says so) when NAME's pid file names a live process
already() { running "$STATE/$1.pid" && echo "$1: already running (pid $(cat "$STATE/$1.pid"))"; }
# launch NAME CMD...: CMD in the background, its output in $STATE/NAME.log, its pid in $STATE/NAME.pid
launch() { local name=$1; shift; nohup "$@" >"$STATE/$name.log" 2>&1 </dev/null & echo $! >"$STATE/$name.pid"; }

start_prometheus() {
    local bin="${PROMETHEUS_BIN:-$(command -v prometheus || true)}"
    if [[ -z "$bin" ]]; then
        echo "Prometheus: no binary found (PATH or PROMETHEUS_BIN). Install it with 'apt-get install prometheus'"
        echo "  (Debian/Ubuntu) or from prometheus.io; 'ray metrics launch-prometheus' would download it from GitHub,"
        echo "  which needs internet access and reads only /tmp/ray's config."
        return 1
    fi
    already prometheus && return 0
    launch prometheus "$bin" --config.file="$PROM_CFG" --storage.tsdb.path="$STATE/prometheus-data" \
        --web.listen-address="$PROM_ADDR" --web.enable-lifecycle
    for _ in $(seq 30); do
        if curl -fsS "http://$PROM_ADDR/-/ready" >/dev/null 2>&1; then
            echo "Prometheus: http://$PROM_ADDR (pid $(cat "$STATE/prometheus.pid"), scraping what $PROM_CFG lists)"
            echo "  try: curl -s 'http://$PROM_ADDR/api/v1/query?query=ray_memroute_rl_reward'"
            return 0
        fi
        sleep 1
    done
    echo "Prometheus: did not become ready; see $STATE/prometheus.log"
    return 1
}

start_grafana() {
    local bin="${GRAFANA_BIN:-$(command -v grafana-server || command -v grafana || true)}"
    if [[ -z "$bin" ]]; then
        echo "Grafana: not installed (it is in neither Debian's archive nor PyPI; get it from grafana.com's apt"
        echo "  repository or tarball). Without it the Ray dashboard's Metrics view stays empty; Prometheus above"
        echo "  has every series, and Ray's dashboards for Grafana are in $SESSION/metrics/grafana/dashboards/."
        return 0
    fi
    already grafana && return 0
    local home="${GRAFANA_HOME:-/usr/share/grafana}"
    local args=(--config "$GRAFANA_INI" --homepath "$home" "cfg:server.http_port=$GRAFANA_PORT"
                "cfg:server.http_addr=127.0.0.1" "cfg:paths.data=$STATE/grafana-data")
    [[ "$(basename "$bin")" == grafana ]] && args=(server "${args[@]}")
    launch grafana "$bin" "${args[@]}"
    echo "Grafana: http://127.0.0.1:$GRAFANA_PORT (pid $(cat "$STATE/grafana.pid"); Ray's dashboards provisioned)"
}

stop_one() {
    local pidfile="$STATE/$1.pid"
    if running "$pidfile"; then
        kill "$(cat "$pidfile")" && echo "$1: stopped (pid $(cat "$pidfile"))"
    else
        echo "$1: not running"
    fi
    rm -f "$pidfile"
}

case "$ACTION" in
    start)
        if [[ ! -f "$PROM_CFG" ]]; then
            echo "no $PROM_CFG: is a Ray head running with --temp-dir=$TEMP_DIR? (start one: memroute cluster up)"
            exit 2
        fi
        mkdir -p "$STATE"
        prom_rc=0
        start_prometheus || prom_rc=$?
        start_grafana
        exit "$prom_rc"
        ;;
    stop)
        stop_one grafana
        stop_one prometheus
        ;;
    status)
        for name in prometheus grafana; do
            if running "$STATE/$name.pid"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"
            else echo "$name: not running"; fi
        done
        if curl -fsS "http://$PROM_ADDR/api/v1/targets" >/dev/null 2>&1; then
            curl -fsS "http://$PROM_ADDR/api/v1/targets" | python3 -c 'import json,sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print("  target", t["scrapeUrl"], t["health"])'
        fi
        ;;
    *)
        echo "usage: $0 start|stop|status [RAY_TEMP_DIR]" >&2
        exit 2
        ;;
esac
