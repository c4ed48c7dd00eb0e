#!/usr/bin/env python3
"""One Hugging Face cache for SwiftViT and Python's huggingface_hub (pip install huggingface_hub): each finds what the
other downloaded. A small hub on the loopback address serves a fixture ViT as the Hugging Face Hub serves files
(HEAD/GET /ORG/NAME/resolve/REVISION/FILE, X-Repo-Commit, ETag or X-Linked-Etag/X-Linked-Size and a redirect to a
CDN path for LFS files, ranges), then:

1. huggingface_hub's hf_hub_download fetches config.json and model.safetensors into cache A; `vit predict --model
   ORG/NAME` with HF_HUB_OFFLINE=1 reads them from cache A;
2. `vit predict --model ORG/NAME` downloads into cache B; huggingface_hub with local_files_only=True finds the same
   bytes there, and scan_cache_dir() reads cache B without a warning;
3. all three predictions equal `vit predict --model FIXTURE-FOLDER`.

    python3 scripts/check-hub-cache.py [--vit .build/release/vit]
"""
import argparse, hashlib, http.server, json, os, subprocess, sys, tempfile, threading

import huggingface_hub

parser = argparse.ArgumentParser()
parser.add_argument("--vit", default=".build/release/vit")
parser.add_argument("--fixture", default="Tests/ViTTests/Fixtures/hf-vit-p8-d64-h4-l2-i32")
parser.add_argument("--image", default="docs/chelsea.png")
args = parser.parse_args()
REPO, COMMIT = "swiftvit-test/tiny-vit", "c0ffee" + "0" * 34
files = {name: open(os.path.join(args.fixture, name), "rb").read() for name in ("config.json", "model.safetensors")}


class Hub(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def answer(self, body):
        path = self.path.split("?")[0]
        if path.startswith("/cdn/"):
            data = next(d for d in files.values() if hashlib.sha256(d).hexdigest() == path[5:])
            start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0])
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if body:
                self.wfile.write(data[start:])
            return
        prefix = f"/{REPO}/resolve/"
        revision, _, name = path[len(prefix):].partition("/") if path.startswith(prefix) else ("", "", "")
        if revision not in ("main", COMMIT) or name not in files:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound" if revision else "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = files[name]
        if name.endswith(".safetensors"):  # an LFS file: its SHA-256, and the bytes elsewhere
            sha = hashlib.sha256(data).hexdigest()
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{server.server_port}/cdn/{sha}")  # another host, as a CDN
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):
        self.answer(False)

    def do_GET(self):
        self.answer(True)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
threading.Thread(target=server.serve_forever, daemon=True).start()
endpoint = f"http://127.0.0.1:{server.server_port}"
work = tempfile.mkdtemp(prefix="swiftvit-hub-check-")
cache_a, cache_b = os.path.join(work, "a"), os.path.join(work, "b")


def vit(*arguments, **environment):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(environment)
    result = subprocess.run([args.vit, *arguments], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def hub_python(cache, **options):
    # huggingface_hub reads its environment when imported; the cache and endpoint are given per call instead.
    return {name: huggingface_hub.hf_hub_download(REPO, name, cache_dir=cache, endpoint=endpoint, **options) for name in files}


reference = vit("predict", "--model", args.fixture, "--json", args.image)

# 1. Python downloads, SwiftViT reads.
for name, path in hub_python(cache_a).items():
    assert open(path, "rb").read() == files[name], name
from_python = vit("predict", "--model", REPO, "--json", args.image, HF_HUB_CACHE=cache_a, HF_HUB_OFFLINE="1")

# 2. SwiftViT downloads, Python reads.
from_swiftvit = vit("predict", "--model", REPO, "--json", args.image, HF_HUB_CACHE=cache_b, HF_ENDPOINT=endpoint)
for name, path in hub_python(cache_b, local_files_only=True).items():
    assert open(path, "rb").read() == files[name], name
info = huggingface_hub.scan_cache_dir(cache_b)
assert not info.warnings, info.warnings
(repo,) = info.repos
assert repo.repo_id == REPO and {r.commit_hash for r in repo.revisions} == {COMMIT}, repo
assert {f.file_name for r in repo.revisions for f in r.files} == set(files), repo

assert from_python == reference and from_swiftvit == reference, (reference, from_python, from_swiftvit)
print(json.dumps({"huggingface_hub": huggingface_hub.__version__, "python_to_swiftvit": "same prediction",
                  "swiftvit_to_python": "same bytes", "scan_cache_dir": f"{repo.repo_id}: {len(files)} files, no warning"}))
