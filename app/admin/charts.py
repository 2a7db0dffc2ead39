"""Server-side SVG line charts: no JavaScript and no files from elsewhere.

Every label goes through markupsafe, so text from reports stays text.
"""

from dataclasses import dataclass, field

from markupsafe import Markup, escape

WIDTH, HEIGHT = 760, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 15, 30


@dataclass
class Series:
    label: str
    points: list  # (datetime, number) pairs, in time order
    css_class: str = "series"
    dashed: bool = False


@dataclass
class Chart:
    title: str
    unit: str = ""
    series: list = field(default_factory=list)
    # (value, label, css class) drawn across the whole width
    lines: list = field(default_factory=list)

    def render(self):
        points = [p for s in self.series for p in s.points]
        if not points:
            return Markup('<p class="text-muted">No data yet for {}.</p>').format(self.title)
        x_min = min(t for t, _ in points).timestamp()
        x_max = max(t for t, _ in points).timestamp()
        values = [v for _, v in points] + [value for value, _, _ in self.lines]
        y_max = max(values) * 1.05 or 1.0
        x_span = (x_max - x_min) or 1.0
        plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

        def x_of(moment):
            return MARGIN_LEFT + (moment.timestamp() - x_min) / x_span * plot_width

        def y_of(value):
            return MARGIN_TOP + plot_height - value / y_max * plot_height

        parts = [Markup(
            '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{title}" '
            'xmlns="http://www.w3.org/2000/svg"><title>{title}</title>'
        ).format(w=WIDTH, h=HEIGHT, title=self.title)]
        parts.append(self._axes(y_max, x_min, x_max))
        for value, label, css_class in self.lines:
            y = y_of(value)
            parts.append(Markup(
                '<line class="{c}" x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}"/>'
                '<text class="line-label {c}" x="{x2}" y="{ty:.1f}" text-anchor="end">{label}</text>'
            ).format(c=css_class, x1=MARGIN_LEFT, x2=WIDTH - MARGIN_RIGHT, y=y, ty=y - 3, label=label))
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

    def _axes(self, y_max, x_min, x_max):
        from datetime import datetime, timezone

        bottom = HEIGHT - MARGIN_BOTTOM
        parts = [Markup('<line class="axis" x1="{l}" x2="{r}" y1="{b}" y2="{b}"/><line class="axis" x1="{l}" x2="{l}" y1="{t}" y2="{b}"/>').format(
            l=MARGIN_LEFT, r=WIDTH - MARGIN_RIGHT, b=bottom, t=MARGIN_TOP)]
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
        parts = []
        for index, series in enumerate(self.series):
            x = MARGIN_LEFT + 10 + index * 170
            parts.append(Markup('<rect class="{c}" x="{x}" y="{y}" width="12" height="4"/><text class="legend" x="{tx}" y="{ty}">{label}</text>').format(
                c=series.css_class, x=x, y=MARGIN_TOP + 2, tx=x + 16, ty=MARGIN_TOP + 8, label=series.label))
        return Markup("").join(parts)


def human(value, unit):
    """Format a number for an axis: bytes in binary units, seconds as is."""
    if unit == "B":
        for suffix in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
            if abs(value) < 1024 or suffix == "PiB":
                return f"{value:.1f} {suffix}" if suffix != "B" else f"{value:.0f} B"
            value /= 1024
    if unit == "s":
        return f"{value:.0f} s"
    return escape(f"{value:.0f}")
