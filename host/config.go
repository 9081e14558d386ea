package host

import (
	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/hub"
)

// ConfigOptions returns the Options that `nodecast serve` runs with for cfg:
// the built-in pack served by this binary, and cfg's plugin folder, input
// folder, limits, workflows, sender defaults and WebSocket access rules. Callers override fields
// after, as the command line does.
func ConfigOptions(cfg *config.Config) Options {
	return Options{
		Packs:        []PackSource{SelfPack("builtin")},
		PluginDir:    cfg.Plugins,
		InputDir:     cfg.InputDir,
		OutputDir:    cfg.OutputDir,
		TempDir:      cfg.TempDir,
		MessageLimit: cfg.MessageLimit,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Workflows:    executorWorkflows(cfg),
		Defaults:     cfg.Defaults.Inputs(),
		Hub: hub.Options{
			Token:          cfg.WebSocket.Token,
			AllowedOrigins: cfg.WebSocket.AllowedOrigins,
			AllowedHosts:   cfg.WebSocket.AllowedHosts,
			QueueBytes:     cfg.WebSocket.QueueBytes,
			// Client sessions (takeover, held messages, resume window).
			OnDuplicateClientID: cfg.WebSocket.OnDuplicateClientID,
			Sessions: hub.SessionOptions{
				HeldAge: cfg.Sessions.HeldAge, HeldBytes: cfg.Sessions.HeldBytes,
				WindowAge: cfg.Sessions.WindowAge, WindowBytes: cfg.Sessions.WindowBytes,
				WindowGlobal: cfg.Sessions.WindowGlobalBytes,
			},
		},
		Listen:            cfg.Listen,
		HistoryBytes:      cfg.Limits.HistoryBytes,
		HistoryValueBytes: int(cfg.Limits.HistoryValueBytes),
		PromptTensorBytes: cfg.Limits.PromptTensorBytes,
		BreakerRestarts:   cfg.Limits.BreakerRestarts,
		BreakerWindow:     cfg.Limits.BreakerWindow,
		BreakerCooldown:   cfg.Limits.BreakerCooldown,
		CacheBytes:        cfg.Cache.CacheBytes(),
		SensitiveKeys:     cfg.SensitiveExtraDataKeys,
		CORSOrigin:        cfg.HTTP.EnableCORSHeader,
	}
}

// executorWorkflows returns cfg's workflows in the executor's terms; the
// conversion lives here so that host/config need not import the executor.
func executorWorkflows(cfg *config.Config) map[string]executor.Workflow {
	out := make(map[string]executor.Workflow, len(cfg.Workflows))
	for name, w := range cfg.Workflows {
		out[name] = executor.Workflow{Prompt: w.Prompt, Nodes: w.NodeInputs()}
	}
	return out
}
