"""VOTable export, streamed: this module writes the header (FIELDs with unit, UCD and
description from the column registry, provenance as INFO elements) and the footer; PostgreSQL
renders each TABLEDATA row as text in COPY ... TO STDOUT, so rows stream in constant memory
at COPY speed. Strings are XML-escaped in SQL (and backslashes, tabs and newlines written as
character references, so COPY's text format never escapes them)."""

from __future__ import annotations

from collections.abc import Iterator
from xml.sax.saxutils import escape, quoteattr

from catalog.columns import Column
from catalog.exports.common import copy_out, count_rows, provenance_items, select_sql

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
DATATYPES = {"float": "double", "int": "long", "bool": "boolean", "flag": "boolean", "str": "char"}
# (SQL of the character, its XML form); '&' first.
_XML_REPLACEMENTS = (
    ("'&'", "&amp;"),
    ("'<'", "&lt;"),
    ("'>'", "&gt;"),
    ("chr(92)", "&#92;"),
    ("chr(9)", "&#9;"),
    ("chr(10)", "&#10;"),
    ("chr(13)", "&#13;"),
)


def _xml_text_sql(e: str) -> str:
    """SQL escaping a text value for XML character data (control characters dropped)."""
    out = f"regexp_replace({e}, '[\\x01-\\x08\\x0B\\x0C\\x0E-\\x1F]', '', 'g')"
    for char_sql, entity in _XML_REPLACEMENTS:
        out = f"replace({out}, {char_sql}, '{entity}')"
    return out


def td_sql(source, col: Column) -> str:
    e = source.expr(col)
    if col.kind == "str":
        return _xml_text_sql(e)
    if col.kind in ("bool", "flag"):
        return f"CASE WHEN {e} THEN 'T' WHEN NOT {e} THEN 'F' END"
    return f"({e})::text"


def row_sql(source, columns: list[Column]) -> str:
    """SQL of one row's <TR> element (the || operator: concat() takes at most 100 arguments)."""
    cells = " || '</TD><TD>' || ".join(f"coalesce({td_sql(source, c)}, '')" for c in columns)
    return f"'<TR><TD>' || {cells} || '</TD></TR>'"


def field_xml(col: Column, ucd: str | None = None, field_id: str | None = None) -> str:
    attrs = [f"name={quoteattr(col.name)}", f"ID={quoteattr(field_id or col.name)}", f'datatype="{DATATYPES[col.kind]}"']
    if col.kind == "str":
        attrs.append('arraysize="*"')
    if col.unit:
        attrs.append(f"unit={quoteattr(col.unit)}")
    attrs.append(f"ucd={quoteattr(ucd or col.ucd)}")
    return f"<FIELD {' '.join(attrs)}><DESCRIPTION>{escape(col.description)}</DESCRIPTION></FIELD>"


def info_xml(name: str, value: str, text: str = "") -> str:
    return (
        f"<INFO name={quoteattr(name)} value={quoteattr(value)}>{escape(text)}</INFO>"
        if text
        else f"<INFO name={quoteattr(name)} value={quoteattr(value)}/>"
    )


def votable_head(resource_infos: list[str], description: str = "") -> str:
    desc = f"<DESCRIPTION>{escape(description)}</DESCRIPTION>\n" if description else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<VOTABLE version="1.4" xmlns="{VOTABLE_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        '<RESOURCE type="results">\n' + desc + "\n".join(resource_infos) + "\n"
    )


def votable_error(message: str) -> bytes:
    """A valid VOTable that carries only an error (IVOA SCS 1.03: INFO name="Error")."""
    return (votable_head([info_xml("QUERY_STATUS", "ERROR", message), info_xml("Error", message)]) + "</RESOURCE>\n</VOTABLE>\n").encode()


def stream_votable(
    source,
    columns: list[Column],
    provenance: dict | None,
    *,
    ucds: dict[str, str] | None = None,
    ids: dict[str, str] | None = None,
    table_name: str = "galaxies",
    description: str = "",
    with_rows: bool = True,
) -> Iterator[bytes]:
    """The VOTable of `source` restricted to `columns`; `ucds`/`ids` override per column name."""
    ucds, ids = ucds or {}, ids or {}
    rows = count_rows(source) if with_rows else 0
    infos = [info_xml("QUERY_STATUS", "OK")] + [info_xml(k, v) for k, v in provenance_items(provenance, rows)]
    head = votable_head(infos, description)
    head += f'<TABLE name={quoteattr(table_name)} nrows="{rows}">\n'
    head += "\n".join(field_xml(c, ucds.get(c.name), ids.get(c.name)) for c in columns) + "\n"
    head += "<DATA><TABLEDATA>\n"
    yield head.encode()
    if with_rows:
        yield from copy_out(f"COPY ({select_sql(source, [row_sql(source, columns)])}) TO STDOUT", source.params)
    yield b"</TABLEDATA></DATA>\n</TABLE>\n</RESOURCE>\n</VOTABLE>\n"
