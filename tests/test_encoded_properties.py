"""`FastProperties` writes the bytes pamqp writes, and leaves to pamqp what it does not write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp.common import FieldTable
from pamqp.header import ContentHeader

from bridge.amqp.encoded import FastProperties, Unsupported, encode_properties
from bridge.amqp.messages import event_properties
from contracts.events import CancelReason, OrderCancelled, Source

shortstr = st.text(max_size=40) | st.just("") | st.none()
table_value = (
    st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=60)
)
table = st.dictionaries(st.text(min_size=1, max_size=30), table_value, max_size=10) | st.none()
moment = st.datetimes(
    min_value=datetime(1971, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC) | st.just(timezone(timedelta(hours=-7))),
)


@st.composite
def properties(draw: st.DrawFn) -> dict[str, object]:
    """Keyword arguments for `Basic.Properties` in the shapes the bridge publishes."""
    return {
        "content_type": draw(shortstr),
        "content_encoding": draw(shortstr),
        "headers": draw(table),
        "delivery_mode": draw(st.sampled_from([None, 1, 2])),
        "priority": draw(st.none() | st.integers(0, 9)),
        "correlation_id": draw(shortstr),
        "reply_to": draw(shortstr),
        "message_id": draw(shortstr),
        "timestamp": draw(st.none() | moment),
        "message_type": draw(shortstr),
        "app_id": draw(shortstr),
    }


@given(properties())
def test_the_same_bytes_as_pamqp(kwargs: dict[str, object]) -> None:
    fast = FastProperties(**kwargs)  # type: ignore[arg-type]
    assert fast.marshal() == spec.Basic.Properties(**kwargs).marshal()  # type: ignore[arg-type]


def _travels(name: str, value: object) -> object:
    """What a subscriber reads back of a property: empty values are not sent, times in seconds."""
    if value in ("", None) or (name == "headers" and not value):
        return None
    if isinstance(value, datetime):  # pamqp reads a naive UTC time back
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(aware.timestamp())
    return value


@given(properties())
def test_subscribers_decode_what_was_built(kwargs: dict[str, object]) -> None:
    """A content header with the fast properties decodes (pamqp's reader) to the values set."""
    frame = ContentHeader(body_size=7, properties=FastProperties(**kwargs)).marshal()  # type: ignore[arg-type]
    decoded = ContentHeader()
    decoded.unmarshal(frame)
    for name, value in kwargs.items():
        got = getattr(decoded.properties, name)
        assert _travels(name, got) == _travels(name, value), name


def test_what_it_does_not_write_goes_to_pamqp() -> None:
    """A float, a nested table or an over-long key: pamqp's encoder, same answer."""
    odd: list[FieldTable] = [{"f": 1.5}, {"nested": {"a": 1}}, {"k" * 200: "v"}, {"l": [1, 2]}]
    for headers in odd:
        fast = FastProperties(headers=headers, message_id="m")
        try:
            encode_properties(fast)
        except Unsupported:
            pass
        else:
            raise AssertionError(f"{headers!r} should be left to pamqp")
        assert fast.marshal() == spec.Basic.Properties(headers=headers, message_id="m").marshal()


def test_headers_added_after_building_travel() -> None:
    """Tracing adds `traceparent` after `event_properties`: encoded at marshal time."""
    event = OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="demo.myshoplaza.com",
        order_id="1001",
        order_number=None,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=datetime(2024, 3, 1, tzinfo=UTC),
        received_at=datetime(2024, 3, 1, 0, 0, 5, tzinfo=UTC),
        delivery_id=None,
    )
    built = event_properties(event, app_id="cancel-bridge", seen=2)
    assert isinstance(built, FastProperties)
    assert built.headers is not None
    built.headers["traceparent"] = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    decoded = ContentHeader()
    decoded.unmarshal(ContentHeader(body_size=1, properties=built).marshal())
    assert decoded.properties.headers == built.headers
    assert decoded.properties.headers["x-cancel-bridge-seen"] == 2
