#!/usr/bin/env python3
"""Instructions per request, counted by callgrind: `scripts/bench --instructions`.

One nginx (the vendored build, `master_process off`, one process) runs
under `valgrind --tool=callgrind` with a server block per variant:

  plain      proxy_pass to an upstream nginx (keep-alive)
  aws_sign   the same, signed by the module
  variables  the same, signed through $s3_auth_token, $aws_date and
             $aws_content_sha256 in proxy_set_header
  redirect   return 302 to a URL built from $uri (presign's baseline)
  presign    return 302 $aws_presigned_url

Every request is the same 1 KiB GET,
/photos/2026/11/cat%20%281%29.jpg?response-cache-control=no-cache&x-id=GetObject,
sent one after another on one keep-alive connection. Per variant: WARM
requests, the counters zeroed, N requests, a dump; the cost per request is
the dump's instructions / N. Counting is exact and does not depend on the
machine's load.

valgrind hides the SHA extensions, so SHA-256 runs in software under it
and costs far more than on real hardware: the SHA-256 compression
function's own instructions are counted apart. What is left over plain is
the module's own work; the table gives it as a share of plain's whole
proxy path. With --max-ratio R the script fails when that share is over R
for aws_sign or variables (scripts/test runs it as a regression guard).

glibc's allocator is also counted apart. nginx takes each request's pool
from it, and how long that takes depends on the heap's layout, which moves
with anything allocated at configuration time: between two builds of the
module the same variant's malloc share can move by a few hundred, up or
down, and unequally between variants. The signing modes allocate nothing
per request, so the last column, their own work with the difference in
malloc from plain taken out, is the figure to compare between builds.

Every variant keeps its upstream connection alive: a location that sets
headers of its own sets `Connection ""` again (proxy_set_header lines are
inherited only by a location that has none).

With --status, the configuration has an aws_auth_status location, so every
signed request is also counted (the counters' cost).

For profiling: --profile VARIANT prints that variant's costliest functions;
INSTRUCTIONS_TREE=caller|calling adds call trees, INSTRUCTIONS_AUTO=1
annotates sources (build with CARGO_PROFILE_RELEASE_DEBUG=line-tables-only),
INSTRUCTIONS_KEEP=DIR keeps each variant's dump as DIR/VARIANT.out.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TARGET = "/photos/2026/11/cat%20%281%29.jpg?response-cache-control=no-cache&x-id=GetObject"
FILE = "photos/2026/11/cat (1).jpg"
ACCESS_KEY = "AKIDINSTRUCTIONS"
SECRET = "instructionsSECRETinstructionsSECRET0"
SHA_FUNCTIONS = re.compile(r"sha2::sha256::(soft|x86)::|compress256|sha256_digest_block")
# glibc's allocator (nginx's pools come from it): shown apart, because its
# path length depends on the heap's layout, which any change to what is
# allocated at configuration time moves
MALLOC_FUNCTIONS = re.compile(r"/malloc/malloc\.c:")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"nginx exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def signing_key(day: str) -> tuple[str, str]:
    import hashlib
    import hmac

    scope = f"{day}/us-east-1/s3/aws4_request"
    k = ("AWS4" + SECRET).encode()
    for part in scope.split("/"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    import base64

    return scope, base64.b64encode(k).decode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nginx", default=os.environ.get("NGINX_BIN"))
    ap.add_argument("--module", default=os.environ.get("MODULE_SO"))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warm", type=int, default=500)
    ap.add_argument("--max-ratio", type=float, default=None)
    ap.add_argument("--status", action="store_true",
                    help="with an aws_auth_status location: every variant counts into the zone")
    ap.add_argument("--profile", metavar="VARIANT",
                    help="also print the functions that cost most in this variant")
    args = ap.parse_args()
    if not args.nginx or not args.module:
        raise SystemExit("--nginx and --module (or NGINX_BIN and MODULE_SO) are needed")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install valgrind)")

    work = tempfile.mkdtemp(prefix="ngx-aws-instr.")
    procs: list[subprocess.Popen] = []
    try:
        return run(args, work, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: str, procs: list) -> int:
    user = "user root;\n" if os.geteuid() == 0 else ""
    up_port = free_port()
    os.makedirs(f"{work}/up/logs")
    os.makedirs(os.path.dirname(f"{work}/up/html/{FILE}"))
    with open(f"{work}/up/html/{FILE}", "wb") as f:
        f.write(os.urandom(1024))
    with open(f"{work}/up/nginx.conf", "w") as f:
        f.write(f"""{user}daemon off;
master_process off;
error_log {work}/up/logs/error.log crit;
pid {work}/up/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{ listen 127.0.0.1:{up_port}; root {work}/up/html; }}
}}
""")
    procs.append(subprocess.Popen([args.nginx, "-p", f"{work}/up/", "-c", f"{work}/up/nginx.conf"]))
    wait_port(up_port, procs[-1])

    day = time.strftime("%Y%m%d", time.gmtime())
    scope, key = signing_key(day)
    signing = (f"aws_access_key {ACCESS_KEY}; aws_key_scope {scope}; aws_signing_key {key}; "
               "aws_forward_query_params response-cache-control x-id;")
    variants = {
        "plain": "location / { proxy_pass http://up; }",
        "aws_sign": f"{signing} location / {{ aws_sign; proxy_pass http://up; }}",
        "variables": f"""{signing} location / {{
            proxy_set_header Authorization $s3_auth_token;
            proxy_set_header x-amz-date $aws_date;
            proxy_set_header x-amz-content-sha256 $aws_content_sha256;
            proxy_set_header Connection "";
            proxy_pass http://up;
        }}""",
        "redirect": "aws_s3_bucket photos; location / { return 302 https://photos.s3.amazonaws.com$uri; }",
        "presign": f"{signing} aws_s3_bucket photos; location / {{ return 302 $aws_presigned_url; }}",
    }
    ports = {name: free_port() for name in variants}
    servers = "\n".join(
        f"    server {{ listen 127.0.0.1:{ports[n]}; {body} }}" for n, body in variants.items())
    if args.status:
        servers += f"\n    server {{ listen 127.0.0.1:{free_port()}; location = /metrics {{ aws_auth_status; }} }}"
    os.makedirs(f"{work}/front/logs")
    with open(f"{work}/front/nginx.conf", "w") as f:
        f.write(f"""load_module {args.module};
{user}daemon off;
master_process off;
error_log {work}/front/logs/error.log crit;
pid {work}/front/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    upstream up {{ server 127.0.0.1:{up_port}; keepalive 8; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
{servers}
}}
""")
    out = f"{work}/callgrind.out"
    front = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--vgdb=yes",
         "--vgdb-prefix=" + f"{work}/vgdb",
         "--dump-instr=" + ("yes" if os.environ.get("INSTRUCTIONS_AUTO") else "no"),
         args.nginx, "-p", f"{work}/front/", "-c", f"{work}/front/nginx.conf"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    procs.append(front)
    for port in ports.values():
        wait_port(port, front, timeout=120)

    def control(*flags: str) -> None:
        subprocess.run(["callgrind_control", f"--vgdb-prefix={work}/vgdb", *flags, str(front.pid)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def send(port: int, n: int, expect: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(n):
            conn.request("GET", TARGET)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != expect:
                raise SystemExit(f"port {port}: {resp.status} {body[:200]!r}")
        conn.close()

    rows = {}
    for name, port in ports.items():
        expect = 302 if name in ("redirect", "presign") else 200
        send(port, args.warm, expect)
        before = set(glob.glob(out + ".*"))
        control("--zero")
        send(port, args.requests, expect)
        control("--dump=" + name)
        dumps = sorted(set(glob.glob(out + ".*")) - before, key=os.path.getmtime)
        if not dumps:
            raise SystemExit("callgrind wrote no dump")
        rows[name] = costs(dumps[-1], args.requests)
        if os.environ.get("INSTRUCTIONS_KEEP"):
            shutil.copy(dumps[-1], os.path.join(os.environ["INSTRUCTIONS_KEEP"], name + ".out"))
        if name == args.profile:
            tree = os.environ.get("INSTRUCTIONS_TREE")
            text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100"]
                                  + ([f"--tree={tree}"] if tree else [])
                                  + (["--auto=yes"] if os.environ.get("INSTRUCTIONS_AUTO") else [])
                                  + [dumps[-1]],
                                  check=True, capture_output=True, text=True).stdout
            print("\n".join(text.splitlines()[:None if os.environ.get("INSTRUCTIONS_AUTO") else 80]))

    plain = rows["plain"][0]
    baseline = {"aws_sign": plain, "variables": plain, "presign": rows["redirect"][0]}
    print(f"instructions per request (callgrind, {args.requests} requests after {args.warm}, "
          f"1 KiB GET {TARGET})\n")
    heaps = {"aws_sign": rows["plain"][2], "variables": rows["plain"][2]}
    print("| variant | Ir / request | of which glibc malloc | over its baseline | SHA-256 compression "
          "| module's own work | own / plain proxy path | own work, glibc malloc aside |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    for name, (total, sha, heap) in rows.items():
        if name not in baseline:
            print(f"| {name} | {total:,.0f} | {heap:,.0f} | | | | | |")
            continue
        over = total - baseline[name]
        own = over - sha
        ratio = own / plain
        if name in ("aws_sign", "variables"):
            worst = max(worst, ratio)
        # the signing modes allocate nothing (tests/integration/test_allocations.py),
        # so their malloc difference from plain is the heap's layout; presign's
        # URL is built on the heap, which is its own work
        steady = f"{own - (heap - heaps[name]):,.0f}" if name != "presign" else "—"
        print(f"| {name} | {total:,.0f} | {heap:,.0f} | {over:,.0f} | {sha:,.0f} | {own:,.0f} | {ratio:.3f} "
              f"| {steady} |")
    print("\n(presign's baseline is `redirect`; the others' is `plain`. glibc malloc's share "
          "moves by a few hundred from build to build with the heap's layout.)")
    if args.max_ratio is not None and worst > args.max_ratio:
        print(f"FAIL: the module's own work is {worst:.3f} of plain's proxy path, over {args.max_ratio}",
              file=sys.stderr)
        return 1
    return 0


def costs(dump: str, n: int) -> tuple[float, float, float]:
    """Instructions per request in a dump, those of SHA-256's compression
    function and those of glibc's allocator."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", dump],
                          check=True, capture_output=True, text=True).stdout
    total = None
    sha = 0
    heap = 0
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(\([^)]*\)\s+)?(PROGRAM TOTALS|\S.*)$", line)
        if not m:
            continue
        what = m.group(3)
        if what.startswith("=>"):
            # a call in an annotated source: its callee's inclusive cost
            continue
        count = int(m.group(1).replace(",", ""))
        if what.startswith("PROGRAM TOTALS"):
            total = count
        elif SHA_FUNCTIONS.search(what):
            sha += count
        elif MALLOC_FUNCTIONS.search(what):
            heap += count
    if total is None:
        raise SystemExit(f"no totals in {dump}")
    return total / n, sha / n, heap / n


if __name__ == "__main__":
    sys.exit(main())
