"""CJ's Commission Detail query by plain calls: request, answers, declines, durations, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from multidict import CIMultiDict
from pydantic import SecretStr, ValidationError

from contracts.cj import CommissionRecord
from contracts.events import CancelReason, OrderCancelled, Source
from handlers import cj
from handlers.base import Rejected, RetryLater, format_duration, parse_duration, retryable

NOW = datetime(2025, 4, 9, 15, 0, tzinfo=UTC)
SINCE = datetime(2025, 4, 8, 14, 50, 12, 345678, tzinfo=UTC)
BEFORE = datetime(2025, 4, 9, 15, 10, tzinfo=UTC)
TOKEN = SecretStr("cj-personal-access-token-9x")
CFG = cj.CJCommissions("https://commissions.api.cj.com/query", ("4567890", "4567891"))


def variables(after: str | None = None) -> dict[str, object]:
    call = cj.commissions_call(CFG, TOKEN, SINCE, BEFORE, after)
    document = orjson.loads(call.body)
    assert "advertiserCommissions(forAdvertisers: $advertisers" in document["query"]
    assert "4567890" not in document["query"]  # values travel as variables only
    found: dict[str, object] = document["variables"]
    return found


def test_the_query_is_a_post_with_the_bearer_token() -> None:
    call = cj.commissions_call(CFG, TOKEN, SINCE, BEFORE)
    assert (call.method, call.url) == ("POST", "https://commissions.api.cj.com/query")
    assert call.headers["Authorization"] == "Bearer cj-personal-access-token-9x"
    assert call.headers["Content-Type"] == "application/json"
    assert TOKEN.get_secret_value() not in call.url + call.body.decode()


def test_the_first_page_names_advertisers_and_the_posting_window() -> None:
    assert variables() == {
        "advertisers": ["4567890", "4567891"],
        "since": "2025-04-08T14:50:12Z",
        "before": "2025-04-09T15:10:00Z",
    }


def test_later_pages_continue_from_the_commission_id() -> None:
    assert variables("7000123")["after"] == "7000123"


def record(**fields: object) -> dict[str, object]:
    return {
        "commissionId": "7000001",
        "orderId": "1001",
        "advertiserId": "4567890",
        "actionStatus": "new",
        "actionType": "sim_sale",
        "correctionReason": None,
        "original": True,
        "originalActionId": "a-1",
        "validationStatus": None,
        "postingDate": "2025-04-09T14:00:00Z",
        **fields,
    }


def result(*records: dict[str, object], complete: bool = True, last: str | None = None) -> bytes:
    page = {
        "count": len(records),
        "limit": 2,
        "maxCommissionId": last,
        "payloadComplete": complete,
        "records": list(records),
    }
    return orjson.dumps({"data": {"advertiserCommissions": page}})


def read(status: int, body: bytes, headers: dict[str, str] | None = None) -> object:
    return cj.read_commissions(status, CIMultiDict(headers or {}), body, NOW)


def test_a_complete_page_is_the_last() -> None:
    page = read(200, result(record(), record(commissionId="7000002"), last="7000002"))
    assert isinstance(page, cj.CommissionsPage)
    assert [r.commissionId for r in page.records] == ["7000001", "7000002"]
    assert page.after is None


def test_an_incomplete_page_continues_from_max_commission_id() -> None:
    page = read(200, result(record(), complete=False, last="7000001"))
    assert isinstance(page, cj.CommissionsPage)
    assert page.after == "7000001"


def test_an_incomplete_page_without_a_cursor_cannot_go_on() -> None:
    outcome = read(200, result(record(), complete=False, last=None))
    assert isinstance(outcome, Rejected)
    assert "maxCommissionId" in outcome.reason


def test_no_records_is_an_empty_last_page() -> None:
    assert read(200, result()) == cj.CommissionsPage(())


@pytest.mark.parametrize("status", [200, 400])
def test_graphql_errors_are_final_even_with_http_200(status: int) -> None:
    body = orjson.dumps(
        {"data": None, "errors": [{"message": "Not authorized for advertiser 4567891"}]}
    )
    outcome = read(status, body)
    assert outcome == Rejected("cj commission query: Not authorized for advertiser 4567891")


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_refused_are_final(status: int) -> None:
    outcome = read(status, b'{"message":"Unauthorized"}')
    assert outcome == Rejected(f"cj commission query: credentials refused (HTTP {status})")


@pytest.mark.parametrize(
    ("status", "headers", "after"),
    [
        (429, {"Retry-After": "17"}, 17.0),
        (429, {}, None),
        (500, {}, None),
        (503, {"Retry-After": "Wed, 09 Apr 2025 15:02:00 GMT"}, 120.0),
    ],
)
def test_rate_limits_and_server_errors_retry(
    status: int, headers: dict[str, str], after: float | None
) -> None:
    outcome = read(status, b"<html>busy</html>", headers)
    assert isinstance(outcome, RetryLater)
    assert outcome.after == after


@pytest.mark.parametrize(
    "body", [b"<html>maintenance</html>", b"", b'{"data": null}', b'{"data": {}}']
)
def test_unreadable_200_retries(body: bytes) -> None:
    assert isinstance(read(200, body), RetryLater)


def test_other_client_errors_are_final() -> None:
    assert read(404, b"not found") == Rejected("cj commission query answered HTTP 404")


def test_token_never_appears_in_outcomes() -> None:
    for status, body in ((401, b""), (200, b'{"errors":[{"message":"x"}]}'), (500, b"")):
        assert TOKEN.get_secret_value() not in repr(read(status, body))


def typed(**fields: object) -> CommissionRecord:
    return CommissionRecord.model_validate(record(**fields))


@pytest.mark.parametrize(
    ("fields", "declines"),
    [
        ({}, False),  # the original sale
        ({"original": True, "validationStatus": "DECLINED"}, False),  # still the original
        ({"original": False, "validationStatus": "DECLINED"}, True),  # the decline
        ({"original": False, "validationStatus": "declined"}, True),
        (
            {"original": False, "correctionReason": "OTHER_REASON", "validationStatus": "DECLINED"},
            True,
        ),
        ({"original": False, "validationStatus": "ACCEPTED"}, False),  # a restatement
        ({"original": False, "validationStatus": "AUTOMATED"}, False),  # no amounts: no proof
        ({"original": None, "validationStatus": "DECLINED"}, False),  # unknown: not proof
    ],
)
def test_what_counts_as_a_decline(fields: dict[str, object], declines: bool) -> None:  # noqa: FBT001 - a table column
    assert cj.is_decline(typed(**fields)) is declines


@pytest.mark.parametrize(
    "fields",
    [
        {"correctionReason": "CANT_SHIP_OR_SOLD_OUT"},  # a reversal
        {"correctionReason": "RETURNED_MERCHANDISE", "validationStatus": "ACCEPTED"},  # restated
        {"correctionReason": "OTHER_REASON", "validationStatus": "PENDING"},
    ],
)
def test_a_correction_reason_without_a_declined_status_is_no_decline(
    fields: dict[str, object],
) -> None:
    """Without DECLINED or zeroed amounts, a reason proves nothing: any correction has one."""
    assert cj.is_decline(typed(original=False, **fields)) is False


def test_declined_orders_are_the_orders_with_a_decline() -> None:
    records = [
        typed(orderId="sold"),
        typed(orderId="cancelled"),
        typed(orderId="cancelled", original=False, correctionReason="OTHER_REASON"),
        typed(orderId="cancelled", original=False, validationStatus="DECLINED"),
        typed(orderId="restated", original=False, correctionReason="OTHER_REASON"),
        typed(orderId=None, original=False, validationStatus="DECLINED"),
    ]
    assert cj.declined_orders(records) == {"cancelled"}


def amounts(sale: str, commission: str, fee: str | None = None) -> dict[str, object]:
    """A record's published amounts (DecimalNumber strings); the total is commission + fee."""
    fields: dict[str, object] = {
        "saleAmountAdvCurrency": sale,
        "pubCommissionAmountPubCurrency": commission,
    }
    if fee is not None:
        fields["cjFeeAdvCurrency"] = fee
        fields["advCommissionAmountAdvCurrency"] = str(Decimal(commission) + Decimal(fee))
    return fields


SALE = amounts("100.00", "10.00", "3.00")
REVERSAL = amounts("-100.00", "-10.00", "-3.00")
ZEROED = amounts("0.00", "0.00", "0.00")
RESTATED = amounts("60.00", "6.00", "1.80")
REASON = {"correctionReason": "RETURNED_MERCHANDISE"}


@pytest.mark.parametrize(
    ("fields", "declines"),
    [
        pytest.param({**SALE, "validationStatus": "AUTOMATED"}, False, id="original-sale"),
        pytest.param({**ZEROED, "validationStatus": "AUTOMATED"}, False, id="original-zero-sale"),
        pytest.param({**SALE, "validationStatus": "PENDING"}, False, id="original-oel-sale"),
        pytest.param(
            {**REVERSAL, **REASON, "original": False, "validationStatus": "AUTOMATED"},
            False,
            id="reversal",
        ),
        pytest.param({**REVERSAL, **REASON, "original": False}, False, id="oel-reversal"),
        pytest.param(
            {**ZEROED, **REASON, "original": False, "validationStatus": "DECLINED"},
            True,
            id="oel-decline",
        ),
        pytest.param(
            {**REASON, "original": False, "validationStatus": "DECLINED"},
            True,
            id="oel-decline-without-amounts",
        ),
        pytest.param(
            {**ZEROED, **REASON, "original": False, "validationStatus": "AUTOMATED"},
            True,
            id="non-oel-cancellation",
        ),
        pytest.param(
            {**amounts("0", "0"), "original": False, "validationStatus": "AUTOMATED"},
            True,
            id="non-oel-cancellation-plain-zeros-no-fee",
        ),
        pytest.param(
            {**amounts("-0.00", "0.000", "0"), "original": False}, True, id="zeros-any-spelling"
        ),
        pytest.param(
            {**RESTATED, **REASON, "original": False, "validationStatus": "AUTOMATED"},
            False,
            id="restated-state",
        ),
        pytest.param(
            {**RESTATED, **REASON, "original": False, "validationStatus": "ACCEPTED"},
            False,
            id="oel-restated-state",
        ),
        pytest.param(
            {**REASON, "original": False, "validationStatus": "AUTOMATED"},
            False,
            id="missing-amounts",
        ),
        pytest.param(
            {"saleAmountAdvCurrency": "0.00", "original": False, "validationStatus": "AUTOMATED"},
            False,
            id="missing-commission",
        ),
        pytest.param(
            {"pubCommissionAmountPubCurrency": "0.00", "original": False},
            False,
            id="missing-sale-amount",
        ),
        pytest.param({**amounts("0.00", "0.00", "3.00"), "original": False}, False, id="fee-left"),
        pytest.param(
            {
                **amounts("0.00", "0.00"),
                "advCommissionAmountAdvCurrency": "3.00",
                "original": False,
            },
            False,
            id="advertiser-commission-left",
        ),
        pytest.param({**amounts("n/a", "0.00"), "original": False}, False, id="unreadable-amount"),
        pytest.param(
            {**ZEROED, "original": None, "validationStatus": "AUTOMATED"},
            False,
            id="original-unknown",
        ),
    ],
)
def test_the_decline_rule(fields: dict[str, object], declines: bool) -> None:  # noqa: FBT001 - a table column
    """Non-original, and DECLINED or zero sale amount and commission: the cancellation record."""
    assert cj.is_decline(typed(**fields)) is declines


def test_amounts_are_read_as_decimals_and_odd_ones_as_absent() -> None:
    page = read(
        200,
        result(
            record(**REVERSAL),
            record(commissionId="7000002", saleAmountAdvCurrency="n/a", cjFeeAdvCurrency=1.5),
        ),
    )
    assert isinstance(page, cj.CommissionsPage)
    reversal, odd = page.records
    assert (reversal.saleAmountAdvCurrency, reversal.advCommissionAmountAdvCurrency) == (
        Decimal("-100.00"),
        Decimal("-13.00"),
    )
    assert (odd.saleAmountAdvCurrency, odd.cjFeeAdvCurrency) == (None, Decimal("1.5"))


def test_the_query_selects_the_amounts() -> None:
    for name in (
        "saleAmountAdvCurrency",
        "advCommissionAmountAdvCurrency",
        "pubCommissionAmountPubCurrency",
        "cjFeeAdvCurrency",
    ):
        assert f" {name}" in cj.COMMISSIONS_QUERY


def test_declined_orders_of_both_kinds_of_tracker_and_not_restated_ones() -> None:
    """Sale, reversal and cancellation per cancelled order; a restatement's pair is no decline."""

    def correction(order: str, **fields: object) -> CommissionRecord:
        return typed(orderId=order, original=False, **REASON, **fields)

    records = [
        *(typed(orderId=order, **SALE) for order in ("oel", "plain", "restated", "lost")),
        correction("oel", **REVERSAL),
        correction("oel", **ZEROED, validationStatus="DECLINED"),
        correction("plain", **REVERSAL, validationStatus="AUTOMATED"),
        correction("plain", **ZEROED, validationStatus="AUTOMATED"),
        correction("restated", **REVERSAL, validationStatus="AUTOMATED"),
        correction("restated", **RESTATED, validationStatus="AUTOMATED"),
    ]
    assert cj.declined_orders(records) == {"oel", "plain"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("30s", timedelta(seconds=30)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(minutes=90)),
        (" 24H ", timedelta(hours=24)),
        ("0s", timedelta(0)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "24", "h", "24x", "-1h", "1.5h", "PT1H", "h24", "24h!", "9999999d", "1 day"]
)
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer than"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(days=1), "1d"),
        (timedelta(minutes=90), "90m"),
        (timedelta(weeks=2), "2w"),
        (timedelta(seconds=45), "45s"),
        (timedelta(0), "0s"),
    ],
)
def test_durations_read_back(span: timedelta, text: str) -> None:
    assert format_duration(span) == text
    assert parse_duration(text) == span


SECTION = {
    "enterprise_id": "1234567",
    "action_tracker_id": 987654,
    "open_ended_locking": True,
    "order_id_from": "order_id",
}


def test_reconciliation_is_off_by_default() -> None:
    settings = cj.CJTargetSettings.model_validate(SECTION)
    assert settings.reconcile_every is None
    assert settings.commissions_url == "https://commissions.api.cj.com/query"
    assert (settings.reconcile_window, settings.reconcile_grace) == (
        timedelta(hours=24),
        timedelta(hours=2),
    )
    assert not settings.reconcile_requeue
    assert "reconcile: on demand" in cj.make_target(settings, {"token_env": TOKEN}).summary


def test_reconciliation_settings_take_durations_as_text_or_seconds() -> None:
    settings = cj.CJTargetSettings.model_validate(
        {
            **SECTION,
            "advertiser_ids": ["4567890"],
            "reconcile_every": "1h",
            "reconcile_window": 3600 * 48,
            "reconcile_grace": "90m",
            "reconcile_requeue": True,
        }
    )
    assert settings.reconcile_every == timedelta(hours=1)
    assert settings.reconcile_window == timedelta(days=2)
    summary = cj.make_target(settings, {"token_env": TOKEN}).summary
    assert "reconcile every 1h over 2d (grace 90m)" in summary
    assert "requeue: yes" in summary
    assert TOKEN.get_secret_value() not in summary


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"reconcile_every": "1h"}, "needs advertiser_ids"),
        ({"reconcile_every": "30s", "advertiser_ids": ["1"]}, "at least 1m"),
        ({"reconcile_window": "32d"}, "at most 31d"),
        ({"reconcile_window": "0s"}, "more than 0"),
        ({"reconcile_grace": "24h"}, "shorter than reconcile_window"),
        ({"reconcile_every": "soon", "advertiser_ids": ["1"]}, "not a duration"),
        # 24h window, 2h grace: a run a day would let a delivery in its grace age out unchecked
        ({"reconcile_every": "24h", "advertiser_ids": ["1"]}, "at most reconcile_window minus"),
        ({"reconcile_every": "7d", "advertiser_ids": ["1"]}, "at most reconcile_window minus"),
        ({"advertiser_ids": ["CID-1"]}, "pattern"),
    ],
)
def test_bad_reconciliation_settings_are_refused(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        cj.CJTargetSettings.model_validate({**SECTION, **changes})


def event(order_number: str | None = "1001") -> OrderCancelled:
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="demo.myshoplaza.com",
        order_id="633130-00000004",
        order_number=order_number,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=NOW,
        received_at=NOW,
        delivery_id=None,
    )


@pytest.mark.parametrize(
    ("order_id_from", "linked", "order_number", "expected"),
    [
        ("order_id", None, "1001", "633130-00000004"),
        ("order_number", None, "1001", "1001"),
        ("order_number", None, None, None),
        ("link", "cj-77", "1001", "cj-77"),
        ("link", None, "1001", None),
    ],
)
def test_the_order_id_cj_knows(
    order_id_from: str, linked: str | None, order_number: str | None, expected: str | None
) -> None:
    cfg = cj.CJCancelConfig("u", "1234567", 1, open_ended_locking=True, order_id_from=order_id_from)  # type: ignore[arg-type]
    assert cj.order_id_for(event(order_number), cfg, linked) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "500ms"), (2.5, "2500ms"), (0.2, "200ms"), (10, "10s"), (3600.0, "1h"), (604800, "1w")],
)
def test_seconds_are_written_in_the_same_spelling(seconds: float, text: str) -> None:
    """Settings keep timeouts as seconds; the spelling they are written in reads back."""
    assert format_duration(seconds) == text
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, False),
        (400, False),
        (401, False),
        (404, False),
        (406, False),
        (408, True),
        (425, True),
        (429, True),
        (499, False),
        (500, True),
        (501, True),
        (503, True),
        (599, True),
    ],
)
def test_retryable_statuses(status: int, expected: bool) -> None:  # noqa: FBT001 - a table
    """408, 425, 429 and any 5xx may go otherwise later: every platform reads them alike."""
    assert retryable(status) is expected
