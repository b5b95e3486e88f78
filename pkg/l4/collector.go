package l4

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the BPF counters and map pressure on each scrape, read
// from the pinned maps (summed over CPUs).
type Collector struct {
	m                                 *Manager
	svcPackets, svcBytes, svcFlows    *prometheus.Desc
	bePackets, beBytes, beFlows       *prometheus.Desc
	passed, mapEntries, mapMaxEntries *prometheus.Desc
	available                         *prometheus.Desc
	deniedPackets, deniedBytes        *prometheus.Desc
}

// NewCollector returns the collector for m's data path.
func NewCollector(m *Manager) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("edge_agent_l4_"+name, help, labels, nil)
	}
	return &Collector{
		m:             m,
		svcPackets:    d("service_packets_total", "Packets the eBPF balancer sent to a service's backends.", "service"),
		svcBytes:      d("service_bytes_total", "Bytes the eBPF balancer sent to a service's backends.", "service"),
		svcFlows:      d("service_new_flows_total", "New flows (connections) the eBPF balancer assigned, by service.", "service"),
		bePackets:     d("backend_packets_total", "Packets sent to a backend.", "backend"),
		beBytes:       d("backend_bytes_total", "Bytes sent to a backend.", "backend"),
		beFlows:       d("backend_new_flows_total", "New flows assigned to a backend.", "backend"),
		passed:        d("not_balanced_packets_total", "Packets the program left to the stack or dropped, by reason.", "reason"),
		mapEntries:    d("map_entries", "Entries in a BPF map.", "map"),
		mapMaxEntries: d("map_max_entries", "Capacity of a BPF map.", "map"),
		available:     d("datapath_available", "1 when the eBPF L4 data path is loaded."),
		// The XDP deny list pins in the same directory; read from its pins.
		deniedPackets: prometheus.NewDesc("edge_agent_xdp_denied_packets_total", "Packets the XDP deny list dropped, by rule.", []string{"cidr"}, nil),
		deniedBytes:   prometheus.NewDesc("edge_agent_xdp_denied_bytes_total", "Bytes the XDP deny list dropped, by rule.", []string{"cidr"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.svcPackets, c.svcBytes, c.svcFlows, c.bePackets, c.beBytes, c.beFlows, c.passed, c.mapEntries, c.mapMaxEntries, c.available, c.deniedPackets, c.deniedBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	// The deny list runs with or without L4 services.
	if rules, err := ReadDenyStats(c.m.pinDir); err == nil {
		for _, r := range rules {
			ch <- prometheus.MustNewConstMetric(c.deniedPackets, prometheus.CounterValue, float64(r.Packets), r.CIDR.String())
			ch <- prometheus.MustNewConstMetric(c.deniedBytes, prometheus.CounterValue, float64(r.Bytes), r.CIDR.String())
		}
	}
	p := c.m.Pinned()
	if p == nil {
		ch <- prometheus.MustNewConstMetric(c.available, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.available, prometheus.GaugeValue, 1)
	counter := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	if svcs, err := p.Services(); err == nil {
		for _, s := range svcs {
			name := fmt.Sprintf("%s/%s", s.VIP, protoLabel(s.Proto))
			counter(c.svcPackets, s.Counters.Packets, name)
			counter(c.svcBytes, s.Counters.Bytes, name)
			counter(c.svcFlows, s.Counters.NewFlows, name)
		}
	}
	if bes, err := p.Backends(); err == nil {
		for _, b := range bes {
			counter(c.bePackets, b.Counters.Packets, b.Addr.String())
			counter(c.beBytes, b.Counters.Bytes, b.Addr.String())
			counter(c.beFlows, b.Counters.NewFlows, b.Addr.String())
		}
	}
	if passed, err := p.Passed(); err == nil {
		for reason, v := range passed {
			counter(c.passed, v, reason)
		}
	}
	if fill, err := p.Fill(); err == nil {
		for _, f := range fill {
			ch <- prometheus.MustNewConstMetric(c.mapEntries, prometheus.GaugeValue, float64(f.Entries), f.Name)
			ch <- prometheus.MustNewConstMetric(c.mapMaxEntries, prometheus.GaugeValue, float64(f.MaxEntries), f.Name)
		}
	}
}

func protoLabel(p uint8) string {
	if p == ProtoUDP {
		return "udp"
	}
	return "tcp"
}
