package main

import (
	"errors"
	"strings"

	"github.com/nodecast/nodecast/host/config"
)

// corsFlagName is ComfyUI's flag (comfy/cli_args.py: nargs="?", const="*").
const corsFlagName = "enable-cors-header"

// corsFlag is --enable-cors-header [ORIGIN]: given alone it means "*", as
// in ComfyUI; with a value, that origin.
type corsFlag struct {
	origin string
	set    bool
}

func (f *corsFlag) String() string { return f.origin }

// IsBoolFlag lets the flag stand alone; the flag package then calls
// Set("true").
func (f *corsFlag) IsBoolFlag() bool { return true }

func (f *corsFlag) Set(v string) error {
	if v == "true" {
		v = "*"
	}
	if reason := config.CheckOrigin(v); reason != "" {
		return errors.New(reason)
	}
	f.origin, f.set = v, true
	return nil
}

// corsFlagArgs joins "--enable-cors-header ORIGIN" into
// "--enable-cors-header=ORIGIN", as argparse reads an optional value: the
// next argument, unless it looks like a flag. The flag package alone would
// take ORIGIN for a stray argument.
func corsFlagArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if (a == "--"+corsFlagName || a == "-"+corsFlagName) && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			out = append(out, a+"="+args[i+1])
			i++
			continue
		}
		out = append(out, a)
	}
	return out
}
