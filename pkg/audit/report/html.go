package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"time"
)

//go:embed report.html.tmpl
var htmlSource string

// WriteHTML writes the report as one self-contained HTML document: inline
// CSS and SVG, no script, no external reference of any kind, so an
// auditor can open it offline or attach it to a ticket as it is.
func WriteHTML(w io.Writer, r *Report, generated time.Time) error {
	t, err := template.New("report").Funcs(template.FuncMap{
		"pct":  func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
		"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"bits": func(p *int) string {
			if p == nil {
				return "–"
			}
			return fmt.Sprint(*p)
		},
		"keys": func(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) },
		"bars": bars,
		"svgh": func(bs []bar) int { return 40 + len(bs)*22 },
	}).Parse(htmlSource)
	if err != nil {
		return err
	}
	return t.Execute(w, struct {
		*Report
		Generated time.Time
	}{r, generated})
}

// bar is one row of the per-domain outcome chart, in SVG user units.
type bar struct {
	Name                          string
	Y                             int
	TLS, Clear, Bounced, Deferred int // widths
	TLSN, ClearN, BouncedN, DefN  int // counts
	X1, X2, X3                    int
}

// bars lays out the chart for the busiest domains: delivered over TLS,
// delivered in clear text, bounced, deferral attempts, scaled to the
// busiest domain.
func bars(gs []Group) []bar {
	const width, limit = 700, 40
	if len(gs) > limit {
		gs = gs[:limit]
	}
	most := 1
	for _, g := range gs {
		most = max(most, g.Messages+g.Deferrals)
	}
	scale := func(n int) int { return n * width / most }
	var out []bar
	for i, g := range gs {
		b := bar{Name: g.Name, Y: 30 + i*22,
			TLSN: g.DeliveredTLS, ClearN: g.Delivered - g.DeliveredTLS, BouncedN: g.Bounced + g.Dropped, DefN: g.Deferrals}
		b.TLS, b.Clear, b.Bounced, b.Deferred = scale(b.TLSN), scale(b.ClearN), scale(b.BouncedN), scale(b.DefN)
		b.X1 = 220 + b.TLS
		b.X2 = b.X1 + b.Clear
		b.X3 = b.X2 + b.Bounced
		out = append(out, b)
	}
	return out
}
