"""A rehearsal of `docker compose up --build` where no Docker engine runs.

No machine here has Docker, so the image is rehearsed from the Dockerfile itself, in a scratch
directory standing for the image's file system:

- build stage: exactly the files its `COPY`s send (after `.dockerignore`) are copied in, and its
  `RUN`s run as written (paths mapped into the scratch root), with its `ENV`; a file the
  Dockerfile forgets to copy fails the install here as it would fail `docker build`;
- runtime stage: its `RUN`s minus `groupadd`/`useradd` (the host's users are left alone: the
  process gets the numeric uid/gid of `USER`, as an orchestrator's `runAsUser` would), its
  `WORKDIR` created as Docker creates it (root-owned unless a `RUN` gave it away);
- compose: the config file the `bridge` service mounts, read-only, its `environment` with the
  defaults a bare `docker compose up` interpolates, `AMQP_URL` pointing at the suite's broker;
- then `ENTRYPOINT` + `CMD` run as the image's unprivileged user in its working directory, with
  only the image's and compose's environment; it must answer `/readyz` 200, pass the image's
  `HEALTHCHECK` command, keep its SQLite store in the working directory (the volume), and exit 0
  on SIGTERM.

Not rehearsed: the base image itself (this machine's Python of the same minor version stands in
for `python:X.Y-slim`), the layer copy between stages (same path, so the venv is used in place),
network isolation, and `PIP_NO_CACHE_DIR` (pip may use this machine's cache; the rehearsal
builds one venv per session). Needs root (to switch to the image's uid) and, under CI=true,
never skips.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.harness import dockerfile
from tests.harness.processes import free_port
from tests.test_compose import compose, config_mount, seconds, service_environment

ROOT = Path(__file__).parent.parent
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # python:*-slim's
# Container paths left as they are: the base system's, which the rehearsal borrows from this host.
_SYSTEM = r"(?:usr|bin|sbin|lib|lib64|dev|proc|sys|tmp|nonexistent)(?:/|\b)"
_CONTAINER_PATH = re.compile(rf"(?<![\w./:-])/(?!{_SYSTEM})[\w.-][^\s'\";&|:)]*")
BUILD_TIMEOUT = 900.0
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: the image rehearsal cannot run: {reason}")
    pytest.skip(f"image rehearsal: {reason}")


@dataclass
class Image:
    """The rehearsed image: a scratch root standing for `/`, and how the container starts."""

    root: Path
    uid: int
    gid: int
    home: str
    env: dict[str, str]  # the runtime stage's ENV (paths mapped), PATH included
    command: list[str]  # ENTRYPOINT + CMD, paths mapped
    workdir: Path
    healthcheck: list[str]
    healthcheck_timeout: float

    def path(self, container_path: str) -> Path:
        """Where `container_path` lives in the rehearsal."""
        return self.root / container_path.lstrip("/")


class Rehearsal:
    """Replays the Dockerfile's instructions into a scratch root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log: list[str] = []

    def path(self, container_path: str) -> Path:
        """Where `container_path` lives in the rehearsal."""
        return self.root / container_path.lstrip("/")

    def rewrite(self, text: str) -> str:
        """Map every non-system absolute container path in `text` into the scratch root."""
        return _CONTAINER_PATH.sub(lambda m: str(self.path(m[0])), text)

    def env_value(self, value: str, base: dict[str, str]) -> str:
        """An ENV value with `$VAR` from `base`; PATH-like lists mapped entry by entry."""
        mapped = ":".join(self.rewrite(part) for part in value.split(":"))
        return re.sub(r"\$\{?(\w+)\}?", lambda m: base.get(m[1], ""), mapped)

    def sh(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        """A RUN line, with `/bin/sh -c` as Docker's shell form; it must exit 0."""
        self.log.append(f"$ {command}")
        started = time.monotonic()
        done = subprocess.run(  # noqa: S603 - the Dockerfile's own RUN line
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
        self.log.append(f"  exit {done.returncode} in {time.monotonic() - started:.1f} s")
        assert done.returncode == 0, (
            f"RUN {command!r} failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
            f"{done.stderr[-4000:]}"
        )

    def copy_from_context(self, copy: dockerfile.Copy, workdir: str) -> None:
        """`COPY src... dest` from the build context, honouring .dockerignore."""
        ignore = dockerfile.dockerignore()
        dest = copy.dest if copy.dest.startswith("/") else f"{workdir}/{copy.dest}"
        many = len(copy.sources) > 1
        assert not many or copy.dest.endswith("/"), f"COPY {copy}: several sources need a dir/"
        for source in copy.sources:
            top = ROOT / source
            for file in dockerfile.context_files(source, ignore):
                if top.is_dir():  # a directory's contents go into dest
                    target = self.path(dest) / file.relative_to(top)
                elif copy.dest.endswith("/"):
                    target = self.path(dest) / file.name
                else:
                    target = self.path(dest)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
                os.chown(target, 0, 0)  # COPY without --chown: root-owned
        self.log.append(f"COPY {' '.join(copy.sources)} {copy.dest}")


def _interpreter(version: str, uid: int, gid: int) -> str:
    """A Python of the image's minor version that the unprivileged user can run, with venv."""
    for candidate in (f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"):
        if not Path(candidate).exists():
            continue
        probe = subprocess.run(  # noqa: S603 - fixed candidates
            [candidate, "-c", "import ensurepip, venv"],
            user=uid,
            group=gid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    _fail_or_skip(
        f"no Python {version} with venv that uid {uid} can run "
        f"(/usr/bin/python{version}: apt-get install python{version} python{version}-venv)"
    )
    raise AssertionError  # unreachable


def _user(final: dockerfile.Stage) -> tuple[int, int, str]:
    """USER's uid and gid (numeric, as the Dockerfile sets them) and useradd's home."""
    user, _, group = final.last("USER").partition(":")
    assert user.isdigit(), "USER should be numeric (runAsNonRoot policies need a number)"
    assert group.isdigit(), "USER should name a numeric group"
    setup = " ".join(final.all("RUN"))
    home = re.search(r"--home-dir\s+(\S+)", setup)
    return int(user), int(group), home[1] if home else "/"


RUNTIME_KEYWORDS = {"LABEL", "ENV", "RUN", "COPY", "USER", "WORKDIR", "VOLUME", "EXPOSE"}
RUNTIME_KEYWORDS |= {"HEALTHCHECK", "ENTRYPOINT", "CMD"}


def build_stage(rehearsal: Rehearsal, stage: dockerfile.Stage, base_path: str) -> None:
    """Run a build stage's instructions in order: ENV, WORKDIR, COPY from the context, RUN."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = base_path
    workdir = "/"
    for instruction in stage.instructions:
        match instruction.keyword:
            case "ENV":
                for key, value in dockerfile.Stage("", None, [instruction]).env().items():
                    if key != "PIP_NO_CACHE_DIR":  # one venv per session, from pip's cache
                        env[key] = rehearsal.env_value(value, env)
            case "WORKDIR":
                workdir = instruction.args
                rehearsal.path(workdir).mkdir(parents=True, exist_ok=True)
            case "COPY":
                (copy,) = dockerfile.copies(dockerfile.Stage("", None, [instruction]))
                assert "from" not in copy.flags, "the build stage copies from the context"
                rehearsal.copy_from_context(copy, workdir)
            case "RUN":
                rehearsal.sh(rehearsal.rewrite(instruction.args), rehearsal.path(workdir), env)
            case "ARG" | "LABEL":
                pass
            case other:
                pytest.fail(f"the rehearsal does not know {other} in a build stage")


def runtime_stage(
    rehearsal: Rehearsal, final: dockerfile.Stage, base_path: str
) -> tuple[dict[str, str], Path]:
    """The final stage: its file system set up, its environment and working directory."""
    unknown = {i.keyword for i in final.instructions} - RUNTIME_KEYWORDS
    assert not unknown, f"the rehearsal does not know {unknown} in the runtime stage"
    env: dict[str, str] = {"PATH": base_path, "LANG": "C.UTF-8"}  # python:*-slim's
    for copy in dockerfile.copies(final):
        assert "from" in copy.flags, "the runtime stage copies only from the build stage"
        assert copy.sources == [copy.dest], "the venv must keep its path (its scripts' #! lines)"
        assert rehearsal.path(copy.dest).exists(), f"COPY --from: {copy.dest} was not built"
    for args in final.all("RUN"):
        steps = [s.strip() for s in args.split("&&")]
        kept = [s for s in steps if not s.startswith(("groupadd", "useradd"))]
        rehearsal.sh(rehearsal.rewrite(" && ".join(kept)), rehearsal.root, env)
    for key, value in final.env().items():
        env[key] = rehearsal.env_value(value, env)
    workdir = rehearsal.path(final.workdir())
    workdir.mkdir(parents=True, exist_ok=True)  # Docker creates a missing WORKDIR, root-owned
    return env, workdir


def build(root: Path) -> tuple[Image, list[str]]:
    """Replay the Dockerfile into `root`; the image and a log of what ran."""
    parsed = dockerfile.parse()
    final = parsed.final
    uid, gid, home = _user(final)
    version = re.fullmatch(r"python:(\d+\.\d+)[\w.-]*", final.base)
    assert version, f"the rehearsal knows python:X.Y images, not {final.base}"
    python = _interpreter(version[1], uid, gid)
    rehearsal = Rehearsal(root)
    # The base image: `python` on PATH in /usr/local/bin.
    local_bin = rehearsal.path("/usr/local/bin")
    local_bin.mkdir(parents=True)
    (local_bin / "python").symlink_to(python)
    base_path = f"{local_bin}:{BASE_PATH}"
    wanted = {c.flags["from"] for c in dockerfile.copies(final) if "from" in c.flags}
    for stage in parsed.stages[:-1]:
        assert stage.name in wanted, f"stage {stage.name} is never copied from"
        build_stage(rehearsal, stage, base_path)
    env, workdir = runtime_stage(rehearsal, final, base_path)
    env["HOME"] = home
    command = [
        rehearsal.rewrite(a)
        for a in dockerfile.exec_form(final.last("ENTRYPOINT"))
        + dockerfile.exec_form(final.last("CMD"))
    ]
    options, check = dockerfile.healthcheck(final)
    image = Image(
        root=root,
        uid=uid,
        gid=gid,
        home=home,
        env=env,
        command=command,
        workdir=workdir,
        healthcheck=check,
        healthcheck_timeout=seconds(options.get("timeout", "30s")),
    )
    return image, rehearsal.log


@pytest.fixture(scope="session")
def image() -> Iterator[Image]:
    """The image, rehearsed once per session."""
    if os.geteuid() != 0:
        _fail_or_skip("needs root, to run the bridge as the image's unprivileged uid")
    root = Path(tempfile.mkdtemp(prefix="cancel-bridge-image-"))
    root.chmod(0o755)
    try:
        started = time.monotonic()
        built, log = build(root)
        sys.stderr.write(f"image rehearsal built in {time.monotonic() - started:.1f} s\n")
        sys.stderr.write("\n".join(log) + "\n")
        yield built
    finally:
        shutil.rmtree(root, ignore_errors=True)


def compose_up(image: Image, amqp_url: str) -> tuple[dict[str, str], int, int]:
    """Apply the `bridge` service: mount its config, set its environment; new and old port.

    The mounted copy's `[receiver] port` is moved to a free port (compose's 8080 may be taken on
    this machine); everything else is the file as compose mounts it.
    """
    service = compose()["services"]["bridge"]
    source, target = config_mount(service)
    mounted = image.path(target)
    mounted.parent.mkdir(parents=True, exist_ok=True)
    text = source.read_text()
    original = tomllib.loads(text)["receiver"]["port"]
    port = free_port()
    text, count = re.subn(
        rf"(?ms)^(\[receiver\]\n(?:(?!^\[).)*?^port\s*=\s*){original}\b", rf"\g<1>{port}", text
    )
    assert count == 1, "cannot move [receiver] port in the mounted copy"
    assert tomllib.loads(text)["receiver"]["port"] == port
    mounted.write_text(text)
    mounted.chmod(source.stat().st_mode & 0o777)  # a bind mount shows the host file's mode
    env = dict(image.env)
    env["HOSTNAME"] = "bridge"
    env.update(service_environment("bridge", {}))  # `docker compose up` with nothing exported
    env["AMQP_URL"] = amqp_url  # the suite's broker instead of the compose service
    return env, port, original


def as_image_user(image: Image) -> dict[str, object]:
    """Arguments of `subprocess` that drop to the image's USER (no supplementary groups)."""
    return {"user": image.uid, "group": image.gid, "extra_groups": [], "cwd": image.workdir}


async def _lines(stream: asyncio.StreamReader, into: list[bytes]) -> None:
    while line := await stream.readline():
        into.append(line)


async def _wait_ready(port: int, process: asyncio.subprocess.Process, lines: list[bytes]) -> None:
    url = f"http://127.0.0.1:{port}/readyz"
    async with aiohttp.ClientSession() as session, asyncio.timeout(READY_TIMEOUT):
        while True:
            assert process.returncode is None, f"exited {process.returncode}: {lines}"
            try:
                async with session.get(url) as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)  # paced: another process's port, nothing here to await


@pytest.mark.timeout(BUILD_TIMEOUT + 120)
async def test_the_image_starts_ready_as_its_unprivileged_user(image: Image, amqp_url: str) -> None:
    env, port, compose_port = compose_up(image, amqp_url)
    process = await asyncio.create_subprocess_exec(
        *image.command,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        **as_image_user(image),  # type: ignore[arg-type]
    )
    assert process.stdout is not None
    lines: list[bytes] = []
    reader = asyncio.create_task(_lines(process.stdout, lines))
    try:
        await _wait_ready(port, process, lines)

        check = [arg.replace(f":{compose_port}/", f":{port}/") for arg in image.healthcheck]
        healthcheck = await asyncio.create_subprocess_exec(
            *check,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            **as_image_user(image),  # type: ignore[arg-type]
        )
        async with asyncio.timeout(image.healthcheck_timeout):
            output, _ = await healthcheck.communicate()
        assert healthcheck.returncode == 0, f"HEALTHCHECK failed: {output!r}"

        store = image.workdir / "cancel-bridge.db"
        assert store.exists(), (
            f"no SQLite store in the working directory: {list(image.workdir.iterdir())}"
        )
        assert store.stat().st_uid == image.uid
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_TIMEOUT):
            await process.wait()
            await reader
    assert process.returncode == 0, f"exit {process.returncode} on SIGTERM: {lines[-20:]}"
    entries = [orjson.loads(line) for line in lines]  # every line is one JSON object
    events = {str(entry["event"]) for entry in entries}
    assert {"store.opened", "receiver.listening", "broker.connected", "bridge.stopping"} <= events
    assert not [e for e in entries if e.get("level") in ("error", "critical")], entries


def test_the_build_stage_copies_what_the_package_needs() -> None:
    """Every package `[tool.setuptools.packages.find]` ships, and `readme`, is copied."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build_stage = dockerfile.parse().stage("build")
    copied = {s.rstrip("/") for c in dockerfile.copies(build_stage) for s in c.sources}
    assert pyproject["project"]["readme"] in copied
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied, f"the Dockerfile does not copy {pattern}"


def test_the_build_context_holds_only_what_the_dockerfile_copies() -> None:
    """The context sends nothing no COPY uses: no stray top-level entry, no local state.

    Every tracked top-level entry is copied or left out by .dockerignore, and so is everything
    .gitignore names (CI's `.venv-ci`, caches).
    """
    ignore = dockerfile.dockerignore()
    copied = {
        s.rstrip("/").removeprefix("./")
        for stage in dockerfile.parse().stages
        for c in dockerfile.copies(stage)
        if "from" not in c.flags
        for s in c.sources
    }
    listed = subprocess.run(
        ["git", "ls-files"],  # noqa: S607 - read-only
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    tracked = {line.split("/")[0] for line in listed.stdout.splitlines()}
    if listed.returncode != 0:  # not a git checkout (an unpacked archive): what is here
        tracked = {p.name for p in ROOT.iterdir()}
    sent = sorted(name for name in tracked - copied if not ignore.excluded(name))
    assert not sent, f"the build context sends what no COPY uses: {sent} (add to .dockerignore)"
    local_state = [
        line.strip().strip("/").replace("*", "x")
        for line in (ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    leaked = [p for p in local_state if not ignore.excluded(p) and not ignore.excluded(f"a/{p}")]
    assert not leaked, f"local state the build context would send: {leaked}"
