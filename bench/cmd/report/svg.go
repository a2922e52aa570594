package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// bar is one bar of a chart.
type bar struct {
	label string
	value float64
	// ours draws the bar in the highlight colour.
	ours bool
}

// chart is a horizontal bar chart with one bar per library.
type chart struct {
	title string
	unit  string
	bars  []bar
	// marker, when above zero, draws a dashed vertical line at this value,
	// labelled markerLabel: a goal or a baseline.
	marker      float64
	markerLabel string
}

// Layout of a chart, in SVG user units.
const (
	chartWidth  = 720
	labelWidth  = 210
	valueWidth  = 90
	barHeight   = 22
	barGap      = 6
	chartTop    = 44
	chartBottom = 28
)

// writeSVG writes c as a standalone SVG document. Values that are not
// finite or are negative draw as empty bars; their labels say so.
func (c chart) writeSVG(w io.Writer) error {
	height := chartTop + len(c.bars)*(barHeight+barGap) + chartBottom
	plot := float64(chartWidth - labelWidth - valueWidth)
	top := c.marker
	for _, b := range c.bars {
		if finite(b.value) {
			top = math.Max(top, b.value)
		}
	}
	if top <= 0 {
		top = 1
	}
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&s, `<text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(c.title))
	fmt.Fprintf(&s, `<text x="10" y="38" fill="#555555">%s</text>`+"\n", html.EscapeString(c.unit))
	for i, b := range c.bars {
		y := chartTop + i*(barHeight+barGap)
		fill := "#9aa5b1"
		if b.ours {
			fill = "#2b6cb0"
		}
		width := 0.0
		if finite(b.value) && b.value > 0 {
			width = plot * b.value / top
		}
		fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelWidth-8, y+barHeight-6, html.EscapeString(b.label))
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", labelWidth, y, width, barHeight, fill)
		fmt.Fprintf(&s, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(labelWidth)+width+6, y+barHeight-6, html.EscapeString(format(b.value)))
	}
	if c.marker > 0 {
		x := float64(labelWidth) + plot*c.marker/top
		bottom := height - chartBottom
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c53030" stroke-dasharray="4 3"/>`+"\n", x, chartTop-4, x, bottom)
		fmt.Fprintf(&s, `<text x="%.1f" y="%d" fill="#c53030" text-anchor="middle">%s</text>`+"\n", x, bottom+16, html.EscapeString(c.markerLabel))
	}
	s.WriteString("</svg>\n")
	_, err := io.WriteString(w, s.String())
	return err
}

// finite reports whether v is neither NaN nor infinite.
func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// format prints v with three significant digits, without exponent for the
// magnitudes benchmarks produce.
func format(v float64) string {
	switch {
	case !finite(v):
		return "n/a"
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	digits := max(0, 2-int(math.Floor(math.Log10(math.Abs(v)))))
	return strconv.FormatFloat(v, 'f', digits, 64)
}

// point is one point of a line chart's series.
type point struct{ x, y float64 }

// series is one line of a line chart: a library or a measure.
type series struct {
	label  string
	points []point
	// ours draws the line in the highlight colour, thicker.
	ours bool
}

// lineChart is a chart of one or more series against a numeric x axis,
// such as the number of keys or of callers. Each axis is linear or
// logarithmic (base 10); on a logarithmic axis, points at or below zero
// are left out.
type lineChart struct {
	title  string
	unit   string // what the y axis shows
	xLabel string
	logX   bool
	logY   bool
	series []series
	// ticks are the x values labelled on the axis; when empty, the x
	// values of the points are.
	ticks []float64
}

// Layout of a line chart, in SVG user units.
const (
	lineWidth   = 720
	lineHeight  = 400
	lineLeft    = 80
	lineRight   = 200 // the legend
	lineTop     = 56
	lineBottom  = 48
	legendEntry = 18
)

// peerColours are the colours of the peers' lines, in turn; ours is
// drawn in the highlight colour of the bar charts.
var peerColours = []string{"#9aa5b1", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096"}

// writeSVG writes c as a standalone SVG document.
func (c lineChart) writeSVG(w io.Writer) error {
	ax := func(v float64, logScale bool) float64 {
		if logScale {
			return math.Log10(v)
		}
		return v
	}
	usable := func(p point) bool {
		return finite(p.x) && finite(p.y) && (!c.logX || p.x > 0) && (!c.logY || p.y > 0)
	}
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.series {
		for _, p := range s.points {
			if !usable(p) {
				continue
			}
			x, y := ax(p.x, c.logX), ax(p.y, c.logY)
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
		}
	}
	if xmin > xmax { // no usable point
		xmin, xmax, ymin, ymax = 0, 1, 0, 1
	}
	if !c.logY {
		ymin = math.Min(ymin, 0)
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymax == ymin {
		ymin, ymax = ymin-1, ymax+1
	}
	ymax += (ymax - ymin) * 0.05
	plotW := float64(lineWidth - lineLeft - lineRight)
	plotH := float64(lineHeight - lineTop - lineBottom)
	px := func(x float64) float64 { return lineLeft + plotW*(ax(x, c.logX)-xmin)/(xmax-xmin) }
	py := func(y float64) float64 { return lineTop + plotH*(1-(ax(y, c.logY)-ymin)/(ymax-ymin)) }

	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		lineWidth, lineHeight, lineWidth, lineHeight)
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&s, `<text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(c.title))
	fmt.Fprintf(&s, `<text x="10" y="38" fill="#555555">%s</text>`+"\n", html.EscapeString(c.unit))
	bottom := float64(lineHeight - lineBottom)
	fmt.Fprintf(&s, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", lineLeft, bottom, lineLeft+plotW, bottom)
	fmt.Fprintf(&s, `<line x1="%d" y1="%d" x2="%d" y2="%.1f" stroke="#333333"/>`+"\n", lineLeft, lineTop, lineLeft, bottom)
	ticks := c.ticks
	if len(ticks) == 0 {
		seen := map[float64]bool{}
		for _, sr := range c.series {
			for _, p := range sr.points {
				if usable(p) && !seen[p.x] {
					seen[p.x] = true
					ticks = append(ticks, p.x)
				}
			}
		}
	}
	for _, t := range ticks {
		if !finite(t) || (c.logX && t <= 0) {
			continue
		}
		x := px(t)
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", x, bottom, x, bottom+4)
		label := format(t)
		if t == math.Trunc(t) && math.Abs(t) < 1e15 {
			label = strconv.FormatFloat(t, 'f', 0, 64)
		}
		fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, bottom+18, html.EscapeString(label))
	}
	fmt.Fprintf(&s, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555555">%s</text>`+"\n", lineLeft+plotW/2, lineHeight-8, html.EscapeString(c.xLabel))
	for i := range 5 { // y grid: five labelled lines
		v := ymin + (ymax-ymin)*float64(i)/4
		if c.logY {
			v = math.Pow(10, v)
		}
		y := py(v)
		fmt.Fprintf(&s, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e2e8f0"/>`+"\n", lineLeft, y, lineLeft+plotW, y)
		fmt.Fprintf(&s, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", lineLeft-6, y+4, html.EscapeString(format(v)))
	}
	peer := 0
	for i, sr := range c.series {
		colour, width := "#2b6cb0", 3
		if !sr.ours {
			colour, width = peerColours[peer%len(peerColours)], 2
			peer++
		}
		var pts []string
		for _, p := range sr.points {
			if usable(p) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.x), py(p.y)))
			}
		}
		if len(pts) > 0 {
			fmt.Fprintf(&s, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%d"/>`+"\n", strings.Join(pts, " "), colour, width)
		}
		for _, p := range pts {
			x, y, _ := strings.Cut(p, ",")
			fmt.Fprintf(&s, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", x, y, colour)
		}
		ly := lineTop + i*legendEntry
		lx := lineWidth - lineRight + 16
		fmt.Fprintf(&s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%d"/>`+"\n", lx, ly, lx+20, ly, colour, width)
		fmt.Fprintf(&s, `<text x="%d" y="%d">%s</text>`+"\n", lx+26, ly+4, html.EscapeString(sr.label))
	}
	s.WriteString("</svg>\n")
	_, err := io.WriteString(w, s.String())
	return err
}
