"""Bar and column charts, and the drawing that places them, as DrawingML parts.

Each series refers to its cells on the sheet (so Excel and LibreOffice recompute it) and
carries a cache of the values (so a viewer that does not recompute still shows them).
Elements follow the order of ECMA-376's ``dml-chart.xsd``; the tests validate every part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pz_excel.xlsx.xmltext import REL_NS, esc_attr, esc_text

C_NS = "http://schemas.openxmlformats.org/drawingml/2006/chart"
A_NS = "http://schemas.openxmlformats.org/drawingml/2006/main"
XDR_NS = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


@dataclass
class Series:
    name: str
    name_ref: str  # 'Сводка'!$B$10
    values_ref: str  # 'Сводка'!$B$11:$B$40
    values: list[float]
    color: str  # RRGGBB


@dataclass
class Chart:
    title: str
    categories_ref: str
    categories: list[str | float]  # text labels, or Excel serial dates (then a format)
    series: list[Series]
    horizontal: bool = False  # bars (long names read better) instead of columns
    stacked: bool = False
    axis_title: str = ""
    category_format: str = ""  # e.g. "dd.mm" for serial dates
    lang: str = "en-US"


@dataclass
class Anchor:
    """Where a chart sits: from (col, row) to (col, row), 0-based cells."""

    col: int
    row: int
    to_col: int
    to_row: int
    rid: str = ""


def _rich(text: str, size: int, lang: str, bold: bool = True) -> str:
    b = ' b="1"' if bold else ' b="0"'
    return (
        f"<c:tx><c:rich><a:bodyPr/><a:lstStyle/><a:p><a:pPr><a:defRPr sz=\"{size}\"{b}/>"
        f'</a:pPr><a:r><a:rPr lang="{lang}" sz="{size}"{b}/><a:t>{esc_text(text)}</a:t>'
        "</a:r></a:p></c:rich></c:tx>"
    )


def _cache(kind: str, values: list, fmt: str = "") -> str:
    pts = "".join(
        f'<c:pt idx="{i}"><c:v>{esc_text(v if isinstance(v, str) else repr(v))}</c:v></c:pt>'
        for i, v in enumerate(values)
    )
    code = f"<c:formatCode>{esc_text(fmt or 'General')}</c:formatCode>" if kind == "num" else ""
    return f"<c:{kind}Cache>{code}<c:ptCount val=\"{len(values)}\"/>{pts}</c:{kind}Cache>"


def chart_xml(chart: Chart) -> bytes:
    cat_ids, val_ids = "500000001", "500000002"
    dates = bool(chart.category_format)
    if dates:
        cat = (f"<c:cat><c:numRef><c:f>{esc_text(chart.categories_ref)}</c:f>"
               f"{_cache('num', chart.categories, chart.category_format)}</c:numRef></c:cat>")
    else:
        cat = (f"<c:cat><c:strRef><c:f>{esc_text(chart.categories_ref)}</c:f>"
               f"{_cache('str', [str(c) for c in chart.categories])}</c:strRef></c:cat>")
    series = []
    for i, s in enumerate(chart.series):
        series.append(
            f'<c:ser><c:idx val="{i}"/><c:order val="{i}"/>'
            f"<c:tx><c:strRef><c:f>{esc_text(s.name_ref)}</c:f>{_cache('str', [s.name])}"
            f"</c:strRef></c:tx>"
            f'<c:spPr><a:solidFill><a:srgbClr val="{s.color}"/></a:solidFill></c:spPr>'
            f'<c:invertIfNegative val="0"/>{cat}'
            f"<c:val><c:numRef><c:f>{esc_text(s.values_ref)}</c:f>"
            f"{_cache('num', s.values)}</c:numRef></c:val></c:ser>"
        )
    grouping = "stacked" if chart.stacked else "clustered"
    overlap = '<c:overlap val="100"/>' if chart.stacked else ""
    cat_pos, val_pos = ("l", "b") if chart.horizontal else ("b", "l")
    cat_fmt = (f'<c:numFmt formatCode="{esc_attr(chart.category_format)}" sourceLinked="0"/>'
               if dates else "")
    # Horizontal bars list the first category at the top, as the table beside them does.
    orientation = "maxMin" if chart.horizontal else "minMax"
    crosses = "max" if chart.horizontal else "autoZero"
    axis_title = (f"<c:title>{_rich(chart.axis_title, 1000, chart.lang, bold=False)}"
                  '<c:overlay val="0"/></c:title>') if chart.axis_title else ""
    xml = (
        f'{_HEAD}<c:chartSpace xmlns:c="{C_NS}" xmlns:a="{A_NS}" xmlns:r="{REL_NS}">'
        '<c:roundedCorners val="0"/><c:chart>'
        f'<c:title>{_rich(chart.title, 1200, chart.lang)}<c:overlay val="0"/></c:title>'
        '<c:autoTitleDeleted val="0"/><c:plotArea><c:layout/>'
        f'<c:barChart><c:barDir val="{"bar" if chart.horizontal else "col"}"/>'
        f'<c:grouping val="{grouping}"/><c:varyColors val="0"/>{"".join(series)}'
        f'<c:gapWidth val="60"/>{overlap}<c:axId val="{cat_ids}"/><c:axId val="{val_ids}"/>'
        "</c:barChart>"
        f'<c:catAx><c:axId val="{cat_ids}"/><c:scaling><c:orientation val="{orientation}"/>'
        f'</c:scaling><c:delete val="0"/><c:axPos val="{cat_pos}"/>{cat_fmt}'
        '<c:majorTickMark val="out"/><c:minorTickMark val="none"/><c:tickLblPos val="nextTo"/>'
        f'<c:crossAx val="{val_ids}"/><c:crosses val="autoZero"/><c:auto val="1"/>'
        '<c:lblAlgn val="ctr"/><c:lblOffset val="100"/><c:noMultiLvlLbl val="0"/></c:catAx>'
        f'<c:valAx><c:axId val="{val_ids}"/><c:scaling><c:orientation val="minMax"/>'
        f'</c:scaling><c:delete val="0"/><c:axPos val="{val_pos}"/><c:majorGridlines/>'
        f'{axis_title}<c:numFmt formatCode="General" sourceLinked="0"/>'
        '<c:majorTickMark val="out"/><c:minorTickMark val="none"/><c:tickLblPos val="nextTo"/>'
        f'<c:crossAx val="{cat_ids}"/><c:crosses val="{crosses}"/>'
        '<c:crossBetween val="between"/></c:valAx></c:plotArea>'
        '<c:legend><c:legendPos val="b"/><c:overlay val="0"/></c:legend>'
        '<c:plotVisOnly val="1"/><c:dispBlanksAs val="gap"/></c:chart></c:chartSpace>'
    )
    return xml.encode("utf-8")


def drawing_xml(anchors: list[Anchor]) -> bytes:
    out = [f'{_HEAD}<xdr:wsDr xmlns:xdr="{XDR_NS}" xmlns:a="{A_NS}">']
    for i, a in enumerate(anchors, start=1):
        out.append(
            '<xdr:twoCellAnchor editAs="oneCell">'
            f"<xdr:from><xdr:col>{a.col}</xdr:col><xdr:colOff>0</xdr:colOff>"
            f"<xdr:row>{a.row}</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:from>"
            f"<xdr:to><xdr:col>{a.to_col}</xdr:col><xdr:colOff>0</xdr:colOff>"
            f"<xdr:row>{a.to_row}</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:to>"
            f'<xdr:graphicFrame macro=""><xdr:nvGraphicFramePr><xdr:cNvPr id="{i + 1}" '
            f'name="Chart {i}"/><xdr:cNvGraphicFramePr/></xdr:nvGraphicFramePr>'
            '<xdr:xfrm><a:off x="0" y="0"/><a:ext cx="0" cy="0"/></xdr:xfrm>'
            '<a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/'
            f'chart"><c:chart xmlns:c="{C_NS}" xmlns:r="{REL_NS}" r:id="{esc_attr(a.rid)}"/>'
            "</a:graphicData></a:graphic></xdr:graphicFrame><xdr:clientData/>"
            "</xdr:twoCellAnchor>"
        )
    out.append("</xdr:wsDr>")
    return "".join(out).encode("utf-8")


@dataclass
class Drawing:
    """Charts and where they go, for one sheet."""

    charts: list[tuple[Chart, Anchor]] = field(default_factory=list)
