#!/usr/bin/env bash
# Benchmarks gantry's embedded registry against Debian's docker-registry
# (distribution/distribution 2.8), same run, same client:
#
#   - push a ~1 GB image (random, already-gzipped layers, so no client spends
#     the run compressing) from an OCI layout with skopeo, to each registry;
#   - pull it with skopeo into a local dir:, from each;
#   - copy it between two repositories of the same registry (a cross-repo
#     mount: no layer bytes should move);
#   - docker pull + docker tag + docker push to another repository, for
#     comparison with what a docker user sees.
#
# Usage: bench/registry.sh            (SIZE_MB=1024 LAYERS=4 by default)
#    or: cargo run --release -p gantry-registry --example serve -- DATA_DIR ADDR
#        to serve the registry on its own.
# Needs: cargo, skopeo, /usr/bin/docker-registry, docker (dockerd running),
# gzip, python3 (to find free ports). Leaves nothing behind.
set -euo pipefail

SIZE_MB=${SIZE_MB:-1024}
LAYERS=${LAYERS:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/gantry-registry-bench.XXXXXX)
PIDS=()
IMAGES=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for image in "${IMAGES[@]}"; do docker rmi -f "$image" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

now() { date +%s.%N; }

# report LABEL START END [BYTES]
report() {
    python3 - "$@" <<'EOF'
import sys
label, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
secs = end - start
line = f"{label:<58} {secs:8.2f} s"
if len(sys.argv) > 4 and sys.argv[4] and secs > 0:
    line += f"   {int(sys.argv[4]) / secs / 1e6:8.1f} MB/s"
print(line)
EOF
}

# SERVE=path/to/serve skips the build (e.g. while another crate of the
# workspace doesn't compile).
if [ -z "${SERVE:-}" ]; then
    echo "== building the standalone registry (release)"
    (cd "$ROOT" && cargo build --release --quiet -p gantry-registry --example serve)
    SERVE="$ROOT/target/release/examples/serve"
fi

echo "== making a ${SIZE_MB} MB image of ${LAYERS} random layers"
LAYOUT="$WORK/layout"
mkdir -p "$LAYOUT/blobs/sha256" "$WORK/files"
PER_MB=$((SIZE_MB / LAYERS))
for i in $(seq 1 "$LAYERS"); do
    (
        head -c "${PER_MB}M" /dev/urandom >"$WORK/files/layer$i.bin"
        tar -C "$WORK/files" --numeric-owner --owner=0 --group=0 -cf "$WORK/layer$i.tar" "layer$i.bin"
        rm "$WORK/files/layer$i.bin"
        gzip -1 -c "$WORK/layer$i.tar" >"$WORK/layer$i.tar.gz"
    ) &
done
wait
blob() { # moves a file into the layout; prints "digest size"
    local hex size
    hex=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$LAYOUT/blobs/sha256/$hex"
    echo "sha256:$hex $size"
}
DIFF_IDS=""
LAYER_DESCS=""
TOTAL=0
for i in $(seq 1 "$LAYERS"); do
    diff_id="sha256:$(sha256sum "$WORK/layer$i.tar" | cut -d' ' -f1)"
    rm "$WORK/layer$i.tar"
    read -r digest size < <(blob "$WORK/layer$i.tar.gz")
    TOTAL=$((TOTAL + size))
    DIFF_IDS+="${DIFF_IDS:+,}\"$diff_id\""
    LAYER_DESCS+="${LAYER_DESCS:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$digest\",\"size\":$size}"
done
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/layer1.bin"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$DIFF_IDS" >"$WORK/config.json"
read -r config_digest config_size < <(blob "$WORK/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$config_digest" "$config_size" "$LAYER_DESCS" >"$WORK/manifest.json"
read -r manifest_digest manifest_size < <(blob "$WORK/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"big"}}]}' \
    "$manifest_digest" "$manifest_size" >"$LAYOUT/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
# Both pushes read the layout from the page cache, not just the second.
cat "$LAYOUT"/blobs/sha256/* >/dev/null
echo "image: $manifest_digest, $((TOTAL / 1000000)) MB in ${LAYERS} layers"

echo "== starting both registries"
EMB_PORT=$(free_port)
# The embedded registry needs a token (the peer runs without auth); docker
# logs in with it through a config dir of this run's own.
TOKEN="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export DOCKER_CONFIG="$WORK/docker-config"
mkdir -p "$DOCKER_CONFIG"
GANTRY_REGISTRY_TOKEN="$TOKEN" "$SERVE" "$WORK/gantry" "127.0.0.1:$EMB_PORT" >"$WORK/gantry.log" 2>&1 &
PIDS+=($!)
PEER_PORT=$(free_port)
mkdir -p "$WORK/peer"
cat >"$WORK/peer.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/peer}}
http: {addr: 127.0.0.1:$PEER_PORT}
EOF
/usr/bin/docker-registry serve "$WORK/peer.yml" >"$WORK/peer.log" 2>&1 &
PIDS+=($!)
wait_port "$EMB_PORT"
wait_port "$PEER_PORT"
EMB="127.0.0.1:$EMB_PORT"
PEER="127.0.0.1:$PEER_PORT"
echo "gantry registry on $EMB, docker-registry on $PEER"
echo "$TOKEN" | docker login "$EMB" -u gantry --password-stdin >/dev/null

SKOPEO=(skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false
    --src-creds "gantry:$TOKEN" --dest-creds "gantry:$TOKEN")
timed() { # timed LABEL BYTES COMMAND...
    local label=$1 bytes=$2 start end
    shift 2
    start=$(now)
    "$@" >/dev/null
    end=$(now)
    report "$label" "$start" "$end" "$bytes"
}

echo
echo "== results (${TOTAL} bytes of layers)"
for target in "gantry:$EMB" "docker-registry:$PEER"; do
    name=${target%%:*}
    addr=${target#*:}
    timed "skopeo push oci layout -> $name" "$TOTAL" \
        "${SKOPEO[@]}" "oci:$LAYOUT:big" "docker://$addr/bench/big:1"
done
for target in "gantry:$EMB" "docker-registry:$PEER"; do
    name=${target%%:*}
    addr=${target#*:}
    timed "skopeo pull $name -> dir:" "$TOTAL" \
        "${SKOPEO[@]}" "docker://$addr/bench/big:1" "dir:$WORK/pull-$name"
    rm -rf "$WORK/pull-$name"
done
for target in "gantry:$EMB" "docker-registry:$PEER"; do
    name=${target%%:*}
    addr=${target#*:}
    timed "skopeo copy repo -> repo within $name (mount)" "" \
        "${SKOPEO[@]}" "docker://$addr/bench/big:1" "docker://$addr/bench/copy:1"
done
for target in "gantry:$EMB" "docker-registry:$PEER"; do
    name=${target%%:*}
    addr=${target#*:}
    IMAGES+=("$addr/bench/big:1" "$addr/bench/docker:1")
    timed "docker pull from $name" "$TOTAL" docker pull "$addr/bench/big:1"
    docker tag "$addr/bench/big:1" "$addr/bench/docker:1"
    timed "docker tag + push to another repo of $name" "" docker push "$addr/bench/docker:1"
    docker rmi "$addr/bench/big:1" "$addr/bench/docker:1" >/dev/null
done
# skopeo's copies must keep the manifest digest (docker's push re-writes the
# manifest as Docker schema 2, so its digest differs by design).
for ref in "$EMB/bench/big:1" "$EMB/bench/copy:1" "$PEER/bench/big:1" "$PEER/bench/copy:1" "$EMB/bench/docker:1"; do
    d=$(skopeo inspect --tls-verify=false --creds "gantry:$TOKEN" --format '{{.Digest}}' "docker://$ref")
    echo "digest of $ref: $d"
done
echo "gantry data dir: $(du -sm "$WORK/gantry" | cut -f1) MB; docker-registry: $(du -sm "$WORK/peer" | cut -f1) MB"
