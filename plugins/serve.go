package plugins

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// PackEnv names the environment variable that makes a binary serve one of its
// built-in packs instead of doing its usual job; see ServeSelfPack.
const PackEnv = "NODECAST_SERVE_PACK"

// Serve serves p as a plugin and returns when the host closes the connection.
// It is all a plugin binary's main does. Run by hand rather than by a host, or
// with an invalid pack, it prints why to stderr and exits with status 1, as
// go-plugin's own Serve does.
func Serve(p Pack) {
	cfg, err := serveConfig(p)
	if err != nil {
		// "[ERROR]" makes go-plugin log the line at error level on the host.
		fmt.Fprintf(os.Stderr, "[ERROR] %v\n", err)
		os.Exit(1)
	}
	plugin.Serve(cfg)
}

// serveConfig returns the go-plugin configuration Serve uses. It validates p.
func serveConfig(p Pack) (*plugin.ServeConfig, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         plugin.PluginSet{pluginName: &nodePackPlugin{Pack: p}},
		GRPCServer:      newGRPCServer,
		// JSON lines keep their level on the host; go-plugin's own debug
		// chatter stays in the plugin.
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "nodepack",
			Level:      hclog.Info,
			Output:     os.Stderr,
			JSONFormat: true,
		}),
	}, nil
}

// newGRPCServer raises gRPC's 4 MiB default receive limit, which go-plugin
// leaves in place on the plugin side, so that a large input or part fails only
// past maxMessageBytes. Tensors are streamed in chunks regardless.
func newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.MaxRecvMsgSize(maxMessageBytes), grpc.MaxSendMsgSize(maxMessageBytes))
	return plugin.DefaultGRPCServer(opts)
}

// ServeSelfPack lets one binary carry built-in packs and run each as its own
// plugin process. When PackEnv names one of packs, it serves that pack and
// returns true, and the caller's main should then exit; when PackEnv is unset
// it returns false at once. When PackEnv names none of packs, it prints why to
// stderr and exits with status 1. Call it first thing in main, or in TestMain.
func ServeSelfPack(packs ...Pack) bool {
	name := os.Getenv(PackEnv)
	if name == "" {
		return false
	}
	names := make([]string, 0, len(packs))
	for _, p := range packs {
		if p.Name == name {
			Serve(p)
			return true
		}
		names = append(names, strconv.Quote(p.Name))
	}
	fmt.Fprintf(os.Stderr, "[ERROR] plugins: %s=%q names none of this binary's packs (%s)\n",
		PackEnv, name, strings.Join(names, ", "))
	os.Exit(1)
	return true
}

// SelfPackCommand returns a command that runs this executable as the plugin
// serving its built-in pack name (see ServeSelfPack), for ProcessConfig.Cmd.
// Its Env holds only PackEnv: Start adds the host's environment before it.
func SelfPackCommand(name string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("plugins: find own executable: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = []string{PackEnv + "=" + name}
	return cmd, nil
}
