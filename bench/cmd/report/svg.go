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
