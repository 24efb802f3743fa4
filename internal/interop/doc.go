// Package interop holds otphub's compatibility tests with clients nobody
// here wrote: each test starts the whole otphub in-process (as `make run`
// does, over loopback HTTP) and drives it exactly as an outside client
// does. See docs/compatibility.md for what each client needs configured.
//
//   - asgardeo_trigger_test.go: the seed's handler, a Ballerina service on
//     ballerinax/trigger.asgardeo (its requests and checks, reproduced from
//     its source, since Ballerina cannot be installed here);
//   - standardwebhooks_test.go: the official Standard Webhooks libraries,
//     Go and npm (run with node);
//   - cloudevents_test.go: CloudEvents producers (the npm cloudevents SDK,
//     run with node, and sdk-go) publishing over HTTP.
//
// The npm packages are pinned in testdata/node (package.json and
// package-lock.json) and installed there with `npm ci` by the tests when
// missing. Without node the node tests skip, except under CI=true, where
// they fail.
package interop
