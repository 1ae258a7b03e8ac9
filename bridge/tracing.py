"""Optional OpenTelemetry tracing from webhook to target call; off by default (`[tracing]`).

When on, the receiver opens a server span per webhook with a producer span for its publish, and
puts the W3C `traceparent` (and `tracestate`) into the message's headers; the worker continues
that trace with a consumer span per message and a client span per target call. When off (the
default) nothing is imported, no header is added, and each hook costs one `None` check.

Needs the `tracing` extra (`pip install 'cancel-bridge[tracing]'`): the OpenTelemetry SDK and
its OTLP/HTTP exporter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from bridge.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

TRACE_HEADERS = ("traceparent", "tracestate")


class TracingUnavailable(Exception):  # noqa: N818 - a state, like StoreUnavailable
    """Tracing is configured on but the OpenTelemetry SDK is not installed."""


class Tracing:
    """The process's tracer, or nothing (`Tracing()`): every method is then a no-op."""

    def __init__(
        self, tracer: Tracer | None = None, provider: TracerProvider | None = None
    ) -> None:
        self._tracer = tracer
        self._provider = provider
        self._propagator: Any = None
        if tracer is not None:
            from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415 - optional
                TraceContextTextMapPropagator,
            )

            self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def configure(cls, settings: TracingSettings) -> Tracing:
        """The tracing `settings` ask for: off, or a provider exporting in batches."""
        if not settings.enabled:
            return cls()
        try:
            from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - optional
            from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
            from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
                BatchSpanProcessor,
                ConsoleSpanExporter,
                SpanExporter,
            )
            from opentelemetry.sdk.trace.sampling import (  # noqa: PLC0415
                ParentBased,
                TraceIdRatioBased,
            )
        except ImportError:
            raise TracingUnavailable(
                "[tracing] enabled needs the OpenTelemetry SDK:"
                " pip install 'cancel-bridge[tracing]'"
            ) from None
        exporter: SpanExporter
        if settings.exporter == "console":
            exporter = ConsoleSpanExporter()
        else:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                    OTLPSpanExporter,
                )
            except ImportError:
                raise TracingUnavailable(
                    "[tracing] exporter = otlp needs opentelemetry-exporter-otlp-proto-http:"
                    " pip install 'cancel-bridge[tracing]'"
                ) from None
            exporter = OTLPSpanExporter(endpoint=settings.endpoint)
        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider.get_tracer("cancel-bridge"), provider)

    @property
    def on(self) -> bool:
        """Whether spans are made."""
        return self._tracer is not None

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        kind: str,
        attributes: Mapping[str, str | int] | None = None,
        parent: Mapping[str, object] | None = None,
    ) -> Iterator[Span | None]:
        """A span named `name` of `kind` (server, producer, consumer, client), made current.

        `parent` is a message's headers: their `traceparent` continues the publisher's trace.
        """
        if self._tracer is None:
            yield None
            return
        from opentelemetry.trace import SpanKind  # noqa: PLC0415 - optional

        context = self._extract(parent) if parent is not None else None
        kinds: dict[str, SpanKind] = {
            "server": SpanKind.SERVER,
            "producer": SpanKind.PRODUCER,
            "consumer": SpanKind.CONSUMER,
            "client": SpanKind.CLIENT,
        }
        with self._tracer.start_as_current_span(
            name, context=context, kind=kinds[kind], attributes=dict(attributes or {})
        ) as span:
            yield span

    def inject(self, headers: MutableMapping[str, Any]) -> None:
        """Put the current span's `traceparent` (and `tracestate`) into `headers`."""
        if self._propagator is not None:
            self._propagator.inject(headers)

    def _extract(self, headers: Mapping[str, object]) -> Context:
        carrier = {k: v for k in TRACE_HEADERS if isinstance(v := headers.get(k), str)}
        context: Context = self._propagator.extract(carrier)
        return context

    def shutdown(self) -> None:
        """Export what is left and stop (blocking: the exporter's own timeout bounds it)."""
        if self._provider is not None:
            self._provider.shutdown()


def failed(span: Span | None, description: str) -> None:
    """Mark `span` as failed with `description` (no-op without a span)."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415 - optional

    span.set_status(Status(StatusCode.ERROR, description))


__all__ = ["TRACE_HEADERS", "Tracing", "TracingUnavailable", "failed"]
