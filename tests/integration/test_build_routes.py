"""The module built the two other ways an operator builds it, each loaded
into its nginx and run through the core integration tests:

* nginx's own build system: ``./configure --with-compat
  --add-dynamic-module=<repo> && make modules`` on the vendored nginx
  source, the .so loaded into the vendored nginx binary;
* ``scripts/build-for-system-nginx`` for the distribution's nginx
  (Debian's 1.22.1 from ``nginx`` + ``nginx-dev``), the .so loaded into
  ``/usr/sbin/nginx``; ``--install --destdir`` lays out the module and the
  Debian modules-enabled snippet.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

import harness

REPO = harness.REPO_ROOT
# One cargo target directory for both routes: the dependencies compile once
# (each route's output is used before the other builds).
ROUTE_TARGET = os.path.join(REPO, "target", "route-build")
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


def nginx_src_dir() -> str:
    """The nginx source the vendored build came from (the nginx-src crate)."""
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=True)
    for pkg in json.loads(meta.stdout)["packages"]:
        if pkg["name"] == "nginx-src":
            return os.path.join(os.path.dirname(pkg["manifest_path"]), "nginx")
    raise AssertionError("nginx-src is not a dependency")


def configure_args(nginx_bin: str) -> list[str]:
    out = subprocess.run([nginx_bin, "-V"], capture_output=True, text=True).stderr
    args = next(l for l in out.splitlines() if l.startswith("configure arguments:"))
    return shlex.split(args.split(":", 1)[1])


def test_configure_add_dynamic_module(nginx_bin, tmp_path):
    tree = tmp_path / "nginx"
    shutil.copytree(nginx_src_dir(), tree)
    # the same configuration as the vendored binary, built in this tree
    args = [a for a in configure_args(nginx_bin) if not a.startswith("--builddir")]
    assert "--with-compat" in args
    env = dict(os.environ, NGX_AWS_AUTH_TARGET_DIR=ROUTE_TARGET)
    configure = "./configure" if (tree / "configure").exists() else "auto/configure"
    p = subprocess.run([configure, *args, f"--add-dynamic-module={REPO}"], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    p = subprocess.run(["make", "-f", "objs/Makefile", "modules"], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    so = tree / "objs" / "ngx_http_aws_auth_module.so"
    assert so.is_file()
    summary = run_core(nginx_bin, str(so))
    print(f"\n--add-dynamic-module build in the vendored nginx: {summary}")


SYSTEM_NGINX = "/usr/sbin/nginx"
NGINX_DEV = "/usr/share/nginx/src/conf_flags"


@pytest.fixture(scope="module")
def system_module() -> str:
    if not (os.access(SYSTEM_NGINX, os.X_OK) and os.path.exists(NGINX_DEV)):
        pytest.skip("Debian's nginx and nginx-dev are not installed (scripts/test installs them "
                    "with apt-get where it can)")
    p = subprocess.run([os.path.join(REPO, "scripts", "build-for-system-nginx")], cwd=REPO,
                       env=dict(os.environ, NGX_AWS_AUTH_TARGET_DIR=ROUTE_TARGET),
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("load_module ") and last.endswith(".so;"), p.stdout
    return last[len("load_module "):-1]


def test_system_nginx_serves_signed_objects(system_module):
    version = subprocess.run([SYSTEM_NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    summary = run_core(SYSTEM_NGINX, system_module)
    print(f"\n{version} ({SYSTEM_NGINX}) with the module: {summary}")


def test_install_lays_out_module_and_debian_snippet(system_module, tmp_path):
    dest = tmp_path / "root"
    # the same target directory as the fixture's build: nothing to compile again
    p = subprocess.run([os.path.join(REPO, "scripts", "build-for-system-nginx"), "--install",
                        "--destdir", str(dest)], cwd=REPO,
                       env=dict(os.environ, NGX_AWS_AUTH_TARGET_DIR=ROUTE_TARGET),
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    installed = dest / "usr/lib/nginx/modules/ngx_http_aws_auth_module.so"
    assert installed.is_file()
    with open(system_module, "rb") as a, open(installed, "rb") as b:
        assert a.read() == b.read()
    snippet = dest / "usr/share/nginx/modules-available/mod-http-aws-auth.conf"
    assert snippet.read_text() == "load_module /usr/lib/nginx/modules/ngx_http_aws_auth_module.so;\n"
    enabled = dest / "etc/nginx/modules-enabled/50-mod-http-aws-auth.conf"
    assert os.readlink(enabled) == "/usr/share/nginx/modules-available/mod-http-aws-auth.conf"
    assert p.stdout.strip().splitlines()[-1] == \
        "load_module /usr/lib/nginx/modules/ngx_http_aws_auth_module.so;"
