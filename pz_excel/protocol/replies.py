"""What the connector writes: ``<Event/>`` and ``<Response>`` XML, byte for byte as the
vendor's TestServer 1.1.2 does (the test connector and ``Event.to_xml`` use it)."""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr


def encode_event(event_type: int, call_id: str, attrs: Mapping[str, object] | None = None) -> str:
    """An ``<Event/>`` the way TestServer 1.1.2 writes it: type, callID, then sorted names."""
    parts = [f"type={quoteattr(str(int(event_type)))}", f"callID={quoteattr(str(call_id))}"]
    for name in sorted(attrs or {}):
        value = (attrs or {})[name]
        if value is None or name in ("type", "callID"):
            continue
        parts.append(f"{name}={quoteattr(str(value))}")
    return "<Event " + " ".join(parts) + "/>"


def encode_response(
    code: int, request_id: int | str, details: str = "", data_xml: str | None = None
) -> str:
    """A ``<Response>``; the vendor ends it with a newline. ``data_xml`` is inner XML."""
    data = f"<Data>{data_xml}</Data>" if data_xml else "<Data/>"
    return (
        f"<Response><Code>{int(code)}</Code><RequestID>{escape(str(request_id))}</RequestID>"
        f"<Details>{escape(details)}</Details>{data}</Response>\n"
    )


def client_element(
    index: int, ip: str, client_type: str, guid: str, connected: bool, phone: str
) -> str:
    """One ``<Client/>`` of a GetClients answer (attribute order as the vendor's)."""
    return (
        f"<Client id={quoteattr(str(index))} ip={quoteattr(ip)} type={quoteattr(client_type)} "
        f"GUID={quoteattr(guid)} Connected={quoteattr('1' if connected else '0')} "
        f"PhoneNumber={quoteattr(phone)}/>"
    )


def version_element(version: str) -> str:
    return f"<Version>{escape(version)}</Version>"
