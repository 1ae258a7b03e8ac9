"""`check-config --online`: harmless calls that show, before go-live, whether each wire holds.

Each routed target's registry line builds its probes (`TargetSpec.probes`, sans-I/O in its
handler module). Here they are made: the token endpoint first where the target has one, then
each probe; GraphQL documents are validated against the schema the platform serves by
introspection (not against our transcription of it). One line per platform: `ok` with what was
shown, or `FAILED` with the first reason. Nothing is cancelled, nothing is published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from graphql import build_client_schema, validate_schema

from bridge.executor import Executor
from bridge.graphql_schemas import check_document
from bridge.settings import Config
from bridge.targets import build
from bridge.tokens import TokenCache, with_token
from handlers.base import ApiSource, Probe, Rejected, RetryLater, TokenAuth
from handlers.registry import TARGETS

SOURCE_TIMEOUT = 10.0  # seconds per call for a source's probes (sources have no timeout setting)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One platform's line."""

    platform: str
    ok: bool
    detail: str

    def line(self) -> str:
        """`online: cj        ok  ...` or `online: prime     FAILED ...`."""
        return f"online: {self.platform:<10} {'ok    ' if self.ok else 'FAILED'} {self.detail}"


class _BrokenWireError(Exception):
    """A probe found the wire broken: the reason is the platform's line."""


def _schema_problem(probe: Probe, body: bytes) -> str | None:
    """Why one of `probe.documents` does not validate against the introspected schema."""
    try:
        schema = build_client_schema(orjson.loads(body)["data"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return f"{probe.what}: the introspection result is not a schema ({type(exc).__name__})"
    if errors := validate_schema(schema):  # else validating a document raises on it
        return f"{probe.what}: the introspected schema is not valid ({errors[0].message[:200]})"
    for query, variables in probe.documents:
        refusal = check_document(schema, query, variables)
        if refusal is not None:
            return f"{probe.what}: {refusal.kind}: {'; '.join(refusal.messages)[:300]}"
    return None


async def _probe(probe: Probe, within: float, executor: Executor, cache: TokenCache | None) -> str:
    """What `probe` showed; `_BrokenWireError` says why when the wire does not hold."""
    call = probe.call
    if probe.bearer and cache is not None:
        token = await cache.get()
        if not isinstance(token, str):
            raise _BrokenWireError(f"token: {token.reason}")
        call = with_token(call, token)
    answer = await executor.call(call, within=within)
    if isinstance(answer, RetryLater):
        raise _BrokenWireError(f"{probe.what}: {answer.reason}")
    shown = probe.read(answer.status, answer.headers, answer.body)
    if isinstance(shown, Rejected | RetryLater):
        raise _BrokenWireError(shown.reason)
    if probe.documents and (problem := _schema_problem(probe, answer.body)) is not None:
        raise _BrokenWireError(problem)
    return shown


async def _platform(
    name: str, auth: TokenAuth | None, within: float, probes: Sequence[Probe], executor: Executor
) -> Verdict:
    shown: list[str] = []
    cache = None
    if auth is not None:
        cache = TokenCache(auth, executor, within)
        token = await cache.get()
        if not isinstance(token, str):
            return Verdict(name, ok=False, detail=f"token: {token.reason}")
        shown.append("token endpoint answered")
    try:
        shown.extend([await _probe(probe, within, executor, cache) for probe in probes])
    except _BrokenWireError as exc:
        return Verdict(name, ok=False, detail=str(exc))
    if not shown:
        return Verdict(name, ok=True, detail="nothing to check online")
    return Verdict(name, ok=True, detail="; ".join(shown))


async def check_online(
    config: Config, now: datetime, targets: Sequence[str] | None = None
) -> list[Verdict]:
    """A verdict per source that calls its platform's API, then per routed target.

    With `targets`, only those targets are checked, and no source.
    """
    names = targets if targets is not None else config.settings.targets_in_use()
    sources = config.source_handlers.items() if targets is None else ()
    verdicts = []
    async with Executor.running(connections=4) as executor:
        for source, handler in sorted(sources):
            if isinstance(handler, ApiSource):
                auth, probes = handler.online_probes()
                platform = f"{source.value} (source)"
                verdicts.append(await _platform(platform, auth, SOURCE_TIMEOUT, probes, executor))
        for name in names:
            made = build(config, name)
            spec, secrets = TARGETS[name], config.target_secrets.get(name, {})
            section = getattr(config.settings.targets, name)
            probes = spec.probes(section, secrets, now) if spec.probes is not None else ()
            verdicts.append(await _platform(name, made.auth, made.timeout, probes, executor))
    return verdicts
