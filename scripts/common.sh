# Shared by scripts/demo and scripts/test: installs what is missing and
# finds the built artefacts. Source it from the repository root.

APT_PACKAGES="libclang-dev libpcre2-dev zlib1g-dev libssl-dev make pkg-config apache2-utils faketime wrk curl rclone libio-socket-ssl-perl openssl ca-certificates valgrind"
S3S_FS_VERSION="0.14.1"
# module:pip-package (the pip name defaults to the module's); awscli and
# s3cmd are the real clients of tests/integration/test_clients.py.
PY_PACKAGES="pytest botocore awscli S3:s3cmd"

log() { printf '==> %s\n' "$*" >&2; }

ensure_apt() {
    local missing=() p
    for p in $APT_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Debian's nginx and its module build tree, for the system-nginx build
# route test (tests/integration/test_build_routes.py). The package must not
# start a server here: a policy-rc.d refuses service starts while it is
# installed. Failure is not fatal: the test then says why it skips.
ensure_system_nginx() {
    if dpkg -s nginx nginx-dev lintian >/dev/null 2>&1; then
        return 0
    fi
    log "installing Debian's nginx, nginx-dev and lintian (for the system-nginx build and package tests)"
    local sudo="" policy=/usr/sbin/policy-rc.d added=0
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && added=1
    fi
    $sudo apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx nginx-dev lintian >/dev/null \
        || log "could not install nginx nginx-dev lintian: the system-nginx tests will be skipped"
    [ "$added" = 0 ] || $sudo rm -f "$policy"
}

ensure_s3s_fs() {
    export PATH="$HOME/.cargo/bin:$PATH"
    if ! s3s-fs --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
        log "installing s3s-fs $S3S_FS_VERSION (cargo install, takes a few minutes)"
        cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --quiet
    fi
}

ensure_python() {
    local p missing=()
    for p in $PY_PACKAGES; do
        python3 -c "import ${p%%:*}" 2>/dev/null || missing+=("${p#*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing Python packages: ${missing[*]}"
        python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}"
    fi
}

build_module() {
    log "building the module and the vendored nginx (cargo build --release)"
    cargo build --release --quiet
    MODULE_SO="$PWD/target/release/libngx_http_aws_auth_module.so"
    NGINX_BIN=$(ls -t target/release/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -n 1)
    if [ -z "$NGINX_BIN" ] || [ ! -f "$MODULE_SO" ]; then
        echo "build did not produce nginx and the module" >&2
        return 1
    fi
    NGINX_BIN="$PWD/$NGINX_BIN"
    export MODULE_SO NGINX_BIN
}

# The module with the cargo feature count-allocations (tests only), built
# in the main target directory, so that it shares every compiled crate
# with the module (only the module's own crate compiles again), then copied
# out to target/count-allocations: $NGX_COUNTING_MODULE. The module without
# the feature is built again last, so target/release holds the real one.
build_counting_module() {
    log "building the allocation-counting module for the tests (target/count-allocations)"
    local dir=target/count-allocations/release
    cargo build --release --quiet --lib --features count-allocations
    mkdir -p "$dir"
    cp target/release/libngx_http_aws_auth_module.so "$dir/libngx_http_aws_auth_module.so.new"
    mv "$dir/libngx_http_aws_auth_module.so.new" "$dir/libngx_http_aws_auth_module.so"
    NGX_COUNTING_MODULE="$PWD/$dir/libngx_http_aws_auth_module.so"
    export NGX_COUNTING_MODULE
    build_module
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
