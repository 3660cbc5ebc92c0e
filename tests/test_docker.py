"""The Dockerfile as shipped: a non-root user, the database on a volume, a health check on /health.

`docker build` runs where a docker daemon answers and the base image can be pulled, else skips saying which is
missing; the rest reads the Dockerfile and runs what it runs (the health check's code against a real `watcher api`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.install_helpers import watcher_api
from tests.loopback import free_port
from tests.processes import REPO_ROOT
from watcher.cli import parser
from watcher.config import ApiConfig

__all__ = ["watcher_api"]  # a fixture, imported for pytest

DOCKERFILE = REPO_ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the image's last stage, its FROM first."""
    ins = instructions(DOCKERFILE.read_text())
    last = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last:]


def healthcheck_argv() -> list[str]:
    """The HEALTHCHECK's exec-form command."""
    [args] = [rest for word, rest in final_stage() if word == "HEALTHCHECK"]
    cmd = args[args.index("CMD ") + 4 :]
    return json.loads(cmd)


def test_the_image_runs_watcher_as_a_non_root_user_with_the_database_on_a_volume() -> None:
    stage = final_stage()
    assert stage[0] == ("FROM", "python:3.11-slim")
    words = [w for w, _ in stage]
    [user] = [rest for w, rest in stage if w == "USER"]
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    assert words.index("USER") < words.index("ENTRYPOINT")
    assert any("useradd" in rest and f" {user} " in rest for w, rest in stage if w == "RUN")
    [volume] = [json.loads(rest) for w, rest in stage if w == "VOLUME"]
    env = " ".join(rest for w, rest in stage if w == "ENV")
    assert volume == ["/data"] and "MARGIN_WATCHER_DB=/data/watcher.db" in env
    assert [rest for w, rest in stage if w == "EXPOSE"] == [str(ApiConfig().port)]
    [entry] = [json.loads(rest) for w, rest in stage if w == "ENTRYPOINT"]
    [cmd] = [json.loads(rest) for w, rest in stage if w == "CMD"]
    assert entry == ["watcher"]
    assert parser().parse_args(cmd).func.__name__ == "cmd_run" and cmd[-1] == "/config/config.toml"
    argv = healthcheck_argv()
    assert argv[:2] == ["python", "-c"] and f"127.0.0.1:{ApiConfig().port}/health" in argv[2]


def test_every_file_the_image_copies_exists_and_is_not_dockerignored() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    # from the build context, not from another stage
    copies = [rest.split()[:-1] for word, rest in instructions(DOCKERFILE.read_text()) if word == "COPY"]
    sources = [s for src in copies if not src[0].startswith("--from") for s in src]
    assert sources and all((REPO_ROOT / s).exists() for s in sources), sources
    assert {s.rstrip("/") for s in sources} <= allowed
    # what pyproject.toml needs to build the wheel: its readme and the data it force-includes
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    force = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert {project["project"]["readme"], *force, "watcher"} <= allowed


def health_code(port: int, token: str | None = None) -> int:
    """The exit code of the image's HEALTHCHECK command, aimed at `port` of 127.0.0.1."""
    argv = healthcheck_argv()
    code = argv[2].replace(f"127.0.0.1:{ApiConfig().port}", f"127.0.0.1:{port}")
    env = {"PATH": "/usr/bin:/bin"} | ({"MW_API_TOKEN": token} if token else {})
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=False
    ).returncode


def test_the_health_check_passes_on_a_running_watcher_and_fails_on_nothing(watcher_api: tuple[int, Path]) -> None:
    port, _ = watcher_api
    assert health_code(port) == 0
    assert health_code(free_port()) != 0


def test_the_health_check_sends_mw_api_token_as_the_bearer_token() -> None:
    # A non-loopback bind (the container's 0.0.0.0) asks the token of every request, /health too: this stand-in,
    # on 127.0.0.1, answers as the API does there.
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/health" and self.headers.get("Authorization") == "Bearer s3cret"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert health_code(port, "s3cret") == 0
        assert health_code(port) != 0
        assert health_code(port, "wrong") != 0
    finally:
        server.shutdown()
        server.server_close()


def test_docker_build_of_the_shipped_dockerfile(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed here")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60, check=False)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        pytest.skip(f"no docker daemon: {reason}")
    [base] = [rest for word, rest in final_stage() if word == "FROM"]
    pull = subprocess.run([docker, "pull", base], capture_output=True, text=True, timeout=600, check=False)
    if pull.returncode != 0:
        pytest.skip(f"base image {base} cannot be pulled here: {pull.stderr.strip()[-300:]}")
    tag = f"margin-watcher-test:{tmp_path.name.lower()}"
    build = subprocess.run(
        [docker, "build", "-t", tag, str(REPO_ROOT)], capture_output=True, text=True, timeout=1800, check=False
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    try:
        [image] = json.loads(subprocess.check_output([docker, "image", "inspect", tag], text=True))
        conf = image["Config"]
        assert conf["User"] == "watcher" and "/data" in conf["Volumes"]
        assert conf["Entrypoint"] == ["watcher"] and conf["Healthcheck"]["Test"][0] == "CMD"
        version = subprocess.run(
            [docker, "run", "--rm", tag, "--version"], capture_output=True, text=True, timeout=120, check=False
        )
        assert version.returncode == 0 and version.stdout.startswith("margin-watcher "), version
    finally:
        subprocess.run([docker, "image", "rm", "-f", tag], capture_output=True, timeout=120, check=False)


def test_the_readme_runs_the_image_with_its_volume_and_config_path() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### In a container") : readme.index("## Local API")]
    [volume] = [json.loads(rest) for w, rest in final_stage() if w == "VOLUME"]
    [cmd] = [json.loads(rest) for w, rest in final_stage() if w == "CMD"]
    assert f"margin-watcher:{volume[0]}" in section and f":{cmd[-1]}:ro" in section
    assert f"-p 127.0.0.1:{ApiConfig().port}:{ApiConfig().port}" in section
