"""Read the Dockerfile and .dockerignore as Docker does, for the tests that check the image path.

Only what this repository's Dockerfile uses: parser directives and comments, line continuations,
`FROM ... AS name`, `ARG`, `ENV`, `RUN`, `COPY` (with `--from`), `WORKDIR`, `USER`, `EXPOSE`,
`VOLUME`, `HEALTHCHECK ... CMD`, `ENTRYPOINT` and `CMD` in exec (JSON) form, `LABEL`.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case) and its arguments as written."""

    keyword: str
    args: str


@dataclass
class Stage:
    """One `FROM` and the instructions after it."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every `keyword` instruction, in order."""
        return [i.args for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        """The arguments of the last `keyword` instruction (the one in force)."""
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """The stage's `ENV` variables (key=value form)."""
        env: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV {args!r}: only the key=value form is read here"
                env[key] = value
        return env

    def workdir(self) -> str:
        """The working directory in force at the end of the stage."""
        return self.last("WORKDIR")


@dataclass
class Dockerfile:
    """The stages of a Dockerfile and the `ARG`s before the first `FROM`."""

    args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        """The stage called `name`."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        msg = f"no stage {name!r}"
        raise KeyError(msg)

    @property
    def final(self) -> Stage:
        """The stage `docker build` produces (the last one)."""
        return self.stages[-1]


def instructions(text: str) -> list[Instruction]:
    """Join continuation lines, drop comments and blank lines, split keyword from arguments."""
    result: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:  # also inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def parse(path: Path = DOCKERFILE) -> Dockerfile:
    """Stages, with `${NAME}` of global ARGs substituted in `FROM`."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions(path.read_text()):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{instruction.keyword} before FROM"
            key, _, value = instruction.args.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(args, stages)


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument list; the shell form is refused (no signals as PID 1)."""
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    assert all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return [str(v) for v in value]


def healthcheck(stage: Stage) -> tuple[dict[str, str], list[str]]:
    """`HEALTHCHECK [--option=value ...] CMD [...]`: options and the exec-form command."""
    args = stage.last("HEALTHCHECK")
    options_part, sep, command = args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args}"
    options = dict(o.removeprefix("--").split("=", 1) for o in options_part.split())
    return options, exec_form(command)


@dataclass(frozen=True)
class Copy:
    """A `COPY`: its flags, sources and destination."""

    flags: dict[str, str]
    sources: list[str]
    dest: str


def copies(stage: Stage) -> list[Copy]:
    """Every `COPY` of a stage (shell-word form)."""
    result = []
    for args in stage.all("COPY"):
        words = shlex.split(args)
        flags = dict(w.removeprefix("--").split("=", 1) for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        assert len(paths) >= 2, f"COPY {args}"
        result.append(Copy(flags, paths[:-1], paths[-1]))
    return result


# --- .dockerignore --------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern (Go filepath.Match plus `**`) as a regex over slash-separated paths."""
    parts = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
            if pattern.startswith("/", i):  # `**/` also matches no directory at all
                parts[-1] = "(?:.*/)?"
                i += 1
            continue
        char = pattern[i]
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        elif char == "[":
            end = pattern.index("]", i)
            parts.append(fnmatch.translate(pattern[i : end + 1]).removeprefix("(?s:")[:-3])
            i = end
        else:
            parts.append(re.escape(char))
        i += 1
    return re.compile("".join(parts))


@dataclass(frozen=True)
class DockerIgnore:
    """The build context's exclusions: `(exception?, pattern)` in file order, last match wins."""

    rules: tuple[tuple[bool, re.Pattern[str]], ...]

    def excluded(self, relative: str) -> bool:
        """Whether the context path `relative` (or a directory above it) is left out."""
        parts = relative.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for exception, regex in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                result = not exception
        return result


def dockerignore(path: Path = DOCKERIGNORE) -> DockerIgnore:
    """Read `.dockerignore` (comments, blank lines, `!` exceptions; paths cleaned like Go's)."""
    rules = []
    for raw in path.read_text().splitlines() if path.exists() else []:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        line = line.removeprefix("!").strip().strip("/")
        rules.append((exception, _pattern_regex(line)))
    return DockerIgnore(tuple(rules))


def context_files(source: str, ignore: DockerIgnore, root: Path = ROOT) -> list[Path]:
    """The files of the build context under `source` that a COPY sends (after .dockerignore)."""
    top = root / source
    assert top.exists(), f"COPY {source}: not in the build context"
    candidates = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
    kept = [p for p in candidates if not ignore.excluded(p.relative_to(root).as_posix())]
    assert kept, f"COPY {source}: .dockerignore leaves nothing of it in the build context"
    return kept
