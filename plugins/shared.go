package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/nodecast/nodecast/protocol/pluginpb"
)

// handshake is shared by the host and every plugin binary. The cookie is not
// security (checksums and AutoMTLS are); it stops a plugin binary run by hand
// from waiting silently for a host that is not there.
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "NODECAST_PLUGIN",
	MagicCookieValue: "6e3e44087701b2b99ba84a6e736272012347d9eb2f8e1d85",
}

// pluginName is the one plugin a nodecast plugin binary serves.
const pluginName = "nodepack"

// pluginMap is the plugin set the host dispenses from; Dispense(pluginName)
// returns a *PackClient. Plugin binaries serve the same key with a Pack.
// The wiring is unexported: a host starts plugins with Start, a plugin
// binary serves with Serve.
var pluginMap = map[string]plugin.Plugin{pluginName: &nodePackPlugin{}}

// nodePackPlugin is the go-plugin binding of the NodePack gRPC service. On the
// plugin side it serves Pack; on the host side it dispenses a *PackClient.
type nodePackPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Pack Pack // served by GRPCServer; unused on the host side

	mu     sync.Mutex
	server *packServer
}

// GRPCServer registers the NodePack service for Pack.
func (p *nodePackPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	srv, err := newPackServer(p.Pack)
	if err != nil {
		return err
	}
	pluginpb.RegisterNodePackServer(s, srv)
	p.mu.Lock()
	p.server = srv
	p.mu.Unlock()
	return nil
}

// GRPCClient returns a *PackClient. go-plugin cancels ctx when the plugin
// process exits, which the client reports as ErrUnavailable.
func (p *nodePackPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return newPackClient(ctx, c), nil
}

// Stored reports how many tensors the served pack holds and their total bytes:
// a gauge for leaks, since tensors live until the host releases them. It is
// zero on the host side and before GRPCServer ran.
func (p *nodePackPlugin) Stored() (tensors int, bytes int64) {
	p.mu.Lock()
	srv := p.server
	p.mu.Unlock()
	if srv == nil {
		return 0, 0
	}
	return srv.store.stats()
}

// Validate checks what Serve relies on: a name, and node classes that are
// non-nil, named, unique, with named unique inputs whose options encode as JSON.
func (p Pack) Validate() error {
	_, err := describePack(p)
	return err
}

// describePack validates p and builds its Describe answer once, so every
// Describe returns the same specs and Spec runs once per node.
func describePack(p Pack) (*pluginpb.DescribeResponse, error) {
	bad := func(reason string) error { return &PackError{Pack: p.Name, Reason: reason} }
	if p.Name == "" {
		return nil, bad("empty name")
	}
	resp := &pluginpb.DescribeResponse{Pack: p.Name}
	seen := make(map[string]bool, len(p.Nodes))
	for i, n := range p.Nodes {
		if n == nil {
			return nil, bad("node " + strconv.Itoa(i) + " is nil")
		}
		s := n.Spec()
		if s.ClassType == "" {
			return nil, bad("node " + strconv.Itoa(i) + " has an empty class type")
		}
		if seen[s.ClassType] {
			return nil, bad("class type " + strconv.Quote(s.ClassType) + " appears twice")
		}
		seen[s.ClassType] = true
		ns, err := specToProto(s)
		if err != nil {
			return nil, bad(err.Error())
		}
		resp.Nodes = append(resp.Nodes, ns)
	}
	return resp, nil
}

func specToProto(s Spec) (*pluginpb.NodeSpec, error) {
	ns := &pluginpb.NodeSpec{
		ClassType:   s.ClassType,
		DisplayName: s.DisplayName,
		Category:    s.Category,
		Description: s.Description,
		OutputNode:  s.OutputNode,
	}
	inputs := make(map[string]bool, len(s.Inputs))
	for _, in := range s.Inputs {
		if in.Name == "" {
			return nil, errors.New(s.ClassType + " has an input with an empty name")
		}
		if inputs[in.Name] {
			return nil, errors.New(s.ClassType + " input " + strconv.Quote(in.Name) + " appears twice")
		}
		inputs[in.Name] = true
		var opts []byte
		if len(in.Options) > 0 {
			var err error
			if opts, err = json.Marshal(in.Options); err != nil {
				return nil, errors.New(s.ClassType + " input " + strconv.Quote(in.Name) + " options: " + err.Error())
			}
		}
		ns.Inputs = append(ns.Inputs, &pluginpb.InputSpec{
			Name: in.Name, Type: in.Type, Optional: in.Optional,
			Choices: in.Choices, OptionsJson: opts,
		})
	}
	for _, out := range s.Outputs {
		ns.Outputs = append(ns.Outputs, &pluginpb.OutputSpec{Name: out.Name, Type: out.Type})
	}
	return ns, nil
}

func specFromProto(ns *pluginpb.NodeSpec) (Spec, error) {
	s := Spec{
		ClassType:   ns.GetClassType(),
		DisplayName: ns.GetDisplayName(),
		Category:    ns.GetCategory(),
		Description: ns.GetDescription(),
		OutputNode:  ns.GetOutputNode(),
	}
	for _, in := range ns.GetInputs() {
		i := Input{Name: in.GetName(), Type: in.GetType(), Optional: in.GetOptional(), Choices: in.GetChoices()}
		if j := in.GetOptionsJson(); len(j) > 0 {
			if err := json.Unmarshal(j, &i.Options); err != nil {
				return s, &CallError{Op: "Describe", Kind: ErrProtocol,
					Reason: s.ClassType + " input " + strconv.Quote(i.Name) + " options: " + err.Error()}
			}
		}
		s.Inputs = append(s.Inputs, i)
	}
	for _, out := range ns.GetOutputs() {
		s.Outputs = append(s.Outputs, Output{Name: out.GetName(), Type: out.GetType()})
	}
	return s, nil
}
