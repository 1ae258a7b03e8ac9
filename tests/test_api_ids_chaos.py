"""`/api/*` with hostile ids, on both store engines: answered as data, never executed.

SQL-looking strings, path traversal (plain, percent-encoded, double-encoded, backslashes), NUL
and other control characters, very long and non-ASCII ids go to `GET /api/orders/...` and
`PUT /api/links` over raw sockets (so they reach the receiver exactly as written). With the token:
404 or 400, as JSON, and the store's tables hold exactly what they held (a known order is still
found); link ids are stored verbatim or refused with 400. Without the token, or with a wrong one
(including bytes that are not UTF-8): 401.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from bridge.store.deliveries import Store
from bridge.store.tables import deliveries, echoes, events, links, transitions
from tests.harness import wire
from tests.harness.pipeline import API_TOKEN, Pipeline
from tests.harness.receiver import shoplazza_webhook
from tests.harness.wire import Answer, one

TOKEN = [("Authorization", f"Bearer {API_TOKEN}")]
WRONG_TOKENS: list[bytes | None] = [
    None,
    f"Bearer {API_TOKEN[:-1]}x".encode(),
    f"Basic {API_TOKEN}".encode(),
    f"Bearer {API_TOKEN} extra".encode(),
    f"Bearer {API_TOKEN}".encode() + b"\xff",  # not UTF-8: was a 500 (UnicodeEncodeError)
    b"Bearer \xff\xfe\xfd",
    "Bearer tökén".encode(),
]

# Path segments as sent (percent-encoded or raw), for the order id of a Shoplazza order.
HOSTILE_IDS = [
    b"%27%20OR%201=1%20--",
    b"'%20OR%20'1'='1",
    b"1%27;%20DROP%20TABLE%20events;%20--",
    b"%3B%20DROP%20TABLE%20events%3B",
    b"..%2F..%2Fetc%2Fpasswd",
    b"%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"%252e%252e%252fetc%252fpasswd",
    b"..%5C..%5Cwindows%5Cwin.ini",
    b"../../etc/passwd",
    b"..;/..;/etc/passwd",
    b"a%00b",
    b"%00",
    b"%25",
    b"_",
    b"x%0Ay",
    b"x%0D%0AX-Injected:%201",
    b"x%01%1F%7Fy",
    b"a" * 300,
    b"a" * 6000,
    b"%C3%BCn%C3%AF%E2%82%AC%F0%9F%98%80",
    b"%ED%A0%80",  # a UTF-16 surrogate, UTF-8-encoded: not valid UTF-8
    b"%FF%FE",
]


async def tables(store: Store) -> dict[str, list[str]]:
    """Every row of every table, as sorted text: equal snapshots mean nothing changed."""
    async with store.reading() as connection:
        return {
            table.name: sorted(
                repr(tuple(row)) for row in (await connection.execute(sa.select(table))).all()
            )
            for table in (events, deliveries, transitions, links, echoes)
        }


async def api(
    pipeline: Pipeline,
    method: str,
    path: bytes | str,
    auth: bytes | None = TOKEN[0][1].encode(),
    body: bytes = b"",
) -> Answer:
    """One `/api` request over a raw socket; the answer is JSON whatever it says."""
    headers: list[tuple[str | bytes, str | bytes]] = []
    if auth is not None:
        headers.append(("Authorization", auth))
    port = pipeline.client.port
    assert port is not None
    answer = await one(port, wire.request(method, path, headers, body))
    assert answer.is_json, (path, answer)
    assert answer.status < 500, (path, answer)
    return answer


async def known_order(pipeline: Pipeline) -> str:
    """A cancellation that went all the way (recorded, delivered) and is linked to a CJ id."""
    order = await pipeline.post()
    await pipeline.settled("delivered")
    link = orjson.dumps({"shoplazza": order, "cj": f"cj-{order}"})
    assert (await api(pipeline, "PUT", "/api/links", body=link)).status == 200
    return order


async def assert_still_found(pipeline: Pipeline, order: str) -> None:
    answer = await api(pipeline, "GET", f"/api/orders/shoplazza/{order}")
    assert answer.status == 200
    found: list[dict[str, Any]] = answer.json()["events"]
    assert [event["order_id"] for event in found] == [order]
    assert found[0]["links"] == {"shoplazza": order, "cj": f"cj-{order}"}


async def test_hostile_order_ids_are_inert(pipeline: Pipeline) -> None:
    order = await known_order(pipeline)
    before = await tables(pipeline.store)
    paths = [b"/api/orders/shoplazza/" + segment for segment in HOSTILE_IDS]
    paths += [
        b"/api/orders/shoplazza/" + order.encode() + b"%00",  # the known id, then a NUL
        b"/api/orders/shoplazza/" + order[:4].encode() + b"%25",  # a LIKE pattern of it
        b"/api/orders/%27%20OR%201=1%20--/" + order.encode(),
        b"/api/orders/shoplazza%00/" + order.encode(),
        b"/api/orders/..%2F..%2F/" + order.encode(),
        b"/api/%2e%2e/%2e%2e/healthz",
    ]
    answers = {}
    for path in paths:
        answer = await api(pipeline, "GET", path)
        answers[path[:60]] = (answer.status, answer.json()["error"])
        for auth in WRONG_TOKENS:
            refused = await api(pipeline, "GET", path, auth)
            assert (refused.status, refused.json()["error"]) == (401, "unauthorized"), (path, auth)
            assert refused.headers["www-authenticate"].startswith("Bearer")
    assert all(
        status in (400, 404) and error in ("unknown_order", "not_found", "invalid_order_id")
        for status, error in answers.values()
    ), answers
    assert await tables(pipeline.store) == before
    await assert_still_found(pipeline, order)


async def test_nul_in_an_order_id_is_a_404_not_a_503(pipeline: Pipeline) -> None:
    """PostgreSQL cannot compare text with a NUL: the query failed and read as 'store down'."""
    order = await known_order(pipeline)
    for path in (f"/api/orders/shoplazza/{order}%00", f"/api/orders/shop%00lazza/{order}"):
        answer = await api(pipeline, "GET", path)
        assert (answer.status, answer.json()["error"]) == (404, "unknown_order")
    await assert_still_found(pipeline, order)  # and the store was never marked unusable


async def test_a_token_that_is_not_utf8_is_a_401_not_a_500(pipeline: Pipeline) -> None:
    for auth in (f"Bearer {API_TOKEN}".encode() + b"\xff", b"Bearer \xff\xfe\xfd"):
        answer = await api(pipeline, "PUT", "/api/links", auth, b'{"shoplazza": "1", "cj": "2"}')
        assert (answer.status, answer.json()["error"]) == (401, "unauthorized")
    assert (await tables(pipeline.store))["links"] == []


STORED_LINKS = [
    {"shoplazza": "' OR 1=1 --", "cj": "; DROP TABLE events;"},
    {"occ": "../../etc/passwd", "prime": "..%2F..%2Fetc%2Fpasswd"},
    {"shoplazza": "Robert'); DROP TABLE links;--", "cj": '"; DELETE FROM links; --'},
    {"prime": "%00", "occ": "\\x00\\0"},  # the text of a NUL, not one
    {"shoplazza": "ünï€😀", "cj": "x\u2028y\u00a0z"},
    {"prime": "é" * 255, "occ": "😀" * 255},  # 255 characters: the limit, in characters
    {"shoplazza": "%", "cj": "_"},  # LIKE wildcards
]

REFUSED_LINKS = [
    b'{"shoplazza": "a\\u0000b", "cj": "1"}',
    b'{"shoplazza": "a\\u001fb", "cj": "1"}',
    b'{"shoplazza": "a\\u007fb", "cj": "1"}',
    b'{"shoplazza": "line\\nbreak", "cj": "1"}',
    orjson.dumps({"shoplazza": "x" * 256, "cj": "1"}),
    b'{"shoplazza": "", "cj": "1"}',
    b'{"shoplazza": "\\ud800", "cj": "1"}',
    b'{"shoplazza": "\xff\xfe", "cj": "1"}',
    b'{"shoplazza": 1, "cj": "2"}',
    b'{"shoplazza": ["1"], "cj": "2"}',
    b'{"mysql": "x", "cj": "1"}',
    b'{"\' OR 1=1 --": "x", "cj": "1"}',
    b'{"shoplazza": "only-one"}',
    b"'; DROP TABLE links; --",
    b"[" + orjson.dumps({"shoplazza": "fine", "cj": "fine"}) + b', {"cj": "\\u0000"}]',
]


async def test_hostile_link_ids_are_stored_verbatim_or_refused(pipeline: Pipeline) -> None:
    order = await known_order(pipeline)
    before = await tables(pipeline.store)
    for body in REFUSED_LINKS:
        answer = await api(pipeline, "PUT", "/api/links", body=body)
        assert (answer.status, answer.json()["error"]) == (400, "invalid_links"), body
    for link in STORED_LINKS:
        refused = await api(pipeline, "PUT", "/api/links", None, orjson.dumps(link))
        assert refused.status == 401
    assert await tables(pipeline.store) == before  # nothing refused was written

    for link in STORED_LINKS[:-1]:
        answer = await api(pipeline, "PUT", "/api/links", body=orjson.dumps(link))
        assert answer.json() == {"status": "linked", "links": 1}, link
    answer = await api(pipeline, "PUT", "/api/links", body=orjson.dumps(STORED_LINKS[-1:]))
    assert answer.json() == {"status": "linked", "links": 1}
    for link in STORED_LINKS:
        for platform, order_id in link.items():
            assert await pipeline.store.links_of(platform, order_id) == link, link

    after = await tables(pipeline.store)
    assert {name: rows for name, rows in after.items() if name != "links"} == {
        name: rows for name, rows in before.items() if name != "links"
    }
    assert len(after["links"]) == len(before["links"]) + sum(map(len, STORED_LINKS))
    assert set(before["links"]) <= set(after["links"])
    # The stored strings are only data: looking one up as an order is a plain miss.
    answer = await api(pipeline, "GET", "/api/orders/shoplazza/%27%20OR%201=1%20--")
    assert (answer.status, answer.json()["error"]) == (404, "unknown_order")
    await assert_still_found(pipeline, order)


async def test_a_signed_webhook_with_a_nul_in_its_order_id_is_quarantined(
    pipeline: Pipeline,
) -> None:
    """A platform's (signed) NUL is quarantined, not a 503 forever.

    PostgreSQL text cannot hold a NUL: before ids were refused by the event model, the store
    error read as `store_unavailable`, so the platform retried until it gave up, and every other
    webhook in the same store batch got the 503 too.
    """
    hook = shoplazza_webhook({"id": "nul\u0000id", "status": "cancelled"})
    response = await pipeline.client.post(
        "/webhooks/shoplazza", data=hook.body, headers=hook.headers
    )
    answer = orjson.loads(await response.read())
    assert response.status == 200, answer
    assert answer["status"] == "quarantined", answer
