package main

// The audit log writes TLS versions as OpenSSL names them ("TLSv1.3"),
// and its lines are hash-chained, so the log keeps that spelling. The
// commands' JSON (docs/schemas/) writes them as every other smgctl JSON
// does and as a policy file does: "1.3".

import (
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/report"
	"github.com/smgctl/smgctl/pkg/audit/trace"
	"github.com/smgctl/smgctl/pkg/policy"
)

// jsonAuditRecord is a copy of rec with its TLS version in the JSON form.
func jsonAuditRecord(rec audit.Record) audit.Record {
	rec.TLSVersion = policy.VersionNumber(rec.TLSVersion)
	return rec
}

// jsonTrace is a copy of tr with every attempt's record in the JSON form.
func jsonTrace(tr *trace.Trace) *trace.Trace {
	out := *tr
	out.Recipients = make([]trace.Recipient, len(tr.Recipients))
	for i, r := range tr.Recipients {
		r.Attempts = make([]trace.Attempt, len(tr.Recipients[i].Attempts))
		for j, a := range tr.Recipients[i].Attempts {
			a.Record = jsonAuditRecord(a.Record)
			r.Attempts[j] = a
		}
		out.Recipients[i] = r
	}
	return &out
}

// jsonReport is a copy of r whose tls_versions are keyed "1.3", "none".
func jsonReport(r *report.Report) *report.Report {
	out := *r
	group := func(g report.Group) report.Group {
		if g.Versions != nil {
			v := make(map[string]int, len(g.Versions))
			for k, n := range g.Versions {
				v[policy.VersionNumber(k)] += n
			}
			g.Versions = v
		}
		return g
	}
	out.Total = group(r.Total)
	out.Domains = make([]report.Group, len(r.Domains))
	for i, g := range r.Domains {
		out.Domains[i] = group(g)
	}
	out.Entries = make([]report.Group, len(r.Entries))
	for i, g := range r.Entries {
		out.Entries[i] = group(g)
	}
	return &out
}
