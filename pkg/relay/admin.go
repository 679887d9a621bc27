package relay

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smgctl/smgctl/pkg/relay/health"
)

// adminHandler serves /healthz (JSON: "ok", "degraded" or "failing" with
// the problems the relay's parts reported on its health board) and /metrics (Prometheus, from the
// relay's own registry; see metrics.go).
func (r *Relay) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		ps := r.watcher.Stats()
		ds := r.runner.Stats()
		level, problems := r.health.Snapshot()
		w.Header().Set("Content-Type", "application/json")
		// Failing is 503 so a load balancer or monitor that only reads
		// the status code takes the relay out; degraded still serves.
		if level == health.Failing {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(map[string]any{
			"status":              level.String(),
			"problems":            problems,
			"uptime_seconds":      int(time.Since(r.started).Seconds()),
			"policy_entries":      ps.Entries,
			"policy_loaded":       ps.LastLoad.UTC().Format(time.RFC3339),
			"policy_last_error":   ps.LastError,
			"policy_sha256":       ps.SHA256,
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
