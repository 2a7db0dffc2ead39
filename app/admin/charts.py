"""Server-side SVG line charts: no JavaScript and no files from elsewhere.

Every label goes through markupsafe, so text from reports stays text.
"""

from dataclasses import dataclass, field
from datetime import datetime, timezone

from markupsafe import Markup, escape

WIDTH, HEIGHT = 760, 260
# The legend sits in the top margin, above the plot.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 26, 30


@dataclass
class Series:
    label: str
    points: list  # (datetime, number) pairs, in time order
    css_class: str = "series"
    dashed: bool = False


@dataclass
class Band:
    """A shaded range of values across the whole width, such as a warning range."""

    low: float
    # None means up to the top of the chart.
    high: float | None
    label: str
    css_class: str


@dataclass
class Marker:
    """A moment drawn as a vertical line, such as a failed run, with its label as the tooltip."""

    at: datetime
    label: str
    css_class: str = "failure"


@dataclass
class Chart:
    title: str
    unit: str = ""
    series: list = field(default_factory=list)
    # (value, label, css class) drawn across the whole width
    lines: list = field(default_factory=list)
    bands: list = field(default_factory=list)
    markers: list = field(default_factory=list)
    # Legend text for the markers, shown once when there are any.
    marker_legend: str = ""
    x_label: str = "time (UTC)"
    # Empty means the unit.
    y_label: str = ""
    # When set, a chart without points is drawn as an empty frame with this text
    # instead of a paragraph that reports no data.
    empty_text: str | None = None

    def render(self):
        points = [p for s in self.series for p in s.points]
        if not points and not self.markers:
            if self.empty_text is None:
                return Markup('<p class="text-muted">No data yet for {}.</p>').format(self.title)
            return self._render_empty()
        moments = [t for t, _ in points] + [marker.at for marker in self.markers]
        x_min = min(moments).timestamp()
        x_max = max(moments).timestamp()
        values = [v for _, v in points] + [value for value, _, _ in self.lines]
        values += [bound for band in self.bands for bound in (band.low, band.high) if bound is not None]
        # Bands open at the top get a tenth of the height above their lower edge.
        y_max = (max(values, default=0) * (1.1 if self.bands else 1.05)) or 1.0
        x_span = (x_max - x_min) or 1.0
        plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

        def x_of(moment):
            return MARGIN_LEFT + (moment.timestamp() - x_min) / x_span * plot_width

        def y_of(value):
            return MARGIN_TOP + plot_height - min(value, y_max) / y_max * plot_height

        parts = [self._open_svg()]
        for band in self.bands:
            top = y_of(y_max if band.high is None else band.high)
            bottom = y_of(max(band.low, 0))
            parts.append(Markup(
                '<rect class="band {c}" x="{x}" y="{y:.1f}" width="{w}" height="{h:.1f}"><title>{label}</title></rect>'
            ).format(c=band.css_class, x=MARGIN_LEFT, y=top, w=plot_width, h=max(bottom - top, 0), label=band.label))
        parts.append(self._axes(y_max, x_min, x_max))
        for value, label, css_class in self.lines:
            y = y_of(value)
            parts.append(Markup(
                '<line class="{c}" x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}"/>'
                '<text class="line-label {c}" x="{x2}" y="{ty:.1f}" text-anchor="end">{label}</text>'
            ).format(c=css_class, x1=MARGIN_LEFT, x2=WIDTH - MARGIN_RIGHT, y=y, ty=y - 3, label=label))
        for marker in self.markers:
            x = x_of(marker.at)
            parts.append(Markup(
                '<line class="marker {c}" x1="{x:.1f}" x2="{x:.1f}" y1="{t}" y2="{b}"><title>{label}</title></line>'
            ).format(c=marker.css_class, x=x, t=MARGIN_TOP, b=HEIGHT - MARGIN_BOTTOM, label=marker.label))
        for series in self.series:
            coordinates = " ".join(f"{x_of(t):.1f},{y_of(v):.1f}" for t, v in series.points)
            dash = ' stroke-dasharray="6 4"' if series.dashed else ""
            parts.append(Markup('<polyline class="{c}" fill="none" points="{p}"{d}><title>{label}</title></polyline>').format(
                c=series.css_class, p=coordinates, d=Markup(dash), label=series.label))
            if len(series.points) == 1:
                x, y = x_of(series.points[0][0]), y_of(series.points[0][1])
                parts.append(Markup('<circle class="{}" cx="{:.1f}" cy="{:.1f}" r="3"/>').format(series.css_class, x, y))
        parts.append(self._legend())
        parts.append(Markup("</svg>"))
        return Markup("").join(parts)

    def _open_svg(self):
        return Markup(
            '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{title}" '
            'xmlns="http://www.w3.org/2000/svg"><title>{title}</title>'
        ).format(w=WIDTH, h=HEIGHT, title=self.title)

    def _render_empty(self):
        middle_x = MARGIN_LEFT + (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / 2
        middle_y = MARGIN_TOP + (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM) / 2
        return Markup("").join([
            self._open_svg(),
            self._frame(),
            self._axis_labels(),
            Markup('<text class="empty" x="{:.1f}" y="{:.1f}" text-anchor="middle">{}</text>').format(
                middle_x, middle_y, self.empty_text),
            Markup("</svg>"),
        ])

    def _frame(self):
        return Markup('<line class="axis" x1="{l}" x2="{r}" y1="{b}" y2="{b}"/><line class="axis" x1="{l}" x2="{l}" y1="{t}" y2="{b}"/>').format(
            l=MARGIN_LEFT, r=WIDTH - MARGIN_RIGHT, b=HEIGHT - MARGIN_BOTTOM, t=MARGIN_TOP)

    def _axis_labels(self):
        middle_x = MARGIN_LEFT + (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / 2
        middle_y = MARGIN_TOP + (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM) / 2
        return Markup(
            '<text class="axis-label" x="{mx:.1f}" y="{xb}" text-anchor="middle">{x_label}</text>'
            '<text class="axis-label" x="12" y="{my:.1f}" text-anchor="middle" transform="rotate(-90 12 {my:.1f})">{y_label}</text>'
        ).format(mx=middle_x, xb=HEIGHT - 8, x_label=self.x_label, my=middle_y, y_label=self.y_label or self.unit)

    def _axes(self, y_max, x_min, x_max):
        parts = [self._frame(), self._axis_labels()]
        for fraction in (0, 0.5, 1):
            value = y_max * fraction
            y = MARGIN_TOP + (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM) * (1 - fraction)
            parts.append(Markup('<text class="tick" x="{}" y="{:.1f}" text-anchor="end">{}</text>').format(
                MARGIN_LEFT - 5, y + 4, human(value, self.unit)))
        for moment, anchor, x in ((x_min, "start", MARGIN_LEFT), (x_max, "end", WIDTH - MARGIN_RIGHT)):
            stamp = datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M")
            parts.append(Markup('<text class="tick" x="{}" y="{}" text-anchor="{}">{}</text>').format(x, HEIGHT - 8, anchor, stamp))
        return Markup("").join(parts)

    def _legend(self):
        entries = [(series.css_class, series.label) for series in self.series]
        entries += [(f"band {band.css_class}", band.label) for band in self.bands]
        if self.markers and self.marker_legend:
            entries.append((f"marker {self.markers[0].css_class}", self.marker_legend))
        parts = []
        x = MARGIN_LEFT + 10
        # The size chart has a warning and a critical band on each side of the mean.
        for css_class, label in dict.fromkeys(entries):
            parts.append(Markup('<rect class="legend-key {c}" x="{x}" y="{y}" width="12" height="6"/><text class="legend" x="{tx}" y="{ty}">{label}</text>').format(
                c=css_class, x=x, y=8, tx=x + 16, ty=15, label=label))
            # About 6 px per character at the chart's 11 px font.
            x += 16 + 6 * len(label) + 14
        return Markup("").join(parts)


def human(value, unit):
    """Format a number for an axis: bytes in binary units, seconds as is."""
    if unit == "B":
        for suffix in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
            if abs(value) < 1024 or suffix == "PiB":
                return f"{value:.1f} {suffix}" if suffix != "B" else f"{value:.0f} B"
            value /= 1024
    if unit == "s":
        # Runs shorter than ten seconds (a small tar, a ping) need the tenths.
        return f"{value:.1f} s" if abs(value) < 10 else f"{value:.0f} s"
    return escape(f"{value:.0f}")
