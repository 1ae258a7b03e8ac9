"""Hostile bytes on the wire against a real `python -m bridge run` process (raw asyncio sockets).

What aiohttp itself does with malformed HTTP (found here, and asserted):

- Its parser refuses with **400** before any handler or middleware runs: bad request lines, an
  unknown HTTP version, bytes that are not allowed in the target or in header values,
  `Content-Length` with `Transfer-Encoding`, two `Content-Length`s, malformed chunk sizes, a line
  over 8,190 bytes (one 100 KB header), more than 128 headers. aiohttp's own answer is plain text
  quoting the offending bytes, with its `Server` header; the bridge's connection handler
  (`web/connections.OwnedErrors`) answers JSON `bad_request` with the parser's reason only, and
  `Server: cancel-bridge`.
- Requests pipelined in one segment *before* a malformed one are dropped with it: the only
  answer is the 400 (nothing of theirs is run, so nothing is published).
- `GET /healthz` with no version at all (HTTP/0.9 style) is served, as `HTTP/0.9 200`.
- A body that stops (the client hangs up) gets no answer; one that stalls gets our JSON 408 after
  `body_timeout`, also when the bytes that stall it are a malformed chunk arriving after the
  handler began reading (the parser's 400 waits behind the handler).
- Headers are not bounded in time by anything but aiohttp's `keepalive_timeout` (its default is
  3,630 s): the bridge sets it to `[receiver] header_timeout`, so a client dribbling its headers
  is cut off (`test_connections_integration.py`: the cap and idle connections).
- Duplicated signature headers: the first one decides (aiohttp keeps header order and
  `headers.get` returns the first), deterministically; a valid signature after an invalid one
  does not rescue it.

Every test ends with the process alive and `/healthz` answering, no error-level log line, and
nothing on the `orders` exchange but events whose bodies were validly signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractQueue

from handlers.shoplazza import sign
from tests.harness.processes import Bridge, free_port, spawn
from tests.harness.receiver import SECRET
from tests.harness.wire import Answer, chunked, exchange, one, request

API_TOKEN = "wire-api-token-0123456789"
BODY_TIMEOUT = 1.5
HEADER_TIMEOUT = 1.5
SHOP = "wire.myshoplaza.com"
WEBHOOK = "/webhooks/shoplazza"

Headers = list[tuple[str | bytes, str | bytes]]


# -- the process -------------------------------------------------------------------------


@dataclass
class Live:
    """A running bridge, its log lines (read continuously so its stdout never blocks)."""

    bridge: Bridge
    port: int
    reading: asyncio.Task[None] | None = None
    accepted: set[str] = field(default_factory=set)  # order ids answered "accepted"

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.bridge.process.pid

    def rss_kib(self) -> int:
        """The child's resident set size (VmRSS), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        msg = "no VmRSS line"
        raise AssertionError(msg)

    async def _read(self) -> None:
        stdout = self.bridge.process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            self.bridge.lines.append(orjson.loads(line))

    async def assert_alive(self) -> None:
        """Still running, `/healthz` answers, and nothing was logged at error level."""
        assert self.bridge.process.returncode is None, "the bridge died"
        health = await one(self.port, request("GET", "/healthz"))
        assert (health.status, health.json()) == (200, {"status": "alive"})
        errors = [
            line
            for line in self.bridge.lines
            if line.get("level") in ("error", "critical") or line["event"] == "receiver.unhandled"
        ]
        assert not errors, errors[:3]

    async def post(self, headers: Headers, body: bytes, **options: Any) -> Answer:  # noqa: ANN401
        """One webhook; records the order when the answer is `accepted`."""
        answer = await one(self.port, request("POST", WEBHOOK, headers, body), **options)
        self.note(answer, body)
        return answer

    def note(self, answer: Answer, body: bytes) -> None:
        """Record `body`'s order if `answer` says it was accepted (so it was published)."""
        if answer.status == 200 and answer.json().get("status") == "accepted":
            self.accepted.add(orjson.loads(body)["id"])


async def _stop_reading(live: Live) -> None:
    if live.reading is not None:
        live.reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await live.reading
        live.reading = None


@contextlib.asynccontextmanager
async def running(tmp_path: Path, amqp_url: str) -> AsyncIterator[Live]:
    port = free_port()
    config = tmp_path / "wire.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "state.db"}"\n'
        "[broker]\nreconnect_interval = 0.2\nconfirm_timeout = 5.0\n"
        f"[receiver]\nport = {port}\nbody_timeout = {BODY_TIMEOUT}\n"
        f"header_timeout = {HEADER_TIMEOUT}\n"
        'api_token_env = "CB_WIRE_API_TOKEN"\n'
        '[sources.shoplazza]\nsecret_env = "SHOPLAZZA_CLIENT_SECRET"\n'
    )
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "SHOPLAZZA_CLIENT_SECRET": SECRET,
        "CB_WIRE_API_TOKEN": API_TOKEN,
    }
    bridge = await spawn(["run", "--config", str(config)], env, port)
    live = Live(bridge, port)
    try:
        await bridge.wait_for("receiver.listening", "broker.connected/receiver")
        live.reading = asyncio.create_task(live._read())
        yield live
        await live.assert_alive()
        await _stop_reading(live)
        status, _ = await bridge.stop()
        assert status == 0, "the bridge did not stop cleanly"
    finally:
        await _stop_reading(live)
        if bridge.process.returncode is None:
            bridge.process.kill()
            await bridge.process.wait()


@pytest.fixture
async def live(tmp_path: Path, amqp_url: str) -> AsyncIterator[Live]:
    async with running(tmp_path, amqp_url) as bridge:
        yield bridge


async def taken(queue: AbstractQueue) -> list[bytes]:
    """Every message body waiting on `queue`, taken (all were confirmed before their 200)."""
    found = []
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        found.append(message.body)
    return found


async def published(queue: AbstractQueue) -> list[dict[str, Any]]:
    """Every event waiting on `queue`, taken."""
    return [orjson.loads(body) for body in await taken(queue)]


async def assert_only_signed_published(live: Live, subscriber: AbstractQueue) -> None:
    """What reached the exchange is exactly what was answered `accepted`: validly signed."""
    orders = [event["order_id"] for event in await published(subscriber)]
    assert set(orders) == live.accepted, (sorted(set(orders) - live.accepted), len(orders))


# -- requests ----------------------------------------------------------------------------


def order_body(tag: str) -> bytes:
    """A cancellation for a fresh order; its id names the case (never published twice)."""
    return orjson.dumps({"id": f"wire-{tag}-{uuid.uuid4().hex[:10]}", "status": "cancelled"})


def signed_headers(
    body: bytes, *, shop: str | bytes = SHOP, signature: bytes | None = None
) -> Headers:
    return [
        ("Content-Type", "application/json"),
        ("X-Shoplazza-Topic", "orders/cancelled"),
        ("X-Shoplazza-Shop-Domain", shop),
        (
            "X-Shoplazza-Hmac-Sha256",
            sign(body, SECRET).encode() if signature is None else signature,
        ),
    ]


def unsigned_headers() -> Headers:
    return [("X-Shoplazza-Topic", "orders/cancelled"), ("X-Shoplazza-Shop-Domain", SHOP)]


def malformed_cases() -> dict[str, bytes]:
    """Requests aiohttp's parser refuses; each would be a publishable, signed one otherwise."""
    cases: dict[str, bytes] = {}

    def signed(tag: str, extra: Headers | None = None) -> tuple[Headers, bytes]:
        body = order_body(tag)
        return [*signed_headers(body), *(extra or [])], body

    headers, body = signed("method")
    cases["invalid method token"] = request("P@ST", WEBHOOK, headers, body)
    cases["garbage request line"] = b"GARBAGE\r\n\r\n"
    headers, body = signed("version")
    cases["HTTP/9.9"] = request("POST", WEBHOOK, headers, body, version="HTTP/9.9")
    cases["HTTP/2 preface"] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    cases["TLS ClientHello"] = bytes.fromhex("16030100a5010000a10303") + bytes(range(64))
    headers, body = signed("space")
    cases["space in the target"] = request("POST", "/webhooks/shop lazza", headers, body)
    cases["NUL in the target"] = request("GET", b"/api/orders/shoplazza/a\x00b", [])
    cases["raw UTF-8 in the target"] = request("GET", "/api/orders/shoplazza/ünï€".encode(), [])
    cases["target over 8,190 bytes"] = request("GET", "/" + "a" * 20_000, [])
    headers, body = signed("lf")
    cases["bare LF line ends"] = request("POST", WEBHOOK, headers, body).replace(b"\r\n", b"\n")
    cases["header without a colon"] = request("GET", "/healthz", [(b"X-Broken header", b"")])
    headers, body = signed("ws-colon")
    cases["space before the colon"] = request("POST", WEBHOOK, headers, body).replace(
        b"X-Shoplazza-Hmac-Sha256:", b"X-Shoplazza-Hmac-Sha256 :"
    )
    cases["obs-fold continuation"] = request("GET", "/healthz", [("X-A", b"a\r\n folded")])
    cases["control byte in a header"] = request("GET", "/healthz", [("X-A", b"a\x01b")])
    cases["NUL in a header"] = request("GET", "/healthz", [("X-A", b"a\x00b")])
    headers, body = signed("100k", [("X-Big", b"a" * 100_000)])
    cases["one 100 KB header"] = request("POST", WEBHOOK, headers, body)
    headers, body = signed("1000", [(f"X-H{n}", "v") for n in range(1000)])
    cases["1,000 headers"] = request("POST", WEBHOOK, headers, body)
    headers, body = signed("cl-te", [("Transfer-Encoding", "chunked")])
    cases["Content-Length with Transfer-Encoding"] = request(
        "POST", WEBHOOK, headers, chunked(body), length=len(body)
    )
    headers, body = signed("2cl", [("Content-Length", "5")])
    cases["two Content-Lengths"] = request("POST", WEBHOOK, headers, body)
    headers, body = signed("cl-alpha")
    cases["Content-Length not a number"] = request(
        "POST", WEBHOOK, [*headers, ("Content-Length", "12abc")], body, length=-1
    )
    headers, body = signed("cl-neg")
    cases["negative Content-Length"] = request(
        "POST", WEBHOOK, [*headers, ("Content-Length", "-1")], body, length=-1
    )
    for tag, size_line in {
        "chunk size not hex": b"zz",
        "negative chunk size": b"-1",
        "chunk size overflowing": b"F" * 24,
        "chunk size with 0x": b"0x10",
    }.items():
        headers, body = signed("chunk", [("Transfer-Encoding", "chunked")])
        cases[tag] = request("POST", WEBHOOK, headers, size_line + b"\r\n" + body, length=-1) + (
            b"\r\n0\r\n\r\n"
        )
    headers, body = signed("chunk-crlf", [("Transfer-Encoding", "chunked")])
    cases["no CRLF after chunk data"] = request(
        "POST", WEBHOOK, headers, f"{len(body):x}\r\n".encode() + body + b"XX0\r\n\r\n", length=-1
    )
    return cases


# -- tests -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_malformed_http_is_a_400_and_never_runs(
    live: Live, subscriber: AbstractQueue
) -> None:
    statuses = {}
    for case, data in malformed_cases().items():
        found = await exchange(live.port, data)
        statuses[case] = [answer.status for answer in found]
        for answer in found:
            assert answer.json()["error"] == "bad_request", (case, answer)
            assert answer.headers["server"] == "cancel-bridge", (case, answer)
            assert b"aiohttp" not in answer.body.lower(), (case, answer)
            # nothing of the request is quoted back: not a header value, not the target
            quoted = (b"a\\x00b", b"a\\x01b", b"a\\u0000b", b"a\\u0001b")  # as repr or JSON
            for sent in (*quoted, b"folded", b"shop lazza", b"X-Broken", b"GARBAGE", b"P@ST"):
                assert sent not in answer.body, (case, answer)
    assert all(codes == [400] for codes in statuses.values()), statuses
    await assert_only_signed_published(live, subscriber)  # none of those signed bodies ran
    await live.assert_alive()


@pytest.mark.timeout(120)
async def test_truncated_and_cut_bodies_are_never_published(
    live: Live, subscriber: AbstractQueue
) -> None:
    """The signature is over the whole body: a part of it is never accepted, whatever happens."""
    te = [("Transfer-Encoding", "chunked")]

    def truncated(tag: str) -> bytes:
        body = order_body(tag)
        return request("POST", WEBHOOK, signed_headers(body), body[:-8], length=len(body) + 500)

    def cut_chunk(tag: str) -> bytes:
        body = order_body(tag)
        return request("POST", WEBHOOK, [*signed_headers(body), *te], length=-1) + (
            f"{len(body) + 100:x}\r\n".encode() + body
        )

    # The client goes away: nobody to answer; the bridge just forgets the request.
    for make in (truncated, cut_chunk):
        assert await exchange(live.port, make("gone"), hang_up=True) == []
        found = await exchange(live.port, make("eof"), half_close=True)
        assert all(400 <= answer.status < 500 for answer in found), found
    # The client stalls: 408 (JSON) after body_timeout, without waiting for the lingering close.
    for make in (truncated, cut_chunk):
        answer = await one(live.port, make("stall"), answers=1, within=BODY_TIMEOUT + 10)
        assert (answer.status, answer.json()["error"]) == (408, "body_timeout")
    # A malformed chunk size after the handler began reading: the body never completes, so 408.
    body = order_body("split")
    head = request("POST", WEBHOOK, [*signed_headers(body), *te], length=-1)
    answer = await one(
        live.port,
        [head + b"5\r\n" + body[:5] + b"\r\n", b"zz\r\n" + body[5:] + b"\r\n0\r\n\r\n"],
        pause=0.3,
        answers=1,
        within=BODY_TIMEOUT + 10,
    )
    assert (answer.status, answer.json()["error"]) == (408, "body_timeout")
    # Content-Length shorter than the body: what was counted does not match the signature (401)
    # and the rest is garbage after `Connection: close`; arriving in one segment, aiohttp's
    # parser refuses the whole segment (400) before the handler runs.
    body = order_body("short")
    found = await exchange(
        live.port, request("POST", WEBHOOK, signed_headers(body), body, length=10)
    )
    assert found, "no answer"
    assert all(a.status in (400, 401) for a in found), found
    # A valid chunked body, for contrast: accepted.
    body = order_body("chunked-ok")
    answer = await one(
        live.port, request("POST", WEBHOOK, [*signed_headers(body), *te], chunked(body), length=-1)
    )
    live.note(answer, body)
    assert answer.json()["status"] == "accepted"
    await assert_only_signed_published(live, subscriber)
    assert len(live.accepted) == 1
    await live.assert_alive()


@pytest.mark.timeout(60)
async def test_headers_dribbled_a_byte_at_a_time_are_cut_off(live: Live) -> None:
    """A slowloris client: the connection must be closed (or answered) within a bound."""
    bound = HEADER_TIMEOUT + 8.0
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    head = b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Slow: " + b"a" * 4000

    async def dribble() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)  # paced: the slowness is the behaviour under test

    sending = asyncio.create_task(dribble())
    try:
        async with asyncio.timeout(bound):
            with contextlib.suppress(ConnectionError):
                await reader.read()  # EOF (or an answer) when the bridge gives up on us
        cut = True
    except TimeoutError:
        cut = False
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sending
        writer.close()
    assert cut, f"a client dribbling its headers was still connected after {bound:g} s"


@pytest.mark.timeout(120)
async def test_duplicate_signature_headers_the_first_decides(
    live: Live, subscriber: AbstractQueue
) -> None:
    """Deterministic: repeated sends get the same answer; a later valid header never rescues."""
    name = "X-Shoplazza-Hmac-Sha256"

    def with_signatures(body: bytes, *signatures: bytes) -> Headers:
        base = [h for h in signed_headers(body) if h[0] != name]
        return [*base, *((name, s) for s in signatures)]

    answers: dict[str, list[tuple[int, str]]] = {}
    for case, first_valid, second_valid in (
        ("valid, invalid", True, False),
        ("invalid, valid", False, True),
        ("valid, valid", True, True),
        ("invalid, invalid", False, False),
    ):
        body = order_body(case.replace(", ", "-"))
        good, bad = sign(body, SECRET).encode(), sign(body, "not-the-secret").encode()
        signatures = (good if first_valid else bad, good if second_valid else bad)
        for _ in range(3):
            answer = await live.post(with_signatures(body, *signatures), body)
            answers.setdefault(case, []).append(
                (answer.status, answer.json().get("status") or answer.json()["error"])
            )
    assert answers == {
        "valid, invalid": [(200, "accepted")] * 3,
        "invalid, valid": [(401, "bad_signature")] * 3,
        "valid, valid": [(200, "accepted")] * 3,
        "invalid, invalid": [(401, "bad_signature")] * 3,
    }
    # One header holding both values (a proxy joining duplicates with a comma): refused.
    body = order_body("joined")
    joined = sign(body, SECRET).encode() + b", " + sign(body, "x").encode()
    assert (await live.post(with_signatures(body, joined), body)).status == 401
    events = await published(subscriber)
    assert Counter(e["order_id"] for e in events) == dict.fromkeys(live.accepted, 3)
    await live.assert_alive()


@pytest.mark.timeout(120)
async def test_odd_content_types_encodings_and_non_ascii_headers(
    live: Live, subscriber: AbstractQueue
) -> None:
    """The body's bytes are what is signed and parsed: Content-Type never matters.

    Any Content-Encoding but identity is 415; header bytes that are not ASCII never get a 5xx.
    """
    answers: dict[str, tuple[int, str]] = {}

    async def send(
        case: str,
        extra: Headers,
        shop: bytes = SHOP.encode(),
        signature: Callable[[bytes], bytes] | None = None,
    ) -> None:
        body = order_body("odd")
        mac = None if signature is None else signature(body)
        headers = [
            h for h in signed_headers(body, shop=shop, signature=mac) if h[0] != "Content-Type"
        ]
        headers += extra
        answer = await live.post(headers, body)
        answers[case] = (answer.status, answer.json().get("status") or answer.json()["error"])

    for case, content_type in {
        "charset utf-16": b"application/json; charset=utf-16",
        "text/plain": b"text/plain",
        "multipart without boundary": b"multipart/form-data",
        "form": b"application/x-www-form-urlencoded",
        "semicolons": b";;;=;",
        "2 KB type": b"application/" + b"x" * 2048,
        "UTF-8 bytes": "application/jsön; charset=ütf-8".encode(),
        "latin-1 bytes": b"application/j\xe9son",
    }.items():
        await send(f"Content-Type {case}", [("Content-Type", content_type)])
    await send("no Content-Type", [])
    for encoding in ("gzip", "deflate", "br", "x-custom", "gzip, identity", "identity, gzip"):
        await send(f"Content-Encoding {encoding}", [("Content-Encoding", encoding)])
    for encoding in ("identity", "IDENTITY", " identity "):
        await send(f"Content-Encoding {encoding!r}", [("Content-Encoding", encoding)])
    # Duplicated: the first decides, as for signatures; the body is read raw either way.
    await send(
        "Content-Encoding identity then gzip",
        [("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
    )
    await send(
        "Content-Encoding gzip then identity",
        [("Content-Encoding", "gzip"), ("Content-Encoding", "identity")],
    )
    await send("UTF-8 shop", [], shop="Bäckerei-Ünï.myshoplaza.com".encode())
    await send("UTF-8 in another header", [("X-Note", "crème brûlée 🍮".encode())])
    await send(
        "UTF-8 after the signature", [], signature=lambda b: sign(b, SECRET).encode() + "é".encode()
    )
    await send("latin-1 signature", [], signature=lambda _: b"\xe9\xe9\xe9")

    accepted, refused = (200, "accepted"), (415, "unsupported_content_encoding")
    expected = {
        **{case: accepted for case in answers if case.startswith(("Content-Type", "no Content"))},
        **{case: refused for case in answers if case.startswith("Content-Encoding")},
        "Content-Encoding 'identity'": accepted,
        "Content-Encoding 'IDENTITY'": accepted,
        "Content-Encoding ' identity '": accepted,
        "Content-Encoding identity then gzip": accepted,
        "UTF-8 shop": accepted,
        "UTF-8 in another header": accepted,
        "UTF-8 after the signature": (401, "bad_signature"),
        "latin-1 signature": (401, "bad_signature"),
    }
    assert answers == expected
    events = await published(subscriber)
    assert {e["order_id"] for e in events} == live.accepted
    shops = {e["shop"] for e in events}
    assert shops == {SHOP, "bäckerei-ünï.myshoplaza.com"}  # UTF-8 decoded, lower-cased
    await live.assert_alive()


@pytest.mark.timeout(120)
async def test_http_1_0_0_9_and_pipelining(live: Live, subscriber: AbstractQueue) -> None:
    body = order_body("http10")
    answer = await live.post(signed_headers(body), body)  # sanity: 1.1 works
    assert answer.json()["status"] == "accepted"
    body = order_body("http10")
    found = await exchange(
        live.port, request("POST", WEBHOOK, signed_headers(body), body, version="HTTP/1.0")
    )
    assert [a.status for a in found] == [200]  # and the bridge closed the connection
    live.note(found[0], body)
    health = await one(live.port, request("GET", "/healthz", version="HTTP/1.0", close=False))
    assert health.json() == {"status": "alive"}
    # HTTP/1.0 without Content-Length: no body; the bytes after are refused by aiohttp.
    body = order_body("http10-nolength")
    found = await exchange(
        live.port,
        request("POST", WEBHOOK, signed_headers(body), body, version="HTTP/1.0", length=-1),
    )
    assert [a.status for a in found] == [400]
    # No version at all (HTTP/0.9 style): llhttp takes it; the webhook has no headers: 401.
    health = await one(live.port, b"GET /healthz\r\n\r\n")
    assert health.json() == {"status": "alive"}
    assert (await one(live.port, b"POST /webhooks/shoplazza\r\n\r\n")).status == 401

    # Five requests in one write: five answers, in order; only the signed bodies published.
    first, second = order_body("pipe"), order_body("pipe")
    requests = [
        request("GET", "/healthz", close=False),
        request("POST", WEBHOOK, signed_headers(first), first, close=False),
        request("POST", WEBHOOK, unsigned_headers(), order_body("pipe-unsigned"), close=False),
        request("POST", WEBHOOK, signed_headers(second), second, close=False),
        request("GET", "/api/orders/shoplazza/x", [("Authorization", "Bearer wrong")]),
    ]
    found = await exchange(live.port, b"".join(requests))
    assert [a.status for a in found] == [200, 200, 401, 200, 401]
    for answer, sent in ((found[1], first), (found[3], second)):
        live.note(answer, sent)
    # Pipelined with a malformed one in the same segment: aiohttp answers that 400 alone.
    dropped = order_body("pipe-dropped")
    found = await exchange(
        live.port,
        request("POST", WEBHOOK, signed_headers(dropped), dropped, close=False)
        + b"GARBAGE\r\n\r\n",
    )
    assert found, "no answer at all"
    assert found[-1].status == 400, found
    assert all(a.status in (200, 400) for a in found), found
    for answer in found[:-1]:
        live.note(answer, dropped)
    await assert_only_signed_published(live, subscriber)
    assert len(live.accepted) >= 4
    await live.assert_alive()


# -- memory ------------------------------------------------------------------------------

WARM_UP = 1_500
LOAD = 5_000
CLIENTS = 8
RSS_GROWTH_BOUND_KIB = 32 * 1024  # generous: measured +2..5 MiB; a 7 KB-per-request leak fails


@dataclass(frozen=True)
class Hostile:
    """One request of the mix and the final statuses it must get ([] when we hang up)."""

    case: str
    data: bytes
    expected: list[int]
    hang_up: bool = False
    signed_body: bytes | None = None  # a validly signed cancellation: may be accepted


def _hostile_mix() -> Iterator[Hostile]:  # noqa: C901 - one small builder per case
    auth = [("Authorization", f"Bearer {API_TOKEN}")]

    def unsigned() -> Hostile:
        body = order_body("mix")
        return Hostile("unsigned", request("POST", WEBHOOK, unsigned_headers(), body), [401])

    def wrong_signature() -> Hostile:
        body = order_body("mix")
        headers = signed_headers(body, signature=sign(body, "wrong").encode())
        return Hostile("wrong signature", request("POST", WEBHOOK, headers, body), [401])

    def duplicate_signatures() -> Hostile:
        body = order_body("mix")
        good = signed_headers(body)
        bad = [("X-Shoplazza-Hmac-Sha256", sign(body, "wrong").encode())]
        data = request("POST", WEBHOOK, [*good[:3], *bad, good[3]], body)
        return Hostile("invalid then valid signature", data, [401])

    def oversize() -> Hostile:
        body = order_body("mix")
        data = request("POST", WEBHOOK, signed_headers(body), length=2 * 1024 * 1024)
        return Hostile("Content-Length over the limit", data, [413])

    def compressed() -> Hostile:
        body = order_body("mix")
        data = request("POST", WEBHOOK, [*signed_headers(body), ("Content-Encoding", "gzip")], body)
        return Hostile("gzip", data, [415])

    def truncated() -> Hostile:
        body = order_body("mix")
        data = request("POST", WEBHOOK, signed_headers(body), body[:10], length=len(body))
        return Hostile("truncated, hung up", data, [], hang_up=True)

    def cut_chunk() -> Hostile:
        body = order_body("mix")
        headers = [*signed_headers(body), ("Transfer-Encoding", "chunked")]
        data = request("POST", WEBHOOK, headers, b"400\r\n" + body, length=-1)
        return Hostile("chunk cut, hung up", data, [], hang_up=True)

    def api_wrong_token() -> Hostile:
        data = request("GET", "/api/orders/shoplazza/1", [("Authorization", b"Bearer \xff\xfe")])
        return Hostile("api wrong token", data, [401])

    def api_injection() -> Hostile:
        path = "/api/orders/shoplazza/%27%20OR%201=1%20--%20" + uuid.uuid4().hex
        return Hostile("api injection id", request("GET", path, auth), [404])

    def links_injection() -> Hostile:
        link = orjson.dumps({"shoplazza": f"'; DROP TABLE links; -- {uuid.uuid4().hex}", "cj": "1"})
        return Hostile("links injection", request("PUT", "/api/links", auth, link), [200])

    def pipelined() -> Hostile:
        body = order_body("mix")
        data = (
            request("GET", "/healthz", close=False)
            + request("POST", WEBHOOK, unsigned_headers(), body, close=False)
            + request("DELETE", "/healthz")
        )
        return Hostile("pipelined", data, [200, 401, 405])

    def signed_garbage() -> Hostile:
        body = b'{"not": "an order"' + uuid.uuid4().hex.encode()
        return Hostile(
            "signed garbage", request("POST", WEBHOOK, signed_headers(body), body), [200]
        )

    def authentic() -> Hostile:
        body = order_body("mix")
        data = request("POST", WEBHOOK, signed_headers(body), body)
        return Hostile("authentic", data, [200], signed_body=body)

    malformed = list(malformed_cases().values())
    builders: list[Callable[[], Hostile]] = [
        unsigned,
        wrong_signature,
        duplicate_signatures,
        oversize,
        compressed,
        truncated,
        cut_chunk,
        api_wrong_token,
        api_injection,
        links_injection,
        pipelined,
    ]
    for n in itertools.count():
        if n % 40 == 0:
            yield authentic()
        elif n % 40 == 20:
            yield signed_garbage()
        elif n % 3 == 0:
            yield Hostile("malformed", malformed[n % len(malformed)], [400])
        else:
            yield builders[n % len(builders)]()


async def _hammer(live: Live, mix: Iterator[Hostile], count: int) -> tuple[Counter[str], int]:
    """Send `count` requests from `mix` over CLIENTS connections at a time.

    Returns how many of each case, and how many were quarantined; fails on any unexpected answer.
    """
    wrong: list[tuple[str, list[int]]] = []
    cases: Counter[str] = Counter()
    quarantined = 0
    todo = iter([next(mix) for _ in range(count)])

    async def client() -> None:
        nonlocal quarantined
        for hostile in todo:
            found = await exchange(
                live.port, hostile.data, hang_up=hostile.hang_up, answers=len(hostile.expected)
            )
            statuses = [a.status for a in found]
            cases[hostile.case] += 1
            if statuses != hostile.expected:
                wrong.append((hostile.case, statuses))
            elif hostile.signed_body is not None:
                live.note(found[0], hostile.signed_body)
            elif hostile.case == "signed garbage":
                quarantined += found[0].json()["status"] == "quarantined"

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    assert not wrong, wrong[:10]
    return cases, quarantined


@pytest.mark.timeout(600)
async def test_memory_stays_bounded_under_5000_hostile_requests(
    live: Live, subscriber: AbstractQueue, quarantine: AbstractQueue
) -> None:
    mix = _hostile_mix()
    _, quarantined = await _hammer(live, mix, WARM_UP)
    before = live.rss_kib()
    cases, more = await _hammer(live, mix, LOAD)
    quarantined += more
    after = live.rss_kib()
    growth = after - before
    assert growth < RSS_GROWTH_BOUND_KIB, (
        f"RSS grew {growth} KiB over {LOAD} hostile requests "
        f"({before} KiB after a {WARM_UP}-request warm-up, {after} KiB after); cases {dict(cases)}"
    )
    await live.assert_alive()
    await assert_only_signed_published(live, subscriber)
    assert len(live.accepted) == (WARM_UP + LOAD + 39) // 40  # every authentic one, once
    assert len(await taken(quarantine)) == quarantined
