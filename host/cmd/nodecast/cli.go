package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/cluster"
	"github.com/nodecast/nodecast/host/config"
)

// tokenEnv, when set, is the token WebSocket clients must present; it wins
// over the config file's websocket.token.
const tokenEnv = "NODECAST_TOKEN"

// natsEnv names the NATS URL of the cluster to join, as --nats does.
const natsEnv = "NODECAST_NATS"

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the host could not start or failed
	exitUsage = 2 // bad command line
)

const usage = `usage: nodecast <command> [flags]

commands:
  serve   serve ComfyUI's HTTP and WebSocket API with the built-in nodes and the plugin folder
  nodes   list every node class and the pack that serves it

Run 'nodecast <command> -h' for the command's flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "nodes":
		return nodes(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "nodecast: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

// settings are what the flags and the config file decide together: a flag
// given on the command line wins over the file, the file over the defaults.
type settings struct {
	listen, plugins, configFile, inputDir, logLevel string
	logLevelSet                                     bool // --log-level given on the command line
	outputDir, tempDir                              string
	nats, natsEmbed, natsStore                      string // cluster: NATS URL, embedded server address and store
	cfg                                             *config.Config
	cacheNone                                       bool // --cache-none, as ComfyUI's flag

	cors corsFlag // --enable-cors-header [ORIGIN], as ComfyUI's flag
}

func parseFlags(name string, args []string, stderr io.Writer, withListen bool) (*settings, int) {
	s := &settings{}
	fs := flag.NewFlagSet("nodecast "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if withListen {
		fs.StringVar(&s.listen, "listen", "127.0.0.1:8188", "address to serve on")
	}
	fs.StringVar(&s.plugins, "plugins", "./plugins.d", "folder of plugin binaries (a missing folder is fine)")
	fs.StringVar(&s.configFile, "config", "", "YAML config file (default: the embedded config)")
	fs.StringVar(&s.inputDir, "input-dir", "./input", "folder for uploads and LoadImage")
	fs.StringVar(&s.outputDir, "output-dir", "./output", "folder SaveImage writes and /view?type=output serves")
	fs.StringVar(&s.tempDir, "temp-dir", "./temp", "folder PreviewImage writes; emptied at start")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&s.cacheNone, "cache-none", false, "run every node of every prompt: no output cache (as ComfyUI's --cache-none)")
	if withListen {
		fs.StringVar(&s.nats, "nats", "", "NATS URL of the cluster to join (JetStream; also "+natsEnv+" and cluster.nats)")
		fs.StringVar(&s.natsEmbed, "nats-embed", "", "run a nats-server with JetStream in this host, listening on this address")
		fs.StringVar(&s.natsStore, "nats-store", "./nats", "the embedded nats-server's JetStream store")
	}
	if withListen {
		fs.Var(&s.cors, corsFlagName, "answer cross-origin requests as ComfyUI's --enable-cors-header: alone, any origin (*); with ORIGIN (--enable-cors-header https://app.example), that origin")
		args = corsFlagArgs(args)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK
		}
		return nil, exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nodecast %s: unexpected argument %q\n", name, fs.Arg(0))
		return nil, exitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	s.logLevelSet = set["log-level"]
	// A bad flag value is a usage error, refused before the config is read.
	if _, err := s.logger(io.Discard); err != nil {
		fmt.Fprintf(stderr, "nodecast %s: %v\n", name, err)
		return nil, exitUsage
	}

	var err error
	if s.configFile != "" {
		s.cfg, err = config.Load(s.configFile)
	} else {
		s.cfg = config.Default()
	}
	if err != nil {
		fmt.Fprintf(stderr, "nodecast %s: %v\n", name, err)
		return nil, exitError
	}
	if s.cacheNone {
		s.cfg.Cache.None = true
	}
	if s.cors.set {
		s.cfg.HTTP.EnableCORSHeader = s.cors.origin // the flag wins over http.enable_cors_header
	}
	if !set["listen"] && s.cfg.Listen != "" {
		s.listen = s.cfg.Listen
	}
	if !set["nats"] {
		if env := os.Getenv(natsEnv); env != "" {
			s.nats = env
		} else if s.cfg.Cluster.NATS != "" {
			s.nats = s.cfg.Cluster.NATS
		}
	}
	if !set["plugins"] && s.cfg.Plugins != "" {
		s.plugins = s.cfg.Plugins
	}
	if !set["input-dir"] && s.cfg.InputDir != "" {
		s.inputDir = s.cfg.InputDir
	}
	if !set["output-dir"] && s.cfg.OutputDir != "" {
		s.outputDir = s.cfg.OutputDir
	}
	if !set["temp-dir"] && s.cfg.TempDir != "" {
		s.tempDir = s.cfg.TempDir
	}
	for flagName, dir := range map[string]string{"output-dir": s.outputDir, "temp-dir": s.tempDir} {
		if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
			fmt.Fprintf(stderr, "nodecast %s: --%s %s is not a folder\n", name, flagName, dir)
			return nil, exitError
		}
	}
	if fi, err := os.Stat(s.plugins); err == nil && !fi.IsDir() {
		fmt.Fprintf(stderr, "nodecast %s: --plugins %s is not a folder\n", name, s.plugins)
		return nil, exitError
	}
	if fi, err := os.Stat(s.inputDir); err == nil && !fi.IsDir() {
		fmt.Fprintf(stderr, "nodecast %s: --input-dir %s is not a folder\n", name, s.inputDir)
		return nil, exitError
	}
	return s, -1
}

func (s *settings) logger(stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", s.logLevel)
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})), nil
}

func (s *settings) hostOptions(log *slog.Logger) host.Options {
	opts := host.ConfigOptions(s.cfg)
	opts.CacheBytes = s.cfg.Cache.ServeBytes() // serve caches as ComfyUI does, unless --cache-none
	if tok := os.Getenv(tokenEnv); tok != "" {
		opts.Hub.Token = tok // a secret is better kept out of the config file
	}
	opts.PluginDir = s.plugins
	opts.InputDir = s.inputDir
	opts.OutputDir, opts.TempDir = s.outputDir, s.tempDir
	opts.Logger = log
	opts.Listen = s.listen // a loopback address makes every route refuse foreign Host values
	if s.nats != "" || s.natsEmbed != "" {
		opts.Cluster = &cluster.Options{URL: s.nats, Embed: s.natsEmbed, StoreDir: s.natsStore, Name: "nodecast " + s.listen,
			Workers: s.cfg.Cluster.Workers, AckWait: s.cfg.Cluster.AckWait, Logger: log}
	}
	return opts
}

func serve(args []string, stdout, stderr io.Writer) int {
	s, code := parseFlags("serve", args, stderr, true)
	if s == nil {
		return code
	}
	log, err := s.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "nodecast serve: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		fmt.Fprintf(stderr, "nodecast serve: --listen %s: %v\n", s.listen, err)
		return exitError
	}
	h, err := host.New(ctx, s.hostOptions(log))
	if err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "nodecast serve: %v\n", err)
		return exitError
	}
	defer h.Close()
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("nodecast serving", "url", "http://"+ln.Addr().String(), "config", s.cfg.File,
		"plugins", s.plugins, "input_dir", s.inputDir, "classes", len(h.Classes()))
	log.Info("nodecast output folders", "output_dir", s.outputDir, "temp_dir", s.tempDir)
	fmt.Fprintf(stdout, "nodecast serving on http://%s (ws://%s/ws)\n", ln.Addr(), ln.Addr())
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return exitOK
	case err := <-errc:
		fmt.Fprintf(stderr, "nodecast serve: %v\n", err)
		return exitError
	}
}

func nodes(args []string, stdout, stderr io.Writer) int {
	s, code := parseFlags("nodes", args, stderr, false)
	if s == nil {
		return code
	}
	if !s.logLevelSet {
		s.logLevel = "warn" // a listing, not a log; --log-level debug shows plugins loading
	}
	log, _ := s.logger(stderr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := s.hostOptions(log)
	opts.InputDir = os.TempDir() // listing must not create ./input
	// nor ./output, nor empty ./temp
	opts.OutputDir, opts.TempDir, opts.KeepTempDir = os.TempDir(), os.TempDir(), true
	h, err := host.New(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "nodecast nodes: %v\n", err)
		return exitError
	}
	defer h.Close()
	paths := map[string]string{}
	for _, p := range h.Packs() {
		paths[p.Name] = p.Path
		if p.Path == "" {
			paths[p.Name] = "(built in, subprocess)"
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tPACK\tCATEGORY\tPLUGIN")
	for _, c := range h.Classes() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Spec.ClassType, c.Pack, strings.TrimSpace(c.Spec.Category), paths[c.Pack])
	}
	tw.Flush()
	return exitOK
}
