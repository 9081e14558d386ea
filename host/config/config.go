package config

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nodecast/nodecast/protocol"
)

// ErrConfig is wrapped by every *Error.
var ErrConfig = errors.New("config: invalid configuration")

// Error is a refused configuration: the file, the key (a dotted path such as
// "workflows.portrait.nodes.9.event"; "" for the file as a whole), the line
// when known, and why.
type Error struct {
	File   string
	Key    string
	Line   int // 0 when unknown
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

func (e *Error) Unwrap() error { return ErrConfig }

// Config is a parsed configuration file. Paths are resolved against the
// folder of the file they were read from.
type Config struct {
	File         string // the file it was read from ("default.yaml" for Default)
	Listen       string // host:port; "" = the command line decides
	Plugins      string // plugin folder; "" = built-in packs only
	InputDir     string // uploads and LoadImage files
	MessageLimit int    // every WebSocket message strictly smaller; 0 = protocol.DefaultMessageLimit
	MaxBodyBytes int64  // largest HTTP request body; 0 = the API's default
	Defaults     NodeSettings
	Workflows    map[string]*Workflow
	WebSocket    WebSocket
	OutputDir    string   // SaveImage's files; "" = the command line decides (./output)
	TempDir      string   // PreviewImage's files, emptied at start; "" = the command line decides (./temp)
	Sessions     Sessions // what is kept for clients between reconnects
	Limits       Limits   // memory and crash-loop bounds; zero values keep the host's defaults

	// Cache bounds ComfyUI's output cache (nodes unchanged since an earlier
	// prompt do not run again): the key cache.bytes, the tensor bytes kept;
	// 0 = DefaultCacheBytes under nodecast serve. `--cache-none` turns it off.
	Cache   Cache
	Cluster Cluster // the NATS JetStream cluster to join; zero = one host alone

	// SensitiveExtraDataKeys (sensitive_extra_data_keys) are extra_data keys
	// kept secret besides ComfyUI's auth_token_comfy_org and
	// api_key_comfy_org: nodes get them, nothing shows or logs them.
	SensitiveExtraDataKeys []string

	// HTTP is the http key: the HTTP API's cross-origin setting.
	HTTP HTTP
}

// HTTP configures the HTTP API.
type HTTP struct {
	// EnableCORSHeader (enable_cors_header) is ComfyUI's
	// --enable-cors-header: "*" or one browser origin
	// ("https://app.example"); the flag wins over it. "" = off.
	EnableCORSHeader string
}

// Cache configures the output cache.
type Cache struct {
	Bytes int64 // tensor bytes kept; 0 = DefaultCacheBytes
	None  bool  // no cache (--cache-none, or cache: {none: true})
}

// DefaultCacheBytes is the output cache's bound for nodecast serve when
// cache.bytes is not set.
const DefaultCacheBytes = 2 << 30

// CacheBytes is the bound the config itself sets: cache.bytes, or 0 (no
// cache) when it is unset or none is true. host.ConfigOptions uses it, so an
// embedding program caches only when its config asks.
func (c Cache) CacheBytes() int64 {
	if c.None {
		return 0
	}
	return c.Bytes
}

// ServeBytes is nodecast serve's bound: as ComfyUI, serve caches by default,
// DefaultCacheBytes unless cache.bytes says otherwise; 0 when none is true
// (--cache-none).
func (c Cache) ServeBytes() int64 {
	switch {
	case c.None:
		return 0
	case c.Bytes > 0:
		return c.Bytes
	}
	return DefaultCacheBytes
}

// Cluster is the `cluster` key: the NATS server whose JetStream the hosts
// share (NODECAST_NATS and --nats override it), and how many prompts this
// host runs at once from the shared queue (0 = 1, -1 = none: the host only
// accepts requests and holds sockets).
type Cluster struct {
	NATS    string
	Workers int
	// AckWait is how long a host may hold a prompt without acknowledging it
	// (a running prompt acknowledges progress every third of it) before
	// another host runs it; 0 = 30 s.
	AckWait time.Duration
}

// Limits bounds what requests may make the host hold, and how the crash-loop
// breaker behaves. Zero values keep the host's defaults.
type Limits struct {
	HistoryBytes      int64         // finished prompts are forgotten, oldest first, past this many bytes of JSON
	HistoryValueBytes int64         // a prompt input longer than this is kept in history as a placeholder
	PromptTensorBytes int64         // one prompt's tensors, checked before each allocation
	BreakerRestarts   int           // restarts within BreakerWindow that open a pack's breaker
	BreakerWindow     time.Duration // the window those restarts are counted in
	BreakerCooldown   time.Duration // how long an open breaker refuses calls before one probe call
}

// WebSocket configures who may connect to /ws and how much each client may
// have queued. Zero values keep the hub's defaults.
type WebSocket struct {
	Token          string   // clients must send ?token= or "Authorization: Bearer"; "" = none
	AllowedOrigins []string // Origin values accepted ("*" = any); empty = same host, or no Origin
	AllowedHosts   []string // Host headers accepted (DNS-rebinding guard); empty = any
	QueueBytes     int64    // per-client outbound bound; 0 = the hub's default (256 MiB)
	// OnDuplicateClientID: "replace" (default, as ComfyUI: the new socket
	// takes the clientId, the old one is closed with 4001) or "refuse" (409).
	OnDuplicateClientID string
}

// Sessions bounds what the hub keeps per clientId: held messages for a
// client that is away, and the replay window of resume clients. Zero values
// keep the hub's defaults (60 s and 64 MiB held, 5 min and 64 MiB window,
// 1 GiB over all windows).
type Sessions struct {
	HeldAge           time.Duration
	HeldBytes         int64
	WindowAge         time.Duration
	WindowBytes       int64
	WindowGlobalBytes int64
}

// NodeSettings are a sender node's settings. Empty strings and nil numbers
// are unset.
type NodeSettings struct {
	Event     string
	Encoder   string
	Wire      string
	PartSize  *int64
	PartLen   *int64
	NodeLabel string
	Format    string
}

// Inputs returns the set settings as node inputs, keyed by input name
// (event, encoder, wire, part_size, partlen, nodelabel, format).
func (s NodeSettings) Inputs() map[string]any {
	m := map[string]any{}
	for _, kv := range []struct {
		name, value string
	}{{"event", s.Event}, {"encoder", s.Encoder}, {"wire", s.Wire}, {"nodelabel", s.NodeLabel}, {"format", s.Format}} {
		if kv.value != "" {
			m[kv.name] = kv.value
		}
	}
	if s.PartSize != nil {
		m["part_size"] = *s.PartSize
	}
	if s.PartLen != nil {
		m["partlen"] = *s.PartLen
	}
	return m
}

// Workflow is a named ComfyUI API-format prompt with per-node settings.
type Workflow struct {
	Name   string
	File   string         // the resolved path of its JSON file
	Prompt map[string]any // the decoded prompt (numbers as json.Number)
	Nodes  map[string]NodeSettings
}

// NodeInputs returns each node's settings (by node id or title) as the
// inputs they set, the shape the executor's Workflow.Nodes takes. config
// does not import the executor: the YAML parser needs none of its plugin
// machinery.
func (w *Workflow) NodeInputs() map[string]map[string]any {
	nodes := make(map[string]map[string]any, len(w.Nodes))
	for k, s := range w.Nodes {
		nodes[k] = s.Inputs()
	}
	return nodes
}

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default configuration's text.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Default returns the embedded configuration: the built-in node packs, no
// plugin folder, no workflows. Its paths are relative to the working folder.
// Each call returns a new Config the caller may change.
//
// The embedded file is part of the source, so a broken one is a bug of this
// package, as a bad regexp literal is: it panics with the *Error, at init,
// so that every program and test importing config fails at once rather
// than a host running on a configuration nobody wrote.
func Default() *Config {
	c, err := Parse("default.yaml", defaultYAML, "")
	if err != nil {
		panic(err)
	}
	return c
}

func init() { Default() }

// Load reads and parses a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Reason: "cannot read: " + errReason(err)}
	}
	return Parse(path, data, filepath.Dir(path))
}

// Parse parses a configuration named name (for errors); relative paths in it
// are resolved against baseDir ("" = the working folder).
func Parse(name string, data []byte, baseDir string) (*Config, error) {
	p := &parser{file: name, baseDir: baseDir}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, p.yamlError(err)
	}
	c := &Config{File: name, Workflows: map[string]*Workflow{}}
	if doc.Kind == 0 || len(doc.Content) == 0 { // an empty file
		return c, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return c, nil
	}
	err := p.mapping(root, "", map[string]func(string, *yaml.Node) error{
		"listen":  func(k string, n *yaml.Node) error { return p.str(n, k, &c.Listen) },
		"plugins": func(k string, n *yaml.Node) error { return p.path(n, k, &c.Plugins) },
		"input_dir": func(k string, n *yaml.Node) error {
			return p.path(n, k, &c.InputDir)
		},
		"output_dir": func(k string, n *yaml.Node) error {
			return p.path(n, k, &c.OutputDir)
		},
		"temp_dir": func(k string, n *yaml.Node) error {
			return p.path(n, k, &c.TempDir)
		},
		"message_limit": func(k string, n *yaml.Node) error {
			v, err := p.nonNegative(n, k)
			if err == nil && v > 0 && v < 1024 {
				return p.errAt(n, k, fmt.Sprintf("%d is too small to carry any message (want 0 for the default, or at least 1024)", v))
			}
			c.MessageLimit = int(v)
			return err
		},
		"max_body_bytes": func(k string, n *yaml.Node) error {
			v, err := p.nonNegative(n, k)
			c.MaxBodyBytes = v
			return err
		},
		"defaults":  func(k string, n *yaml.Node) error { return p.settings(n, k, &c.Defaults) },
		"sessions":  func(k string, n *yaml.Node) error { return p.sessions(n, k, &c.Sessions) },
		"websocket": func(k string, n *yaml.Node) error { return p.websocket(n, k, &c.WebSocket) },
		"limits":    func(k string, n *yaml.Node) error { return p.limits(n, k, &c.Limits) },
		"cache":     func(k string, n *yaml.Node) error { return p.cache(n, k, &c.Cache) },
		"cluster": func(k string, n *yaml.Node) error {
			return p.mapping(n, k, map[string]func(string, *yaml.Node) error{
				"nats":     func(k string, v *yaml.Node) error { return p.str(v, k, &c.Cluster.NATS) },
				"ack_wait": func(k string, v *yaml.Node) error { return p.duration(v, k, &c.Cluster.AckWait) },
				"workers": func(k string, v *yaml.Node) error {
					var w int
					if err := v.Decode(&w); err != nil || w < -1 {
						return p.errAt(v, k, fmt.Sprintf("%q: want -1 (none), 0 (one) or a positive count", v.Value))
					}
					c.Cluster.Workers = w
					return nil
				},
			})
		},
		"http": func(k string, n *yaml.Node) error { return p.http(n, k, &c.HTTP) },
		"sensitive_extra_data_keys": func(k string, n *yaml.Node) error {
			return p.strings(n, k, &c.SensitiveExtraDataKeys)
		},
		"workflows": func(k string, n *yaml.Node) error {
			return p.eachKey(n, k, func(name string, key string, wn *yaml.Node) error {
				w, err := p.workflow(name, key, wn)
				if err != nil {
					return err
				}
				c.Workflows[name] = w
				return nil
			})
		},
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// parser walks the YAML tree, so every error can name its key and line.
type parser struct {
	file    string
	baseDir string
}

func (p *parser) errAt(n *yaml.Node, key, reason string) *Error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: p.file, Key: key, Line: line, Reason: reason}
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlError turns a YAML syntax error into an *Error with its line.
func (p *parser) yamlError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: p.file, Reason: "bad YAML: " + msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
	}
	return e
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// eachKey calls f for every key of a mapping, refusing duplicates.
func (p *parser) eachKey(n *yaml.Node, key string, f func(name, key string, v *yaml.Node) error) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return p.errAt(n, key, "want a mapping of keys to values")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return p.errAt(k, key, "keys must be plain strings")
		}
		if seen[k.Value] {
			return p.errAt(k, join(key, k.Value), "duplicate key")
		}
		seen[k.Value] = true
		if err := f(k.Value, join(key, k.Value), v); err != nil {
			return err
		}
	}
	return nil
}

// mapping decodes a mapping with a fixed set of keys; any other key is an error.
func (p *parser) mapping(n *yaml.Node, key string, fields map[string]func(key string, v *yaml.Node) error) error {
	return p.eachKey(n, key, func(name, k string, v *yaml.Node) error {
		f, ok := fields[name]
		if !ok {
			known := make([]string, 0, len(fields))
			for f := range fields {
				known = append(known, f)
			}
			sort.Strings(known)
			return p.errAt(v, k, fmt.Sprintf("unknown key %q (known keys here: %s)", name, strings.Join(known, ", ")))
		}
		return f(k, v)
	})
}

func (p *parser) str(n *yaml.Node, key string, dst *string) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || (n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float") {
		return p.errAt(n, key, fmt.Sprintf("want a string, got %s", describe(n)))
	}
	*dst = n.Value
	return nil
}

// path reads a path and resolves it against the config file's folder.
func (p *parser) path(n *yaml.Node, key string, dst *string) error {
	var s string
	if err := p.str(n, key, &s); err != nil {
		return err
	}
	*dst = p.resolve(s)
	return nil
}

func (p *parser) resolve(s string) string {
	if s == "" {
		return ""
	}
	if filepath.IsAbs(s) || p.baseDir == "" {
		return filepath.Clean(s)
	}
	return filepath.Join(p.baseDir, s)
}

func (p *parser) nonNegative(n *yaml.Node, key string) (int64, error) {
	var v int64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		return 0, p.errAt(n, key, fmt.Sprintf("want a whole number, got %s", describe(n)))
	}
	if v < 0 {
		return 0, p.errAt(n, key, fmt.Sprintf("%d is negative", v))
	}
	return v, nil
}

// websocket decodes the websocket section.
func (p *parser) websocket(n *yaml.Node, key string, ws *WebSocket) error {
	return p.mapping(n, key, map[string]func(string, *yaml.Node) error{
		"token":           func(k string, v *yaml.Node) error { return p.str(v, k, &ws.Token) },
		"allowed_origins": func(k string, v *yaml.Node) error { return p.strings(v, k, &ws.AllowedOrigins) },
		"allowed_hosts":   func(k string, v *yaml.Node) error { return p.strings(v, k, &ws.AllowedHosts) },
		"queue_bytes": func(k string, v *yaml.Node) error {
			b, err := p.nonNegative(v, k)
			if err == nil && b > 0 && b < 1<<20 {
				return p.errAt(v, k, fmt.Sprintf("%d is too small to hold one part (want 0 for the default, or at least 1048576)", b))
			}
			ws.QueueBytes = b
			return err
		},
		"on_duplicate_client_id": func(k string, v *yaml.Node) error {
			if err := p.str(v, k, &ws.OnDuplicateClientID); err != nil {
				return err
			}
			if ws.OnDuplicateClientID != "replace" && ws.OnDuplicateClientID != "refuse" {
				return p.errAt(v, k, fmt.Sprintf("%q is not replace or refuse", ws.OnDuplicateClientID))
			}
			return nil
		},
	})
}

// sessions decodes the sessions section.
func (p *parser) sessions(n *yaml.Node, key string, s *Sessions) error {
	// A window must hold a few messages of the default 4 MiB limit: a resume
	// client is evicted half a window behind.
	size := func(dst *int64, least int64, why string) func(string, *yaml.Node) error {
		return func(k string, v *yaml.Node) error {
			b, err := p.nonNegative(v, k)
			if err == nil && b > 0 && b < least {
				return p.errAt(v, k, fmt.Sprintf("%d is too small %s (want 0 for the default, or at least %d)", b, why, least))
			}
			*dst = b
			return err
		}
	}
	const window = 16 << 20
	return p.mapping(n, key, map[string]func(string, *yaml.Node) error{
		"held_age":            func(k string, v *yaml.Node) error { return p.duration(v, k, &s.HeldAge) },
		"held_bytes":          size(&s.HeldBytes, 1<<20, "to hold one part"),
		"window_age":          func(k string, v *yaml.Node) error { return p.duration(v, k, &s.WindowAge) },
		"window_bytes":        size(&s.WindowBytes, window, "to replay a few 4 MiB messages"),
		"window_global_bytes": size(&s.WindowGlobalBytes, window, "to replay a few 4 MiB messages"),
	})
}

// duration reads a non-negative Go duration ("60s", "5m").
func (p *parser) duration(n *yaml.Node, key string, dst *time.Duration) error {
	var s string
	if n.Kind != yaml.ScalarNode || n.Decode(&s) != nil {
		return p.errAt(n, key, fmt.Sprintf("want a duration such as 60s or 5m, got %s", describe(n)))
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return p.errAt(n, key, fmt.Sprintf("%q is not a non-negative duration such as 60s or 5m", s))
	}
	*dst = d
	return nil
}

// strings reads a list of non-empty strings.
func (p *parser) strings(n *yaml.Node, key string, dst *[]string) error {
	if n.Kind != yaml.SequenceNode {
		return p.errAt(n, key, fmt.Sprintf("want a list of strings, got %s", describe(n)))
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		var s string
		k := fmt.Sprintf("%s[%d]", key, i)
		if err := p.str(item, k, &s); err != nil {
			return err
		}
		if s == "" {
			return p.errAt(item, k, "empty string")
		}
		out = append(out, s)
	}
	*dst = out
	return nil
}

// settings decodes a sender node's settings and checks each.
func (p *parser) settings(n *yaml.Node, key string, s *NodeSettings) error {
	return p.mapping(n, key, map[string]func(string, *yaml.Node) error{
		"event": func(k string, v *yaml.Node) error {
			if err := p.str(v, k, &s.Event); err != nil {
				return err
			}
			if err := protocol.ValidateEventName(s.Event); err != nil {
				return p.errAt(v, k, "bad event name: "+strings.TrimPrefix(err.Error(), "protocol: "))
			}
			return nil
		},
		"encoder": func(k string, v *yaml.Node) error {
			if err := p.str(v, k, &s.Encoder); err != nil {
				return err
			}
			if s.Encoder == "" {
				return p.errAt(v, k, "empty encoder name")
			}
			return nil
		},
		"wire": func(k string, v *yaml.Node) error {
			if err := p.str(v, k, &s.Wire); err != nil {
				return err
			}
			if _, err := protocol.ParseWire(s.Wire); err != nil {
				return p.errAt(v, k, fmt.Sprintf("unknown wire %q (want comfy, b64parts or parts)", s.Wire))
			}
			return nil
		},
		"part_size": func(k string, v *yaml.Node) error {
			x, err := p.nonNegative(v, k)
			s.PartSize = &x
			return err
		},
		"partlen": func(k string, v *yaml.Node) error {
			x, err := p.nonNegative(v, k)
			s.PartLen = &x
			return err
		},
		"nodelabel": func(k string, v *yaml.Node) error { return p.str(v, k, &s.NodeLabel) },
		"format":    func(k string, v *yaml.Node) error { return p.str(v, k, &s.Format) },
	})
}

// workflow decodes a workflow entry, reads its JSON file and checks that
// every node key names a node of it.
func (p *parser) workflow(name, key string, n *yaml.Node) (*Workflow, error) {
	w := &Workflow{Name: name, Nodes: map[string]NodeSettings{}}
	var nodesNode *yaml.Node
	var fileNode *yaml.Node
	err := p.mapping(n, key, map[string]func(string, *yaml.Node) error{
		"file": func(k string, v *yaml.Node) error {
			fileNode = v
			return p.path(v, k, &w.File)
		},
		"nodes": func(k string, v *yaml.Node) error {
			nodesNode = v
			return p.eachKey(v, k, func(nodeKey, k2 string, sn *yaml.Node) error {
				var s NodeSettings
				if err := p.settings(sn, k2, &s); err != nil {
					return err
				}
				w.Nodes[nodeKey] = s
				return nil
			})
		},
	})
	if err != nil {
		return nil, err
	}
	if fileNode == nil || w.File == "" {
		return nil, p.errAt(n, join(key, "file"), "missing: every workflow needs the ComfyUI API-format JSON file it runs")
	}
	prompt, reason := readPrompt(w.File)
	if reason != "" {
		return nil, p.errAt(fileNode, join(key, "file"), reason)
	}
	w.Prompt = prompt
	ids, titles := map[string]bool{}, map[string]bool{}
	for id, v := range prompt {
		ids[id] = true
		if meta, ok := v.(map[string]any)["_meta"].(map[string]any); ok {
			if t, ok := meta["title"].(string); ok && t != "" {
				titles[t] = true
			}
		}
	}
	if nodesNode != nil {
		for i := 0; i+1 < len(nodesNode.Content); i += 2 {
			k := nodesNode.Content[i]
			if !ids[k.Value] && !titles[k.Value] {
				return nil, p.errAt(k, join(join(key, "nodes"), k.Value), fmt.Sprintf(
					"matches neither a node id nor a _meta.title in %s (ids: %s; titles: %s)",
					w.File, listKeys(ids), listKeys(titles)))
			}
		}
	}
	return w, nil
}

// readPrompt reads an API-format prompt, or says why it cannot.
func readPrompt(path string) (map[string]any, string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Sprintf("cannot read workflow file: %s", errReason(err))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Sprintf("%s is not valid JSON: %v", path, err)
	}
	if dec.More() {
		return nil, fmt.Sprintf("%s holds more than one JSON value", path)
	}
	prompt, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Sprintf("%s is not a JSON object of nodes (ComfyUI's API format)", path)
	}
	if _, hasNodes := prompt["nodes"].([]any); hasNodes {
		if _, hasLinks := prompt["links"]; hasLinks {
			return nil, fmt.Sprintf("%s is a UI-format workflow; export it with \"Export (API)\" to get the API format", path)
		}
	}
	if len(prompt) == 0 {
		return nil, fmt.Sprintf("%s has no nodes", path)
	}
	for _, id := range slicesSorted(maps.Keys(prompt)) {
		node, ok := prompt[id].(map[string]any)
		if !ok {
			return nil, fmt.Sprintf("%s: node %q is not an object", path, id)
		}
		if ct, ok := node["class_type"].(string); !ok || ct == "" {
			return nil, fmt.Sprintf("%s: node %q has no class_type (is it ComfyUI's API format?)", path, id)
		}
		if in, has := node["inputs"]; has {
			if _, ok := in.(map[string]any); !ok {
				return nil, fmt.Sprintf("%s: node %q: inputs is not an object", path, id)
			}
		}
	}
	return prompt, ""
}

func slicesSorted(seq func(func(string) bool)) []string {
	var out []string
	for k := range seq {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func listKeys(m map[string]bool) string {
	if len(m) == 0 {
		return "none"
	}
	ks := slicesSorted(maps.Keys(m))
	for i, k := range ks {
		ks[i] = strconv.Quote(k)
	}
	return strings.Join(ks, ", ")
}

// describe names a YAML value for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported value"
}

// errReason strips the Go operation prefix of a file error.
func errReason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// limits decodes the limits section.
func (p *parser) limits(n *yaml.Node, key string, l *Limits) error {
	atLeast := func(dst *int64, min int64, what string) func(string, *yaml.Node) error {
		return func(k string, v *yaml.Node) error {
			b, err := p.nonNegative(v, k)
			if err == nil && b > 0 && b < min {
				return p.errAt(v, k, fmt.Sprintf("%d is too small %s (want 0 for the default, or at least %d)", b, what, min))
			}
			*dst = b
			return err
		}
	}
	duration := func(dst *time.Duration) func(string, *yaml.Node) error {
		return func(k string, v *yaml.Node) error {
			var s string
			if err := p.str(v, k, &s); err != nil {
				return err
			}
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				return p.errAt(v, k, fmt.Sprintf("want a duration such as 60s or 2m, got %q", s))
			}
			*dst = d
			return nil
		}
	}
	return p.mapping(n, key, map[string]func(string, *yaml.Node) error{
		"history_bytes":       atLeast(&l.HistoryBytes, 1<<20, "to hold any history"),
		"history_value_bytes": atLeast(&l.HistoryValueBytes, 256, "for a placeholder"),
		"prompt_tensor_bytes": atLeast(&l.PromptTensorBytes, 1<<20, "to hold one image"),
		"breaker_restarts": func(k string, v *yaml.Node) error {
			b, err := p.nonNegative(v, k)
			l.BreakerRestarts = int(b)
			return err
		},
		"breaker_window":   duration(&l.BreakerWindow),
		"breaker_cooldown": duration(&l.BreakerCooldown),
	})
}

// cache decodes the cache section: bytes (at least 1 MiB, or 0 for the
// default) and none.
func (p *parser) cache(n *yaml.Node, key string, c *Cache) error {
	return p.mapping(n, key, map[string]func(string, *yaml.Node) error{
		"bytes": func(k string, v *yaml.Node) error {
			b, err := p.nonNegative(v, k)
			if err == nil && b > 0 && b < 1<<20 {
				return p.errAt(v, k, fmt.Sprintf("%d is too small to hold an image (want 0 for the default, or at least %d)", b, 1<<20))
			}
			c.Bytes = b
			return err
		},
		"none": func(k string, v *yaml.Node) error {
			if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
				return p.errAt(v, k, "want true or false")
			}
			c.None = v.Value == "true"
			return nil
		},
	})
}

// http decodes the http section.
func (p *parser) http(n *yaml.Node, key string, h *HTTP) error {
	return p.mapping(n, key, map[string]func(string, *yaml.Node) error{
		"enable_cors_header": func(k string, v *yaml.Node) error {
			if err := p.str(v, k, &h.EnableCORSHeader); err != nil {
				return err
			}
			if reason := CheckOrigin(h.EnableCORSHeader); reason != "" {
				return p.errAt(v, k, reason)
			}
			return nil
		},
	})
}

// CheckOrigin returns why origin is not "*" or a browser origin
// "scheme://host[:port]" (http or https, no path), or "" when it is.
func CheckOrigin(origin string) string {
	if origin == "*" {
		return ""
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Sprintf("%q is not * or an origin such as https://app.example:8080 (scheme, host, optional port)", origin)
	}
	return ""
}
