package cluster

import "github.com/prometheus/client_golang/prometheus"

// Collectors returns the node's Prometheus metrics: prompts accepted and
// run by this host, redeliveries, and the lag of its message consumer.
func (n *Node) Collectors() []prometheus.Collector {
	counter := func(name, help string, f func(Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(n.Stats())) })
	}
	return []prometheus.Collector{
		counter("nodecast_cluster_prompts_accepted_total", "Prompts this host stored in the cluster's work queue.", func(s Stats) uint64 { return s.Accepted }),
		counter("nodecast_cluster_prompts_taken_total", "Prompts this host took from the work queue to run.", func(s Stats) uint64 { return s.Ran }),
		counter("nodecast_cluster_prompts_redelivered_total", "Prompts this host took that had been delivered before (their host died or stalled).", func(s Stats) uint64 { return s.Redelivered }),
		counter("nodecast_cluster_messages_relayed_total", "Messages of the cluster's message stream handed to this host's hub.", func(s Stats) uint64 { return s.Relayed }),
		counter("nodecast_cluster_messages_published_total", "NATS messages this host published to the message stream.", func(s Stats) uint64 { return s.Published }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nodecast_cluster_stream_lag", Help: "Messages of the message stream not yet handed to this host's hub."},
			func() float64 { return float64(n.Stats().Lag) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nodecast_cluster_connected", Help: "1 while the NATS connection is up."},
			func() float64 {
				if n.Connected() == nil {
					return 1
				}
				return 0
			}),
	}
}
