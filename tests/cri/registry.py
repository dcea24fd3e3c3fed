#!/usr/bin/python3
"""A read-only OCI distribution (registry v2) endpoint over plain HTTP for
the stand-in images of tests/cri/images.sh, so that containerd's CRI pulls
and its Go client's pulls (TestContainerdImage*) work with no network.
Only run inside run.sh's private network namespace.

usage: registry.py IMAGES_DIR [PORT]   (IMAGES_DIR holds refs and blobs/sha256)
"""
import http.server
import json
import os
import re
import sys

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
images = sys.argv[1]
port = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
refs = {}      # "repo:tag" -> manifest digest
manifests = set()
with open(os.path.join(images, "refs")) as f:
    for line in f:
        name, digest = line.split()
        host, _, path = name.partition("/")
        refs[path] = digest
        manifests.add(digest)

ROUTE = re.compile(r"^/v2/(.+)/(manifests|blobs)/([^/]+)$")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("registry: %s %s\n" % (self.address_string(), fmt % args))

    def reply(self, code, body=b"", ctype="application/json", digest=None, head=False):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def not_found(self, head):
        body = json.dumps({"errors": [{"code": "NOT_FOUND", "message": "not found"}]}).encode()
        self.reply(404, body, head=head)

    def serve(self, head):
        path = self.path.split("?", 1)[0]
        if path in ("/v2", "/v2/"):
            return self.reply(200, b"{}", head=head)
        m = ROUTE.match(path)
        if not m:
            return self.not_found(head)
        repo, kind, ref = m.groups()
        digest = ref if ref.startswith("sha256:") else refs.get("%s:%s" % (repo, ref))
        if not digest or not re.match(r"^sha256:[0-9a-f]{64}$", digest):
            return self.not_found(head)
        if kind == "manifests" and digest not in manifests:
            return self.not_found(head)
        try:
            with open(os.path.join(images, "blobs", "sha256", digest[7:]), "rb") as f:
                body = f.read()
        except OSError:
            return self.not_found(head)
        ctype = MANIFEST if kind == "manifests" else "application/octet-stream"
        self.reply(200, body, ctype, digest, head)

    def do_GET(self):
        self.serve(False)

    def do_HEAD(self):
        self.serve(True)


http.server.ThreadingHTTPServer.allow_reuse_address = True
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
sys.stderr.write("registry: serving %d images of %s on 127.0.0.1:%d\n" % (len(refs), images, port))
sys.stdout.flush()
srv.serve_forever()
