# otphub — `make run` starts the embedded single binary, `make test` runs
# everything CI runs. See README.md.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Development defaults for `make run`: the console SMS provider may be
# chosen, webhooks on this machine (the example handler) are allowed, and
# console sign-in asks for an SMS OTP sent through the org "ops" (created
# at the first start with the console provider: the code is printed here).
RUN_FLAGS ?= --allow-console-provider --egress-allow-cidrs 127.0.0.0/8,::1/128 --console-sign-in-org ops

.PHONY: build run test test-go vet fmt-check lint bench bench-go bench-e2e soak fuzz helm promtool screenshots clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/otphub ./cmd/otphub

run:
	$(GO) run ./cmd/otphub serve $(RUN_FLAGS)

## test: vet, formatting, every Go test under the race detector, the Helm
## chart and the alert rules. PostgreSQL must be on 127.0.0.1:5432
## (.ci/postgres.sh starts it).
test: fmt-check vet test-go helm promtool

test-go:
	$(GO) test -race -count=1 -timeout 12m ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## lint: gofmt, vet and staticcheck (fetched through the Go module proxy).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint: fmt-check vet
	$(GO) run $(STATICCHECK) ./...

## bench: Go micro-benchmarks of the hot paths, then the end-to-end
## benchmarks (closed loop in one process; open loop with the load client,
## the webhook receiver and otphub as three processes, embedded and Kafka +
## PostgreSQL (PostgreSQL on 127.0.0.1:5432, as for make test), and beside a
## hanging endpoint) that write docs/benchmarks.md.
## `make bench-e2e BENCH_QUICK=1`: a few minutes on 2 cores, embedded only.
bench: bench-go bench-e2e

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./... | grep -E '^(Benchmark|ok|pkg:)'

bench-e2e:
	$(GO) run ./internal/e2ebench -out docs/benchmarks.md $(if $(BENCH_QUICK),-quick)

## soak: the long reliability suite (kill -9 under load, hanging endpoints,
## throttling providers, scale-out with Kafka and PostgreSQL).
soak:
	OTPHUB_SOAK=1 $(GO) test -race -count=1 -timeout 30m -run 'Soak|Crash|ScaleOut' ./internal/reliability/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzUnmarshalAsgardeo -fuzztime 30s ./event/

## screenshots: the hosted login prompt at desktop and phone width, for
## docs/login.md (drives chromium like the browser tests).
screenshots:
	OTPHUB_SCREENSHOTS=$(CURDIR)/docs/login $(GO) test -count=1 -run 'TestBrowser/Screenshots' ./examples/login-app/

helm:
	bash hack/helm.sh

promtool:
	bash hack/promtool.sh

clean:
	rm -rf bin
