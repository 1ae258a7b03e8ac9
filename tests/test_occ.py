"""Oracle Commerce Cloud Cancel Order webhooks: signatures and parsing, by plain calls."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import SecretStr

from contracts.events import CancelReason, OrderCancelled, Source, event_id_for
from handlers.base import MalformedPayloadError, SignatureError, UnknownShopError
from handlers.occ import OCCSource, OCCSourceSettings, make_source


def configured_source(**options: str | None) -> OCCSource:
    """The source `[sources.occ]` with these keys makes (None: the key left out)."""
    section = {"secret_env": "OCC_SECRET", **{k: v for k, v in options.items() if v is not None}}
    return make_source(OCCSourceSettings.model_validate(section), {})


# The webhook secret as OCC shows it (base64) and the key it stands for.
KEY = b"occ-webhook-secret-key-0001"
SECRET = "b2NjLXdlYmhvb2stc2VjcmV0LWtleS0wMDAx"  # base64 of KEY
PREVIOUS = base64.b64encode(b"the-previous-occ-secret").decode()
BODY = b'{"order":{"id":"o30413"}}'
# Computed with openssl: the body above piped to `openssl dgst -sha512 -mac HMAC -macopt
# key:occ-webhook-secret-key-0001 -binary`, then base64.
OPENSSL_SHA512 = (
    "uZ0UaDOnoATTLLgrTZdPN4nhR/vEuaInO31GAY0UyjaxLY9wBcLQ3tMZD0kJ1zvApcHI+NECLKQP8o+QrOAfgg=="
)
NOW = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)
SECRETS = (SecretStr(SECRET), SecretStr(PREVIOUS))


def mac(body: bytes, key: bytes, digest: str = "sha512") -> str:
    """An independent HMAC (not the handler's code)."""
    return base64.b64encode(hmac.new(key, body, getattr(hashlib, digest)).digest()).decode()


def headers(signature: str, name: str = "X-Oracle-CC-WebHook-Signature") -> dict[str, str]:
    return {name: signature, "Content-Type": "application/json", "x-ccsite": "siteUS"}


def test_known_answer_from_openssl() -> None:
    assert mac(BODY, KEY) == OPENSSL_SHA512
    OCCSource().verify(headers(OPENSSL_SHA512), BODY, SECRETS, NOW)


def test_the_sha512_header_variant_is_accepted() -> None:
    OCCSource().verify(
        headers(OPENSSL_SHA512, "X-Oracle-CC-WebHook-Signature-SHA512"), BODY, SECRETS, NOW
    )


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("configured", [None, "sha1", "sha256", "sha512"])
def test_the_plain_header_verifies_with_the_algorithm_its_length_shows(
    digest: str, configured: str | None
) -> None:
    """`algorithm` no longer decides: a tenant's SHA-1, SHA-256 or SHA-512 all verify."""
    handler = configured_source(algorithm=configured)
    handler.verify(headers(mac(BODY, KEY, digest)), BODY, SECRETS, NOW)


PLAIN = "X-Oracle-CC-WebHook-Signature"
SHA512_HEADER = "X-Oracle-CC-WebHook-Signature-SHA512"
JUNK = base64.b64encode(b"j" * 64).decode()  # a SHA-512-sized value no secret makes


def both(plain: str, sha512: str) -> dict[str, str]:
    return {PLAIN: plain, SHA512_HEADER: sha512, "x-ccsite": "siteUS"}


def test_a_sha1_plain_header_beside_a_valid_sha512_header_is_accepted() -> None:
    """Oracle's older code signs the plain header with SHA-1, its newer the -SHA512 one."""
    OCCSource().verify(both(mac(BODY, KEY, "sha1"), OPENSSL_SHA512), BODY, SECRETS, NOW)


def test_a_wrong_plain_header_beside_a_valid_sha512_header_is_accepted() -> None:
    """The plain header is checked first and fails; the -SHA512 header still counts."""
    OCCSource().verify(both(mac(BODY, b"wrong-key", "sha1"), OPENSSL_SHA512), BODY, SECRETS, NOW)


def test_a_valid_sha256_plain_header_beside_a_junk_sha512_header_is_accepted() -> None:
    """The plain header's digest length (32 bytes) says SHA-256, whatever is configured."""
    OCCSource().verify(both(mac(BODY, KEY, "sha256"), JUNK), BODY, SECRETS, NOW)


@pytest.mark.parametrize(
    "plain",
    [
        mac(BODY, KEY, "sha384"),  # 48 bytes: no algorithm of OCC's
        base64.b64encode(hashlib.md5(BODY).digest()).decode(),  # noqa: S324 - 16 bytes, a length only
        "not base64 !",
        OPENSSL_SHA512.rstrip("="),  # undecodable: padding stripped
    ],
    ids=["sha384-length", "md5-length", "not-base64", "bad-padding"],
)
def test_an_unreadable_plain_header_still_lets_the_sha512_header_verify(plain: str) -> None:
    OCCSource().verify(both(plain, OPENSSL_SHA512), BODY, SECRETS, NOW)
    with pytest.raises(SignatureError):
        OCCSource().verify(headers(plain), BODY, SECRETS, NOW)


@pytest.mark.parametrize(
    ("plain", "sha512"),
    [
        (mac(BODY, b"wrong-key", "sha1"), mac(BODY, b"wrong-key")),
        (mac(BODY, KEY, "sha256")[:-4] + "AAA=", JUNK),
    ],
    ids=["both-wrong-key", "both-corrupt"],
)
def test_both_headers_wrong_is_refused_without_naming_the_secret(plain: str, sha512: str) -> None:
    with pytest.raises(SignatureError) as caught:
        OCCSource().verify(both(plain, sha512), BODY, SECRETS, NOW)
    for secret in (SECRET, PREVIOUS, KEY.decode(), "the-previous-occ-secret"):
        assert secret not in str(caught.value)


def test_a_sha512_digest_in_the_sha512_header_is_never_read_as_another_algorithm() -> None:
    """The -SHA512 header is SHA-512 only: a valid SHA-256 MAC there is refused."""
    with pytest.raises(SignatureError):
        OCCSource().verify(headers(mac(BODY, KEY, "sha256"), SHA512_HEADER), BODY, SECRETS, NOW)


@pytest.mark.parametrize("configured", ["sha1", "sha256", "sha512"])
def test_only_the_sha512_header_verifies_whatever_algorithm_is_configured(
    configured: str,
) -> None:
    handler = configured_source(algorithm=configured)
    handler.verify(headers(OPENSSL_SHA512, SHA512_HEADER), BODY, SECRETS, NOW)


@pytest.mark.parametrize(
    ("plain", "sha512"),
    [
        (mac(BODY, b"the-previous-occ-secret", "sha1"), JUNK),
        (JUNK, mac(BODY, b"the-previous-occ-secret")),
        (mac(BODY, b"the-previous-occ-secret", "sha256"), mac(BODY, b"wrong-key")),
    ],
    ids=["previous-sha1-plain", "previous-sha512-header", "previous-sha256-plain"],
)
def test_key_rotation_either_secret_in_either_header(plain: str, sha512: str) -> None:
    """While a secret rotates, each header may verify with the previous secret."""
    OCCSource().verify(both(plain, sha512), BODY, SECRETS, NOW)
    with pytest.raises(SignatureError):
        OCCSource().verify(both(plain, sha512), BODY, (SecretStr(SECRET),), NOW)


def test_raw_key_encoding_uses_the_secret_bytes() -> None:
    raw_signature = mac(BODY, SECRET.encode())
    configured_source(key_encoding="raw").verify(headers(raw_signature), BODY, SECRETS, NOW)
    with pytest.raises(SignatureError):
        OCCSource().verify(headers(raw_signature), BODY, SECRETS, NOW)


def test_a_secret_that_is_not_base64_is_its_own_key() -> None:
    secret = "not base64 at all!"
    OCCSource().verify(headers(mac(BODY, secret.encode())), BODY, (SecretStr(secret),), NOW)


def test_the_previous_secret_is_accepted() -> None:
    OCCSource().verify(headers(mac(BODY, b"the-previous-occ-secret")), BODY, SECRETS, NOW)


@pytest.mark.parametrize(
    "signature",
    [
        mac(BODY, b"wrong-key"),
        mac(BODY + b" ", KEY),
        OPENSSL_SHA512[:40],
        hmac.new(KEY, BODY, hashlib.sha512).hexdigest(),
        "",
        "\u00e9\u00e9\u00e9",
    ],
    ids=["wrong-key", "other-body", "truncated", "hex", "empty", "non-ascii"],
)
def test_bad_signatures_are_refused_without_naming_the_secret(signature: str) -> None:
    with pytest.raises(SignatureError) as caught:
        OCCSource().verify(headers(signature), BODY, SECRETS, NOW)
    assert SECRET not in str(caught.value)
    assert KEY.decode() not in str(caught.value)


def test_missing_signature_header() -> None:
    with pytest.raises(SignatureError, match="missing X-Oracle-CC-WebHook-Signature"):
        OCCSource().verify({"x-ccsite": "siteUS"}, BODY, SECRETS, NOW)


def parse(document: object, site_header: str | None = "siteUS") -> OrderCancelled:
    hdrs = {"x-ccsite": site_header} if site_header else {}
    result = OCCSource().parse(hdrs, orjson.dumps(document), NOW)
    assert isinstance(result, OrderCancelled)
    return result


def test_a_cancel_order_webhook_becomes_the_event() -> None:
    event = parse(
        {
            "site": {"id": "siteBody"},
            "order": {
                "id": "o30413",
                "siteId": "siteOrder",
                "state": "REMOVED",
                "cancelReason": "paymentNotReceived",
                "lastModifiedDate": "2025-04-09T10:15:00.000Z",
            },
        }
    )
    assert event.source == Source.OCC
    assert event.shop == "siteUS"  # the header wins
    assert event.order_id == "o30413"
    assert event.reason == CancelReason.PAYMENT_DECLINED
    assert event.source_reason == "paymentNotReceived"
    assert event.cancelled_at == datetime(2025, 4, 9, 10, 15, tzinfo=UTC)
    assert event.delivery_id is None
    assert event.event_id == event_id_for(Source.OCC, "siteUS", "o30413")


@pytest.mark.parametrize(
    ("document", "site"),
    [
        ({"site": "siteA", "order": {"id": "1"}}, "siteA"),
        ({"site": {"id": "siteB"}, "order": {"id": "1"}}, "siteB"),
        ({"order": {"id": "1", "siteId": "siteC"}}, "siteC"),
    ],
)
def test_the_site_comes_from_the_body_without_the_header(document: object, site: str) -> None:
    assert parse(document, site_header=None).shop == site


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("changeOfMind", CancelReason.CUSTOMER_REQUEST),
        ("noLongerNeeded", CancelReason.CUSTOMER_REQUEST),
        ("cannotProcessOrder", CancelReason.OTHER),
        ("someTenantReason", CancelReason.OTHER),
        (None, CancelReason.OTHER),
    ],
)
def test_reasons(reason: str | None, expected: CancelReason) -> None:
    assert parse({"order": {"id": "1", "cancelReason": reason}}).reason == expected


def test_numeric_ids_and_a_missing_time() -> None:
    event = parse({"order": {"id": 30413}})
    assert event.order_id == "30413"
    assert event.cancelled_at == NOW


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON"),
        (b"[]", "Input should be"),
        (b'{"site": "s"}', "order: Field required"),
        (b'{"order": {"id": ""}}', "order.id"),
        (b'{"order": {"id": true}}', "order.id"),
        (b'{"order": {"id": "' + b"x" * 300 + b'"}}', "order_id"),
    ],
)
def test_unreadable_bodies_are_quarantined(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedPayloadError) as caught:
        OCCSource().parse({"x-ccsite": "siteUS"}, body, NOW)
    assert reason in caught.value.reason


def test_no_site_anywhere_is_quarantined() -> None:
    with pytest.raises(MalformedPayloadError, match="no site"):
        OCCSource().parse({}, b'{"order": {"id": "1"}}', NOW)


@pytest.mark.parametrize(
    ("headers", "document"),
    [
        ({"x-ccsite": "siteForged"}, {"order": {"id": "1", "siteId": "siteUS"}}),
        ({}, {"site": "siteOther", "order": {"id": "1"}}),
        ({}, {"order": {"id": "1", "siteId": "siteOther"}}),
    ],
)
def test_a_site_outside_the_allowlist_is_refused(headers: dict[str, str], document: object) -> None:
    """`x-ccsite` is not signed: with `sites` set, another site is no order of ours."""
    source = OCCSource(sites=frozenset({"siteUS", "siteCA"}))
    with pytest.raises(UnknownShopError, match=r"is not in \[sources\.occ\] sites") as refused:
        source.parse(headers, orjson.dumps(document), NOW)
    assert refused.value.status == 401
    allowed = source.parse({"x-ccsite": "siteCA"}, orjson.dumps(document), NOW)
    assert isinstance(allowed, OrderCancelled)
    assert allowed.shop == "siteCA"
