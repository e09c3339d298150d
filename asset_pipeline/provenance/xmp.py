"""XMP: read the packet a file carries (parsed with defusedxml, so a hostile packet cannot expand
entities or reach the network) and write one into a copy (exiv2 through pyexiv2, which edits the
metadata segment in place: the image data is not re-encoded, so a JPEG loses nothing)."""

from __future__ import annotations

from typing import Any

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
XMP = "http://ns.adobe.com/xap/1.0/"
IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
# The project's own properties: generation facts written on export and read back on ingest.
AP = "urn:asset-pipeline:generation:1.0/"
AP_PREFIX = "assetpipeline"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MAX_PACKET = 4 * 1024 * 1024


def _values(el: Any) -> str | list[str]:
    """An XMP property element's value: text, or the items of an rdf:Seq/Bag/Alt."""
    items = [li.text or "" for li in el.iter(f"{{{RDF}}}li")]
    if items:
        return items
    return (el.text or "").strip() or el.get(f"{{{RDF}}}resource", "")


def parse_xmp(packet: bytes | str) -> dict[str, str | list[str]]:
    """{"{namespace}name": value} of every simple or array property of the packet's
    rdf:Descriptions (attribute and element forms). Structures nested deeper are ignored.
    Raises ValueError for a packet that is not well-formed XML or too large."""
    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    raw = packet.encode() if isinstance(packet, str) else packet
    if len(raw) > MAX_PACKET:
        raise ValueError(f"XMP packet is larger than {MAX_PACKET // 1024 // 1024} MiB")
    raw = raw.strip(b"\x00 \r\n\t")
    try:
        root = ElementTree.fromstring(raw)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise ValueError(f"XMP packet is not well-formed XML: {exc}") from exc
    out: dict[str, str | list[str]] = {}
    for desc in root.iter(f"{{{RDF}}}Description"):
        for key, value in desc.attrib.items():
            if not key.startswith(f"{{{RDF}}}"):
                out[key] = value
        for child in desc:
            out[child.tag] = _values(child)
    return out


def first(value: str | list[str] | None) -> str | None:
    if isinstance(value, list):
        return value[0] if value else None
    return value or None


def register_namespace() -> None:
    """exiv2 must know the project's namespace before writing its properties (idempotent)."""
    import pyexiv2

    try:
        pyexiv2.registerNs(AP, AP_PREFIX)
    except Exception as exc:  # exiv2 refuses a prefix it already has
        if "already" not in str(exc).lower() and "exist" not in str(exc).lower():
            raise


def write_xmp(data: bytes, properties: dict[str, Any]) -> bytes:
    """`data` (a PNG, JPEG or WebP, or an XMP packet) with `properties` (exiv2 keys such as
    ``Xmp.iptcExt.DigitalSourceType``) set; every other byte of metadata and image data is kept."""
    import pyexiv2

    register_namespace()
    with pyexiv2.ImageData(data) as img:
        img.modify_xmp(properties)
        return img.get_bytes()


EMPTY_PACKET = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
                b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="' + RDF.encode() +
                b'"></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>')
