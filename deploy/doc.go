// Package deploy holds no code: its directory carries otphub's Grafana
// dashboard (grafana/) and Prometheus alert rules (prometheus/), and its
// tests check that they query only metrics otphub exports, that every
// exported metric is charted, and that every alert links to a section of
// docs/operations.md.
package deploy
