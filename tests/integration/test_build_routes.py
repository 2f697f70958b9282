"""The module built the ways operators and distributions build it, from
the offline source release (``scripts/dist``: sources, vendored crates,
cargo configured to use them), unpacked into an empty directory and built
with an empty ``CARGO_HOME`` and ``CARGO_NET_OFFLINE=true``:

* ``cargo build --release``: the vendored nginx and the module, which loads
  into it;
* nginx's own build system: ``./configure --with-compat
  --add-dynamic-module=<release> && make modules`` on the nginx source
  of the release's vendored nginx-src crate, the .so loaded into the
  vendored nginx binary and run through the core integration tests;
* the Debian package (``scripts/package-deb``, dpkg-buildpackage with
  dh_nginx against ``nginx-dev``): its contents, lintian, then installed
  with apt-get into Debian's nginx (1.22.1), which loads it through
  modules-enabled, passes ``nginx -t``, serves signed objects and runs the
  core tests; purged, nginx still passes ``nginx -t``;
* ``scripts/build-for-system-nginx --install --destdir`` lays out the
  module and the Debian modules-enabled snippet.

All builds share one cargo target directory: the crates compile once.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib

import pytest

import harness
from harness import BUCKET

REPO = harness.REPO_ROOT
ROUTE_TARGET = os.path.join(REPO, "target", "route-build")
with open(os.path.join(REPO, "Cargo.toml"), "rb") as _f:
    VERSION = tomllib.load(_f)["workspace"]["package"]["version"]
PACKAGE = "libnginx-mod-http-aws-auth"
# The core cases: every route, mode and style with a few keys and queries of
# each kind (NGX_TEST_CORPUS=core), uploads, behaviour at the edges.
CORE = [
    "tests/integration/test_s3_get.py",
    "tests/integration/test_behaviour.py",
    "tests/integration/test_uploads.py::test_curl_put_get_delete",
    "tests/integration/test_subrequests.py",
    # role credentials, and STS over nginx's TLS and resolver (the fast ones)
    "tests/integration/test_role_credentials.py::test_ecs_task_role_from_the_environment",
    "tests/integration/test_sts.py::test_assume_role_signed_with_a_secret_key_file",
    "tests/integration/test_sts.py::test_unverifiable_certificate_fails_closed",
    "tests/integration/test_sts.py::test_sts_name_found_with_nginx_resolver",
]


def run_core(nginx_bin: str, module: str) -> str:
    env = dict(os.environ, NGINX_BIN=nginx_bin, NGX_MODULE=module, NGX_TEST_CORPUS="core")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-5000:] + p.stderr[-2000:]
    return p.stdout.strip().splitlines()[-1]


def configure_args(nginx_bin: str) -> list[str]:
    out = subprocess.run([nginx_bin, "-V"], capture_output=True, text=True).stderr
    args = next(l for l in out.splitlines() if l.startswith("configure arguments:"))
    return shlex.split(args.split(":", 1)[1])


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The source release, made by scripts/dist and unpacked into an empty
    directory; and the environment of an offline build from it."""
    p = subprocess.run([os.path.join(REPO, "scripts", "dist")], cwd=REPO, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    tarball = p.stdout.strip().splitlines()[-1]
    assert os.path.basename(tarball) == f"ngx_aws_auth-{VERSION}.tar.gz"
    top = tmp_path_factory.mktemp("release")
    assert os.listdir(top) == []
    with tarfile.open(tarball) as t:
        t.extractall(top, filter="tar")
    tree = top / f"ngx_aws_auth-{VERSION}"
    home = tmp_path_factory.mktemp("empty-cargo-home")
    env = dict(os.environ, CARGO_HOME=str(home), CARGO_NET_OFFLINE="true",
               NGX_AWS_AUTH_TARGET_DIR=ROUTE_TARGET)
    # the rustup proxies stay on the PATH; the crates must come from vendor/
    env["PATH"] = os.pathsep.join([os.path.expanduser("~/.cargo/bin"), env.get("PATH", "")])
    return tarball, tree, env


def test_release_holds_sources_and_vendored_crates(release):
    tarball, tree, _ = release
    config = (tree / ".cargo" / "config.toml").read_text()
    assert 'replace-with = "vendored-sources"' in config and 'directory = "vendor"' in config
    vendored = {n.rsplit("-", 1)[0] for n in os.listdir(tree / "vendor")}
    assert {"ngx", "nginx-sys", "nginx-src", "quick-xml", "zeroize"} <= vendored
    for f in ("Cargo.toml", "Cargo.lock", "config", "config.make", "src/lib.rs", "signer/src/lib.rs",
              "packaging/debian/control", "CHANGELOG.md", "scripts/build-for-system-nginx"):
        assert (tree / f).is_file(), f
    # reproducible: the same commit gives the same bytes
    first = hashlib.sha256(open(tarball, "rb").read()).hexdigest()
    p = subprocess.run([os.path.join(REPO, "scripts", "dist")], cwd=REPO, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert hashlib.sha256(open(tarball, "rb").read()).hexdigest() == first


def test_release_builds_offline_with_cargo(release):
    _, tree, env = release
    p = subprocess.run(["cargo", "build", "--release", "--lib", "--target-dir", ROUTE_TARGET],
                       cwd=tree, env=env, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    so = os.path.join(ROUTE_TARGET, "release", "libngx_http_aws_auth_module.so")
    [nginx] = glob.glob(os.path.join(ROUTE_TARGET, "release", "build", "nginx-sys-*", "out", "objs", "nginx"))
    conf = tree.parent / "load.conf"
    conf.write_text(f"load_module {so};\nevents {{}}\nerror_log stderr;\npid {tree.parent}/nginx.pid;\n")
    p = subprocess.run([nginx, "-t", "-p", str(tree.parent), "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "syntax is ok" in p.stderr, p.stderr


def test_configure_add_dynamic_module(nginx_bin, release, tmp_path):
    _, tree, env = release
    [src] = glob.glob(str(tree / "vendor" / "nginx-src-*" / "nginx"))
    work = tmp_path / "nginx"
    shutil.copytree(src, work)
    # the same configuration as the vendored binary, built in this tree
    args = [a for a in configure_args(nginx_bin) if not a.startswith("--builddir")]
    assert "--with-compat" in args
    configure = "./configure" if (work / "configure").exists() else "auto/configure"
    # linked into the binary, the module's response filters would be
    # dropped: refused, with the reason
    p = subprocess.run([configure, *args, f"--add-module={tree}"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode != 0, p.stdout[-3000:]
    assert "builds with --add-dynamic-module only" in p.stderr, p.stderr[-3000:]
    p = subprocess.run([configure, *args, f"--add-dynamic-module={tree}"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    p = subprocess.run(["make", "-f", "objs/Makefile", "modules"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    so = work / "objs" / "ngx_http_aws_auth_module.so"
    assert so.is_file()
    summary = run_core(nginx_bin, str(so))
    print(f"\n--add-dynamic-module build in the vendored nginx: {summary}")


SYSTEM_NGINX = "/usr/sbin/nginx"
NGINX_DEV = "/usr/share/nginx/src/conf_flags"
INSTALLED = "/usr/lib/nginx/modules/ngx_http_aws_auth_module.so"
ENABLED = "/etc/nginx/modules-enabled/50-mod-http-aws-auth.conf"
AVAILABLE = "/usr/share/nginx/modules-available/mod-http-aws-auth.conf"


def need_debian_nginx():
    if not (os.access(SYSTEM_NGINX, os.X_OK) and os.path.exists(NGINX_DEV)):
        pytest.skip("Debian's nginx and nginx-dev are not installed (scripts/test installs them "
                    "with apt-get where it can)")


@pytest.fixture(scope="module")
def package(release):
    need_debian_nginx()
    tarball, tree, env = release
    # built in the unpacked release the other routes build in: the crates
    # compiled for them are reused
    p = subprocess.run([os.path.join(REPO, "scripts", "package-deb"), "--tarball", tarball,
                        "--tree", str(tree)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    deb = p.stdout.strip().splitlines()[-1]
    assert os.path.basename(deb) == f"{PACKAGE}_{VERSION}_amd64.deb", deb
    return deb


def deb_field(deb: str, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_package_is_what_dh_nginx_makes(package, tmp_path):
    deb = package
    assert deb_field(deb, "Package") == PACKAGE
    assert deb_field(deb, "Version") == VERSION
    abi = next(l.split("=", 1)[1] for l in open("/usr/share/nginx/src/debian/libnginx-mod.abisubstvars")
               if l.startswith("nginx:abi="))
    depends = [d.strip() for d in deb_field(deb, "Depends").split(",")]
    assert abi.strip() in depends, depends
    files = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    for f in (INSTALLED, AVAILABLE, "/usr/bin/ngx-aws-auth-signing-key",
              "/usr/share/man/man1/ngx-aws-auth-signing-key.1.gz",
              f"/usr/share/doc/{PACKAGE}/README.md.gz", f"/usr/share/doc/{PACKAGE}/changelog.gz",
              f"/usr/share/doc/{PACKAGE}/copyright"):
        assert f" .{f}" in files, (f, files)
    # the link is made by the package's scripts, not shipped
    assert "modules-enabled" not in files
    subprocess.run(["dpkg-deb", "-x", deb, str(tmp_path)], check=True)
    assert (tmp_path / AVAILABLE.lstrip("/")).read_text() == \
        "load_module modules/ngx_http_aws_auth_module.so;\n"
    postinst = subprocess.run(["dpkg-deb", "-I", deb, "postinst"], capture_output=True,
                              text=True).stdout
    assert "mod-http-aws-auth.conf:50-mod-http-aws-auth.conf" in postinst
    lint = os.path.join(os.path.dirname(deb), "lintian.txt")
    if os.path.exists(lint):
        assert not [l for l in open(lint) if l.startswith("E: ")], open(lint).read()


def apt(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", "-y", "-q", *args], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def installed(package):
    if os.geteuid() != 0:
        pytest.skip("installing the package needs root")
    apt("purge", PACKAGE)
    p = apt("install", "--no-install-recommends", package)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    try:
        yield package
    finally:
        apt("purge", PACKAGE)


def test_installed_package_loads_into_debian_nginx(installed, s3, signing, tmp_path):
    assert os.path.isfile(INSTALLED)
    assert os.readlink(ENABLED) == AVAILABLE
    # Debian's own configuration, which includes modules-enabled
    p = subprocess.run([SYSTEM_NGINX, "-t"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["ngx-aws-auth-signing-key", "--version"], capture_output=True, text=True)
    assert p.stdout.strip() == f"ngx-aws-auth-signing-key (ngx_aws_auth) {VERSION}", p
    # an example of ours as it is, loading the module by its modules/ name,
    # its key file made by the installed key tool
    example = open(os.path.join(REPO, "examples", "s3-static-website.conf")).read()
    assert "load_module modules/ngx_http_aws_auth_module.so;" in example
    example = example.replace("/var/cache/nginx/", f"{tmp_path}/cache/")
    (tmp_path / "cache").mkdir()
    subprocess.run(["ngx-aws-auth-signing-key", "-k", "EXAMPLESECRET", "-r", "eu-central-1",
                    "--days", "3", "-o", str(tmp_path / "aws-keys")], check=True, timeout=30)
    (tmp_path / "example.conf").write_text(
        f"pid {tmp_path}/example.pid;\nerror_log {tmp_path}/example.log;\n" + example)
    p = subprocess.run([SYSTEM_NGINX, "-t", "-c", str(tmp_path / "example.conf")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "test is successful" in p.stderr, p.stderr
    # a server of our own on Debian's nginx, the module loaded as the
    # package enabled it, signing to the test S3 server
    s3.put("pkg/hello.txt", b"hello from the package\n")
    port = harness.free_port()
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
include /etc/nginx/modules-enabled/*.conf;
daemon off;
master_process off;
error_log {tmp_path}/logs/error.log info;
pid {tmp_path}/nginx.pid;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    server {{
        listen 127.0.0.1:{port};
{signing.directives("        ")}
        aws_s3_addressing path;
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{s3.port};
        }}
    }}
}}""")
    # Debian's prefix, so that modules-enabled's "modules/" names resolve
    proc = subprocess.Popen([SYSTEM_NGINX, "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        harness.wait_for_port(port, proc=proc)
        r = harness.http_request(port, "GET", f"/{BUCKET}/pkg/hello.txt")
        assert r.status == 200 and r.body == b"hello from the package\n", r
    finally:
        harness.stop_process(proc)
    summary = run_core(SYSTEM_NGINX, INSTALLED)
    version = subprocess.run([SYSTEM_NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    print(f"\n{version} ({SYSTEM_NGINX}) with the installed package: {summary}")


def test_purged_package_leaves_nginx_working(installed):
    p = apt("purge", PACKAGE)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert not os.path.exists(INSTALLED)
    assert not os.path.lexists(ENABLED) and not os.path.lexists(ENABLED + ".removed")
    p = subprocess.run([SYSTEM_NGINX, "-t"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_install_lays_out_module_and_debian_snippet(package, release, tmp_path):
    _, tree, env = release
    dest = tmp_path / "root"
    # the package's build tree and target directory: nothing to compile again
    p = subprocess.run([str(tree / "scripts" / "build-for-system-nginx"), "--install",
                        "--destdir", str(dest)], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stderr[-3000:]
    installed = dest / "usr/lib/nginx/modules/ngx_http_aws_auth_module.so"
    assert installed.is_file()
    snippet = dest / "usr/share/nginx/modules-available/mod-http-aws-auth.conf"
    assert snippet.read_text() == "load_module /usr/lib/nginx/modules/ngx_http_aws_auth_module.so;\n"
    enabled = dest / "etc/nginx/modules-enabled/50-mod-http-aws-auth.conf"
    assert os.readlink(enabled) == "/usr/share/nginx/modules-available/mod-http-aws-auth.conf"
    assert p.stdout.strip().splitlines()[-1] == \
        "load_module /usr/lib/nginx/modules/ngx_http_aws_auth_module.so;"
