package relay

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminHandler serves /healthz (JSON) and /metrics (Prometheus, from the
// relay's own registry; see metrics.go).
func (r *Relay) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		ps := r.watcher.Stats()
		ds := r.runner.Stats()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"status":              "ok",
			"uptime_seconds":      int(time.Since(r.started).Seconds()),
			"policy_entries":      ps.Entries,
			"policy_loaded":       ps.LastLoad.UTC().Format(time.RFC3339),
			"policy_last_error":   ps.LastError,
			"queue":               ds.Queued + ds.Active,
			"inbound_connections": r.server.Active(),
		})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.reg, promhttp.HandlerOpts{
		ErrorLog: promLogger{r}, ErrorHandling: promhttp.ContinueOnError,
	}))
	return mux
}

// promLogger sends the exposition's errors to the relay's log.
type promLogger struct{ r *Relay }

func (l promLogger) Println(v ...any) { l.r.log.Error("metrics", "err", v) }
