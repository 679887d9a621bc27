package relay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// adminHandler serves /healthz (JSON) and /metrics (the Prometheus text
// exposition format, written directly: a dozen gauges and counters do not
// need a client library).
func (r *Relay) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		ps := r.watcher.Stats()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"status":              "ok",
			"uptime_seconds":      int(time.Since(r.started).Seconds()),
			"policy_entries":      ps.Entries,
			"policy_loaded":       ps.LastLoad.UTC().Format(time.RFC3339),
			"policy_last_error":   ps.LastError,
			"queue":               r.runner.Stats().Queued + r.runner.Stats().Active,
			"inbound_connections": r.server.Active(),
		})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		ds := r.runner.Stats()
		ps := r.watcher.Stats()
		metric := func(name, typ, help string, v any) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
		}
		metric("smgctl_relay_delivered_total", "counter", "Recipients delivered.", ds.Delivered)
		metric("smgctl_relay_deferred_total", "counter", "Recipient attempts deferred.", ds.Deferred)
		metric("smgctl_relay_bounced_total", "counter", "Recipients returned to the sender.", ds.Bounced)
		metric("smgctl_relay_would_bounce_total", "counter", "mode=testing recipients delivered that enforce mode would have returned.", ds.WouldBounce)
		metric("smgctl_relay_dsn_total", "counter", "DSNs queued.", ds.DSNs)
		metric("smgctl_relay_queue_messages", "gauge", "Messages in the queue.", ds.Queued+ds.Active)
		metric("smgctl_relay_active_messages", "gauge", "Messages being delivered now.", ds.Active)
		metric("smgctl_relay_inbound_connections", "gauge", "Open inbound SMTP connections.", r.server.Active())
		metric("smgctl_policy_entries", "gauge", "Entries of the policy in force.", ps.Entries)
		metric("smgctl_policy_reloads_total", "counter", "Policies put in force.", ps.Loads)
		metric("smgctl_policy_reload_failures_total", "counter", "Policy files refused; the previous policy stayed in force.", ps.Failures)
		ok := 1
		if ps.LastError != "" {
			ok = 0
		}
		metric("smgctl_policy_last_reload_ok", "gauge", "1 when the file on disk is the policy in force, 0 when it was refused.", ok)
	})
	return mux
}
