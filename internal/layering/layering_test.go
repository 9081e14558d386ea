package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/nodecast/nodecast"

// A rule constrains what the module's packages matching Who may depend on,
// directly or not. With Allow set, every dependency inside the module must
// match one of its patterns; every dependency matching Deny is refused.
// Patterns are module-relative: "x/..." is x and everything under it, else
// the exact package. Why says where the rule is written.
type rule struct {
	Who, Except []string
	Allow, Deny []string
	Why         string
}

// testSupport are the packages only tests may import.
var testSupport = []string{"internal/...", "host/internal/executortest", "host/internal/testclient", "host/internal/hosttest", "host/internal/logbuf"}

var rules = []rule{
	// DESIGN.md, "Dependency direction".
	{Who: []string{"protocol/..."}, Allow: []string{"protocol/..."},
		Why: "DESIGN.md: protocol imports no package of this module"},
	{Who: []string{"sendimage/..."}, Allow: []string{"sendimage/...", "protocol/..."},
		Why: "DESIGN.md: sendimage imports only protocol"},
	{Who: []string{"plugins/..."}, Allow: []string{"plugins/...", "sendimage/...", "protocol/..."},
		Why: "DESIGN.md: plugins imports protocol and sendimage, never host"},
	{Who: []string{"host/..."}, Except: append([]string{"host/cmd/..."}, testSupport...),
		Allow: []string{"host/...", "protocol/...", "plugins", "plugins/internal/...", "sendimage/..."},
		Why:   "DESIGN.md: host imports protocol and plugins (the bridge), never a node's implementation (plugins/builtin, examples)"},
	{Who: []string{"host/cmd/..."}, Allow: []string{"host/...", "protocol/...", "plugins/...", "sendimage/..."},
		Why: "DESIGN.md: the nodecast binary serves the built-in pack itself, and imports nothing else of the module outside host"},
	{Who: []string{"client/..."}, Allow: []string{"client/...", "protocol/..."},
		Why: "DESIGN.md: client imports only protocol"},
	{Who: []string{"..."}, Except: testSupport, Deny: testSupport,
		Why: "test support is for tests: no package of the product may import it"},

	// The doc.go promises of single packages.
	{Who: []string{"host/web", "host/stream", "plugins/internal/hclogslog"}, Allow: []string{},
		Why: "their doc.go: they import nothing of this module"},
	{Who: []string{"host/hub"}, Allow: []string{"protocol/...", "host/stream"},
		Why: "host/hub/doc.go: hub imports protocol and host/stream only, never plugins or sendimage"},
	{Who: []string{"host/supervisor"}, Allow: []string{"protocol/...", "plugins", "plugins/internal/..."},
		Why: "host/supervisor/doc.go: it imports protocol and the plugins bridge"},
	{Who: []string{"host/config", "host/executor", "host/internal/executortest"}, Deny: []string{"sendimage/...", "plugins/builtin/..."},
		Why: "their doc.go: never sendimage or a node implementation"},
	{Who: []string{"host/metrics"}, Deny: []string{"sendimage/...", "plugins/builtin/...", "host"},
		Why: "host/metrics/doc.go: never sendimage, a node implementation, nor the host package itself"},
	{Who: []string{"host/api"}, Deny: []string{"plugins/builtin/..."},
		Why: "host/api/doc.go: never a node implementation (sendimage only to re-encode /view previews)"},
	{Who: []string{"plugins/builtin/..."}, Allow: []string{"plugins/...", "sendimage/...", "protocol/..."},
		Why: "plugins/builtin/doc.go: protocol, plugins and sendimage, never host"},
}

// pkg is one package as `go list -json` describes it.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// match reports whether the module-relative path p matches pattern.
func match(pattern, p string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

func matchAny(patterns []string, p string) bool {
	return slices.ContainsFunc(patterns, func(pat string) bool { return match(pat, p) })
}

// violations returns one line per dependency that breaks a rule, with the
// import chain that brings it in. A package that breaks a rule only because
// a package it imports breaks the same rule is not reported again: the line
// names the package where the fault is.
func violations(pkgs []pkg, rules []rule) []string {
	byPath := map[string]pkg{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	type fault struct {
		rule     int
		from, to string // import paths
	}
	faults := map[fault]bool{}
	var order []fault
	for _, p := range pkgs {
		from, ok := strings.CutPrefix(p.ImportPath, module+"/")
		if !ok {
			continue
		}
		for ri, r := range rules {
			if !matchAny(r.Who, from) || matchAny(r.Except, from) {
				continue
			}
			for _, d := range p.Deps {
				to, ok := strings.CutPrefix(d, module+"/")
				if ok && ((r.Allow != nil && !matchAny(r.Allow, to)) || matchAny(r.Deny, to)) {
					f := fault{ri, p.ImportPath, d}
					faults[f] = true
					order = append(order, f)
				}
			}
		}
	}
	var out []string
	for _, f := range order {
		inherited := slices.ContainsFunc(byPath[f.from].Imports, func(i string) bool {
			return faults[fault{f.rule, i, f.to}]
		})
		if !inherited {
			out = append(out, fmt.Sprintf("%s may not depend on %s (%s); import chain: %s",
				strings.TrimPrefix(f.from, module+"/"), strings.TrimPrefix(f.to, module+"/"),
				rules[f.rule].Why, strings.Join(chain(byPath, f.from, f.to), " -> ")))
		}
	}
	return out
}

// chain returns the shortest import chain from one package to another, both
// in byPath, with the module prefix cut off.
func chain(byPath map[string]pkg, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == to {
			var c []string
			for ; p != ""; p = prev[p] {
				c = append(c, strings.TrimPrefix(p, module+"/"))
			}
			slices.Reverse(c)
			return c
		}
		for _, i := range byPath[p].Imports {
			if _, seen := prev[i]; !seen {
				prev[i] = p
				queue = append(queue, i)
			}
		}
	}
	return []string{strings.TrimPrefix(from, module+"/"), "...", strings.TrimPrefix(to, module+"/")}
}

// TestDependencyDirection reads every package of the module, and everything
// they depend on, from the go command, and checks each rule.
func TestDependencyDirection(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the module's packages: %v", err)
	}
	// -deps lists the module's packages and all their dependencies, so that
	// chain can walk through every import; test files are not read: tests may
	// import anything.
	cmd := exec.Command(goTool, "list", "-deps", "-json=ImportPath,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	// Guard against a listing that silently lost the module (a wrong
	// pattern would make every rule pass).
	for _, want := range []string{"protocol", "sendimage", "plugins", "plugins/builtin", "host", "host/api", "client"} {
		if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.ImportPath == module+"/"+want }) {
			t.Fatalf("go list did not list %s/%s", module, want)
		}
	}
	for _, v := range violations(pkgs, rules) {
		t.Error(v)
	}
}

// TestViolationNamesTheChain shows that a broken rule is reported, with the
// chain of imports that brings the forbidden package in, once, at the
// package where the fault is: host and host/api break the host rule only
// through host/executor, but host/api's own rule names its whole chain.
func TestViolationNamesTheChain(t *testing.T) {
	m := func(p string) string { return module + "/" + p }
	pkgs := []pkg{
		{ImportPath: m("host"), Imports: []string{m("host/executor")}, Deps: []string{"fmt", m("host/executor"), m("plugins"), m("plugins/builtin"), m("protocol")}},
		{ImportPath: m("host/api"), Imports: []string{m("host/executor")}, Deps: []string{m("host/executor"), m("plugins"), m("plugins/builtin"), m("protocol")}},
		{ImportPath: m("host/executor"), Imports: []string{"fmt", m("plugins/builtin")}, Deps: []string{"fmt", m("plugins"), m("plugins/builtin"), m("protocol")}},
		{ImportPath: m("plugins/builtin"), Imports: []string{m("plugins")}, Deps: []string{m("plugins"), m("protocol")}},
		{ImportPath: m("plugins"), Imports: []string{m("protocol")}, Deps: []string{m("protocol")}},
		{ImportPath: m("protocol")},
	}
	why := func(who string) string {
		for _, r := range rules {
			if slices.Contains(r.Who, who) {
				return r.Why
			}
		}
		t.Fatalf("no rule for %s", who)
		return ""
	}
	got := violations(pkgs, rules)
	want := []string{
		"host/api may not depend on plugins/builtin (" + why("host/api") + "); import chain: host/api -> host/executor -> plugins/builtin",
		"host/executor may not depend on plugins/builtin (" + why("host/...") + "); import chain: host/executor -> plugins/builtin",
		"host/executor may not depend on plugins/builtin (" + why("host/executor") + "); import chain: host/executor -> plugins/builtin",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v := violations(pkgs[3:], rules); len(v) != 0 {
		t.Fatalf("the lawful packages broke rules: %v", v)
	}
}
