package main

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// The chart's geometry, in SVG user units.
const (
	chartWidth  = 960
	chartHeight = 600
	plotLeft    = 80
	plotRight   = chartWidth - 30
	rateTop     = 100
	rateBottom  = 300
	latTop      = 350
	latBottom   = 550
)

var clientColors = [nClients]string{"#d62728", "#1f77b4"}

var phaseColors = map[phaseKind]string{
	healthy:  "#e8f5e9",
	partial:  "#fff8e1",
	outage:   "#ffebee",
	recovery: "#e3f2fd",
	overload: "#f3e5f5",
}

// point is one bucket of a series; ok is false for a bucket without calls.
type point struct {
	t     time.Duration // middle of the bucket
	value float64
	ok    bool
}

// series computes, per bucket of width w by the time calls ended, f of
// the calls of client that ended in the bucket.
func series(rs []result, client int, w, total time.Duration, f func(stats) float64) []point {
	n := int((total + w - 1) / w)
	buckets := make([][]result, n)
	for _, r := range rs {
		if r.client != client {
			continue
		}
		i := min(int(r.end/w), n-1)
		buckets[i] = append(buckets[i], r)
	}
	pts := make([]point, n)
	for i, b := range buckets {
		pts[i].t = time.Duration(i)*w + w/2
		if len(b) > 0 {
			pts[i].value, pts[i].ok = f(summarize(b, client, all)), true
		}
	}
	return pts
}

// writeChart writes the chart of the run to path.
func (d *demo) writeChart(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	d.chart(w)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// chart draws success rate and p99 latency over time for both clients,
// on the bands of the phases, as SVG.
func (d *demo) chart(w io.Writer) {
	rs := d.since(0)
	total := d.cfg.Duration
	bucket := max(total/30, 100*time.Millisecond)
	x := func(t time.Duration) float64 {
		return plotLeft + float64(plotRight-plotLeft)*min(float64(t)/float64(total), 1)
	}
	yRate := func(pct float64) float64 { return rateBottom - (rateBottom-rateTop)*pct/100 }

	var rate, answered, p50, p99 [nClients][]point
	lo, hi := math.Inf(1), math.Inf(-1)
	for id := range nClients {
		rate[id] = series(rs, id, bucket, total, stats.okRate)
		answered[id] = series(rs, id, bucket, total, stats.answeredRate)
		p50[id] = series(rs, id, bucket, total, func(s stats) float64 { return float64(s.p50) / float64(time.Millisecond) })
		p99[id] = series(rs, id, bucket, total, func(s stats) float64 { return float64(s.p99) / float64(time.Millisecond) })
		for _, p := range append(p50[id], p99[id]...) {
			if p.ok && p.value > 0 {
				lo, hi = math.Min(lo, p.value), math.Max(hi, p.value)
			}
		}
	}
	// The latency axis is logarithmic, in whole decades of milliseconds.
	decLo, decHi := -1.0, 3.0
	if !math.IsInf(lo, 0) {
		decLo, decHi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if decHi <= decLo {
			decHi = decLo + 1
		}
	}
	yLat := func(ms float64) float64 {
		v := min(max(math.Log10(math.Max(ms, 1e-9)), decLo), decHi)
		return latBottom - (latBottom-latTop)*(v-decLo)/(decHi-decLo)
	}

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	fmt.Fprintf(w, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartWidth, chartHeight)
	text(w, plotLeft, 24, "start", "16", fmt.Sprintf("grpc-resilience demo: plain vs resilient gRPC client (profile %s, %s, %d calls/s)",
		d.cfg.Profile, fmtSeconds(total), d.cfg.Rate))

	// Phase bands across both panels, labelled above the first.
	for _, p := range d.phases {
		x0, x1 := x(p.start), x(p.end)
		for _, band := range [][2]float64{{rateTop, rateBottom}, {latTop, latBottom}} {
			fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
				x0, band[0], x1-x0, band[1]-band[0], phaseColors[p.kind])
		}
		text(w, (x0+x1)/2, rateTop-6, "middle", "12", p.kind.String())
	}

	// Axes and grid.
	for pct := 0.0; pct <= 100; pct += 25 {
		gridLine(w, yRate(pct))
		text(w, plotLeft-6, yRate(pct)+4, "end", "11", fmt.Sprintf("%.0f%%", pct))
	}
	for dec := decLo; dec <= decHi; dec++ {
		gridLine(w, yLat(math.Pow(10, dec)))
		text(w, plotLeft-6, yLat(math.Pow(10, dec))+4, "end", "11", decade(dec))
	}
	step := max(time.Second, (total / 10).Round(time.Second))
	for t := time.Duration(0); t <= total; t += step {
		fmt.Fprintf(w, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999"/>`+"\n", x(t), latBottom, x(t), latBottom+4)
		text(w, x(t), latBottom+18, "middle", "11", fmtSeconds(t))
	}
	text(w, plotLeft, rateTop-26, "start", "13", "calls answered by the server, % of the calls that ended in each "+bucketLabel(bucket))
	text(w, plotLeft, latTop-10, "start", "13", "latency of those calls: p99 solid, p50 dotted (log scale)")
	text(w, (plotLeft+plotRight)/2, chartHeight-12, "middle", "12", "time since start")

	// The series.
	for id := range nClients {
		polyline(w, rate[id], x, yRate, clientColors[id], "")
		polyline(w, p99[id], x, yLat, clientColors[id], "")
		polyline(w, p50[id], x, yLat, clientColors[id], "1 3")
	}
	polyline(w, answered[resilientClient], x, yRate, clientColors[resilientClient], "4 3")

	// Legend.
	legend := []struct {
		label, color, dash string
		width              float64
	}{
		{"plain", clientColors[plainClient], "", 120},
		{"resilient", clientColors[resilientClient], "", 120},
		{"resilient, counting cached fallback answers", clientColors[resilientClient], "4 3", 300},
	}
	lx := float64(plotLeft)
	for _, l := range legend {
		fmt.Fprintf(w, `<line x1="%.1f" y1="50" x2="%.1f" y2="50" stroke="%s" stroke-width="2"%s/>`+"\n",
			lx, lx+24, l.color, dashAttr(l.dash))
		text(w, lx+30, 54, "start", "12", l.label)
		lx += l.width
	}
	fmt.Fprintln(w, `</svg>`)
}

// bucketLabel prints a bucket's width: whole seconds as such, shorter
// widths in milliseconds.
func bucketLabel(d time.Duration) string {
	if d%time.Second == 0 {
		return fmtSeconds(d)
	}
	return fmtLatency(d)
}

// decade labels the latency 10^dec milliseconds.
func decade(dec float64) string {
	switch {
	case dec >= 3:
		return fmt.Sprintf("%gs", math.Pow(10, dec-3))
	case dec >= 0:
		return fmt.Sprintf("%gms", math.Pow(10, dec))
	case dec >= -3:
		return fmt.Sprintf("%gµs", math.Pow(10, dec+3))
	}
	return fmt.Sprintf("%gns", math.Pow(10, dec+6))
}

func dashAttr(dash string) string {
	if dash == "" {
		return ""
	}
	return fmt.Sprintf(` stroke-dasharray="%s"`, dash)
}

// polyline draws the points of pts that have a value, as one polyline per
// run of consecutive buckets with calls.
func polyline(w io.Writer, pts []point, x func(time.Duration) float64, y func(float64) float64, color, dash string) {
	var run []string
	flush := func() {
		if len(run) > 0 {
			fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", color, dashAttr(dash), strings.Join(run, " "))
		}
		run = run[:0]
	}
	for _, p := range pts {
		if !p.ok {
			flush()
			continue
		}
		run = append(run, fmt.Sprintf("%.1f,%.1f", x(p.t), y(p.value)))
	}
	flush()
}

func gridLine(w io.Writer, y float64) {
	fmt.Fprintf(w, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ccc" stroke-width="0.5"/>`+"\n", plotLeft, y, plotRight, y)
}

// text writes s, escaped, at (x, y).
func text(w io.Writer, x, y float64, anchor, size, s string) {
	fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%s">`, x, y, anchor, size)
	// xml.EscapeText fails only when w does.
	_ = xml.EscapeText(w, []byte(s))
	fmt.Fprintln(w, `</text>`)
}
