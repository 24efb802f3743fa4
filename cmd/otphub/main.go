// Command otphub is the one otphub binary: `otphub serve` runs the server
// (any subset of the authcore, hub and dispatcher roles); `otphub version`
// prints the build. Flags are parsed here; everything else lives in
// packages that tests run in-process (app, config).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/otphub/otphub/app"
	"github.com/otphub/otphub/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `otphub delivers SMS one-time passwords end to end: an auth core issues and
verifies SMS OTPs, a durable log carries their notification events, and a
WebSub hub and built-in provider workers (Twilio, Vonage, custom gateway)
deliver them.

Usage:
  otphub serve [flags]   start the server (see: otphub serve --help)
  otphub version         print the version
  otphub help            show this help
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "otphub %s\n", version)
		return 0
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		fmt.Fprintln(stdout)
		config.Usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "otphub: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func serve(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(args, os.Getenv, stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "otphub: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, cfg, app.Options{Stdout: stdout, Stderr: stderr, Version: version})
	if err != nil {
		fmt.Fprintf(stderr, "otphub: %v\n", err)
		return 1
	}
	if err := a.ListenAndServe(ctx); err != nil {
		fmt.Fprintf(stderr, "otphub: %v\n", err)
		return 1
	}
	return 0
}
