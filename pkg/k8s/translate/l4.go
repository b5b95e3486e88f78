package translate

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/k8s/annotations"
)

// translateL4 maps a Service in mode l4 onto the in-kernel balancer: one L4
// service per ServicePort at the ClusterIP, balanced over the ready
// endpoints of that port.
func translateL4(in *Input, svc *corev1.Service, spec *annotations.Service) (*fragment, []*serviceError) {
	key := annotations.Prefix + "mode"
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil || !ip.Is4() {
		return nil, []*serviceError{{Reason: ReasonInvalidAnnotation, Key: key,
			Msg: fmt.Sprintf("mode l4 needs an IPv4 ClusterIP; the Service has %q", svc.Spec.ClusterIP)}}
	}
	f := &fragment{}
	slices := in.Slices[NamespacedName{svc.Namespace, svc.Name}]
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		proto := config.L4TCP
		switch p.Protocol {
		case "", corev1.ProtocolTCP:
		case corev1.ProtocolUDP:
			proto = config.L4UDP
		default:
			return nil, []*serviceError{{Reason: ReasonUnsupportedProtocol, Key: key,
				Msg: fmt.Sprintf("port %s is %s; mode l4 balances TCP and UDP", portLabel(p), p.Protocol)}}
		}
		ls := config.L4Service{
			Name:           clusterName(svc, p) + "/" + string(proto),
			Address:        net.JoinHostPort(ip.String(), strconv.Itoa(int(p.Port))),
			Protocol:       proto,
			PreserveSource: spec.L4PreserveSource,
		}
		for _, ep := range endpointsFor(slices, p, proto) {
			ls.Backends = append(ls.Backends, config.Endpoint{Address: ep.Address})
		}
		f.l4 = append(f.l4, ls)
	}
	l4 := config.L4{Services: f.l4}
	if err := config.FinalizeL4(&l4); err != nil {
		return nil, []*serviceError{{Reason: ReasonInvalidAnnotation, Key: key, Msg: err.Error()}}
	}
	f.l4 = l4.Services
	return f, nil
}
