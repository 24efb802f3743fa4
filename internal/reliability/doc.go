// Package reliability holds otphub's reliability tests (and only their
// small helpers): kill -9 of the embedded server under load, a hanging
// webhook endpoint beside a healthy one, a throttling SMS provider, two
// processes sharing Kafka and PostgreSQL with one killed mid-load, and one
// jti published in two orgs.
//
// `make test` runs the short forms; `make soak` (OTPHUB_SOAK=1) the long
// ones. See docs/reliability.md.
package reliability
