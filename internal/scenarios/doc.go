// Package scenarios has no code: its test keeps docs/SCENARIOS.md, the
// list of every test that runs against a real peer, complete and true.
package scenarios
