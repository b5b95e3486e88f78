// Package config is edge-agent's configuration model: listeners, routes,
// clusters and their policies, validated into one immutable Snapshot.
//
// Every source (the standalone YAML file now, Kubernetes annotations later)
// translates into these types, so they carry no source-specific fields.
package config

// Config is the whole desired state of one agent.
type Config struct {
	Admin     Admin      `yaml:"admin" json:"admin"`
	Server    Server     `yaml:"server" json:"server"`
	Listeners []Listener `yaml:"listeners" json:"listeners"`
	Routes    []Route    `yaml:"routes" json:"routes"`
	Clusters  []Cluster  `yaml:"clusters" json:"clusters"`
	// L4 configures the in-kernel (eBPF) load balancer.
	L4 L4 `yaml:"l4" json:"l4"`
	// Steering hands L7 connections to the proxy's one socket in the kernel.
	Steering Steering `yaml:"steering" json:"steering"`
	// Security is node-wide protection and the defaults routes inherit.
	Security Security `yaml:"security" json:"security"`
	// Kubernetes configures the Kubernetes source (`edge-agent run
	// --kubeconfig` or in-cluster); standalone mode ignores it.
	Kubernetes Kubernetes `yaml:"kubernetes" json:"kubernetes"`
}

// Kubernetes holds the platform team's node-wide settings for the
// Kubernetes source: which Services it reads and who may claim which host.
type Kubernetes struct {
	// Enabled is set by the agent when the Kubernetes source runs; https
	// listeners may then start without certificates (Secrets supply them).
	Enabled bool `yaml:"-" json:"enabled"`
	// Namespaces limits the watch to these namespaces; empty means all.
	Namespaces []string `yaml:"namespaces" json:"namespaces,omitempty"`
	// LabelSelector limits the watched Services (Kubernetes selector syntax).
	LabelSelector string `yaml:"labelSelector" json:"labelSelector,omitempty"`
	// Listeners are the listener names Service routes attach to; empty means all.
	Listeners []string `yaml:"listeners" json:"listeners,omitempty"`
	// Hostnames restricts which namespaces may claim which hostnames. Empty
	// allows every claim; otherwise a host must match a rule that lists the
	// Service's namespace.
	Hostnames []HostnameRule `yaml:"hostnames" json:"hostnames,omitempty"`
	// Debounce coalesces bursts of changes into one snapshot.
	Debounce Duration `yaml:"debounce" json:"debounce"`
}

// HostnameRule lets Namespaces claim hosts matching Hosts (exact names or
// "*.example.com", which covers every name below example.com).
type HostnameRule struct {
	Hosts      []string `yaml:"hosts" json:"hosts"`
	Namespaces []string `yaml:"namespaces" json:"namespaces"`
}

// Admin is the operator's HTTP endpoint (metrics, health, debug).
type Admin struct {
	// Address defaults to 127.0.0.1:9901: debug endpoints stay off the network
	// unless the platform team opts in.
	Address string `yaml:"address" json:"address"`
}

// Server holds process-wide HTTP settings.
type Server struct {
	// DrainTimeout bounds how long SIGTERM waits for in-flight requests.
	DrainTimeout Duration `yaml:"drainTimeout" json:"drainTimeout"`
	// ReadHeaderTimeout bounds how long a client may take to send request headers.
	ReadHeaderTimeout Duration `yaml:"readHeaderTimeout" json:"readHeaderTimeout"`
	// IdleTimeout closes downstream keep-alive connections idle this long.
	IdleTimeout Duration `yaml:"idleTimeout" json:"idleTimeout"`
	// WriteTimeout cuts a client connection (HTTP/1.1 or HTTP/2) that
	// takes no part of a pending write for this long (it stopped reading),
	// and resets an HTTP/2 stream whose flow-control window stays closed
	// this long.
	WriteTimeout Duration `yaml:"writeTimeout" json:"writeTimeout"`
	// MaxHeaderBytes caps the request line plus headers.
	MaxHeaderBytes int `yaml:"maxHeaderBytes" json:"maxHeaderBytes"`
	// AccessLog turns JSON access logs on stdout on or off (default on).
	AccessLog *bool `yaml:"accessLog" json:"accessLog"`
	// RequestIDHeader is the header carrying the request id; generated when absent.
	RequestIDHeader string `yaml:"requestIdHeader" json:"requestIdHeader"`
}

// ListenerProtocol says what a listener speaks.
type ListenerProtocol string

const (
	// ListenerHTTP serves HTTP/1.1 and h2c (prior knowledge) on one plaintext port.
	ListenerHTTP ListenerProtocol = "http"
	// ListenerHTTPS terminates TLS and serves h2 or HTTP/1.1 by ALPN.
	ListenerHTTPS ListenerProtocol = "https"
	// ListenerTCP forwards raw TCP to a cluster (Listener.TCP).
	ListenerTCP ListenerProtocol = "tcp"
	// ListenerAuto tells the protocol from the first bytes: a TLS
	// ClientHello is served as https, anything else as http.
	ListenerAuto ListenerProtocol = "auto"
)

// Listener is one address the proxy accepts connections on.
type Listener struct {
	Name     string           `yaml:"name" json:"name"`
	Address  string           `yaml:"address" json:"address"`
	Protocol ListenerProtocol `yaml:"protocol" json:"protocol"`
	TLS      *ListenerTLS     `yaml:"tls,omitempty" json:"tls,omitempty"`
	// TCP is what a tcp listener forwards to.
	TCP *TCPProxy `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	// Steer lists more destinations this listener serves, as IPv4:port
	// (service VIPs; 0.0.0.0:PORT for a port on every node address). They
	// need steering.enabled: the kernel hands their connections to the
	// proxy, so no socket is bound per address.
	Steer []string `yaml:"steer" json:"steer,omitempty"`
	// ProxyProtocol requires a PROXY protocol v1 or v2 header on every
	// connection (from a load balancer in front); its source address is
	// then the client's.
	ProxyProtocol bool `yaml:"proxyProtocol" json:"proxyProtocol"`
}

// TCPProxy forwards a tcp listener's connections to a cluster's
// endpoints, picked by the cluster's LB policy.
type TCPProxy struct {
	Cluster string `yaml:"cluster" json:"cluster"`
	// IdleTimeout closes a connection with no bytes either way this long
	// (default 1h).
	IdleTimeout Duration `yaml:"idleTimeout" json:"idleTimeout"`
	// MaxConnections caps open connections (0: no limit); more are closed
	// at once and counted.
	MaxConnections int `yaml:"maxConnections" json:"maxConnections"`
}

// Steering replaces one bound socket per listener with one proxy socket
// that an sk_lookup program feeds: every listener address (and each
// listener's steer list) is handed to it, and the proxy picks the listener
// by the connection's original destination. A restarted agent puts its own
// socket in place and tells the old one to drain, so upgrades refuse no
// connection.
type Steering struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// SocketAddress is where the proxy socket is bound (default
	// 127.0.0.1:0); clients never dial it.
	SocketAddress string `yaml:"socketAddress" json:"socketAddress,omitempty"`
	// HandoverSocket is the Unix socket a new agent uses to tell the
	// running one to hand over (default /run/edge-agent/handover.sock).
	HandoverSocket string `yaml:"handoverSocket" json:"handoverSocket,omitempty"`
	// HandoverTimeout bounds how long a new agent waits for the old one
	// to release the admin port (default 10s).
	HandoverTimeout Duration `yaml:"handoverTimeout" json:"handoverTimeout"`
}

// ListenerTLS configures TLS termination; the certificate is chosen by SNI.
type ListenerTLS struct {
	Certificates []Certificate `yaml:"certificates" json:"certificates"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"minVersion" json:"minVersion"`
	// ClientAuth verifies client certificates (mTLS).
	ClientAuth *ClientAuth `yaml:"clientAuth,omitempty" json:"clientAuth,omitempty"`
	// Passthrough sends TLS connections for these server names (SNI),
	// still encrypted, to a cluster: its endpoints terminate TLS.
	Passthrough []TLSPassthrough `yaml:"passthrough" json:"passthrough,omitempty"`
}

// ClientAuth asks TLS clients for a certificate signed by CAFile. Mode
// "optional" verifies one when given; "require" refuses a handshake
// without one. RequireForHosts requires it for those server names (SNI)
// even when the mode is optional.
type ClientAuth struct {
	CAFile          string   `yaml:"caFile" json:"caFile"`
	Mode            string   `yaml:"mode" json:"mode"`
	RequireForHosts []string `yaml:"requireForHosts" json:"requireForHosts,omitempty"`
}

// TLSPassthrough routes TLS by server name without terminating it.
type TLSPassthrough struct {
	// ServerNames are exact names or "*.example.com" wildcards.
	ServerNames []string `yaml:"serverNames" json:"serverNames"`
	Cluster     string   `yaml:"cluster" json:"cluster"`
	// IdleTimeout closes a connection with no bytes either way this long
	// (default 1h).
	IdleTimeout Duration `yaml:"idleTimeout" json:"idleTimeout"`
}

// Certificate is a PEM certificate chain and key, from files or (for
// Kubernetes Secrets) held in memory. ServerNames, when empty, come from the
// certificate's DNS SANs.
type Certificate struct {
	CertFile    string   `yaml:"certFile" json:"certFile,omitempty"`
	KeyFile     string   `yaml:"keyFile" json:"keyFile,omitempty"`
	ServerNames []string `yaml:"serverNames" json:"serverNames"`
	// Source names where in-memory PEM came from (e.g. "secret ns/name").
	Source string `yaml:"-" json:"source,omitempty"`
	// CertPEM and KeyPEM are never printed: /debug/config must not leak keys.
	CertPEM []byte `yaml:"-" json:"-"`
	KeyPEM  []byte `yaml:"-" json:"-"`
}

// Route sends matching requests to one or more weighted backends, or redirects.
type Route struct {
	Name string `yaml:"name" json:"name"`
	// Listeners restricts the route to these listener names; empty means all.
	Listeners []string `yaml:"listeners" json:"listeners,omitempty"`
	// Hosts are exact names or "*.example.com" wildcards; empty matches any host.
	Hosts []string `yaml:"hosts" json:"hosts,omitempty"`
	Match Match    `yaml:"match" json:"match"`

	Rewrite         *Rewrite         `yaml:"rewrite,omitempty" json:"rewrite,omitempty"`
	Redirect        *Redirect        `yaml:"redirect,omitempty" json:"redirect,omitempty"`
	RequestHeaders  *HeaderMutations `yaml:"requestHeaders,omitempty" json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderMutations `yaml:"responseHeaders,omitempty" json:"responseHeaders,omitempty"`
	Backends        []Backend        `yaml:"backends" json:"backends,omitempty"`
	// Timeout bounds the whole upstream exchange, retries included: from
	// the request (its body once sent) to the end of the response body.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Streaming ends Timeout at the response head, so long downloads, server
	// streams and event streams are not cut; IdleTimeout still applies.
	Streaming bool `yaml:"streaming" json:"streaming"`
	// IdleTimeout cuts a response whose body stalls this long (default 5m).
	IdleTimeout Duration `yaml:"idleTimeout" json:"idleTimeout"`
	// Retry retries failed attempts on other endpoints.
	Retry *RetryPolicy `yaml:"retry,omitempty" json:"retry,omitempty"`
	// RateLimit is a local token bucket per key.
	RateLimit *RateLimit `yaml:"rateLimit,omitempty" json:"rateLimit,omitempty"`
	// Mirror copies requests to a shadow cluster.
	Mirror *Mirror `yaml:"mirror,omitempty" json:"mirror,omitempty"`
	// Fault injects delays and aborts.
	Fault *Fault `yaml:"fault,omitempty" json:"fault,omitempty"`

	// Access control, in this order: IP rules, API keys, basic auth, JWT,
	// external authorization, WAF.
	IPRules   *IPRules   `yaml:"ipRules,omitempty" json:"ipRules,omitempty"`
	APIKeys   *APIKeys   `yaml:"apiKeys,omitempty" json:"apiKeys,omitempty"`
	BasicAuth *BasicAuth `yaml:"basicAuth,omitempty" json:"basicAuth,omitempty"`
	JWT       *JWTAuth   `yaml:"jwt,omitempty" json:"jwt,omitempty"`
	// ExtAuth overrides security.extAuth for this route, or bypasses it.
	ExtAuth *ExtAuth `yaml:"extAuth,omitempty" json:"extAuth,omitempty"`
	WAF     *WAF     `yaml:"waf,omitempty" json:"waf,omitempty"`
	// MaxBodyBytes bounds the request body (0: security.maxBodyBytes).
	MaxBodyBytes int64 `yaml:"maxBodyBytes" json:"maxBodyBytes"`
	// WebSocket bounds WebSocket (Upgrade) tunnels on this route; the
	// request timeout never applies to an established tunnel.
	WebSocket WebSocket `yaml:"websocket" json:"websocket"`
	// CORS answers browsers' preflights and marks responses readable by
	// the allowed origins (gRPC-Web from a browser needs it).
	CORS *CORS `yaml:"cors,omitempty" json:"cors,omitempty"`
}

// CORS is a route's cross-origin policy.
type CORS struct {
	// AllowOrigins are exact origins ("https://app.example.com") or "*".
	AllowOrigins []string `yaml:"allowOrigins" json:"allowOrigins"`
	// AllowMethods default to GET, HEAD, POST.
	AllowMethods []string `yaml:"allowMethods" json:"allowMethods"`
	// AllowHeaders default to the gRPC-Web request headers (content-type,
	// x-grpc-web, x-user-agent, grpc-timeout).
	AllowHeaders []string `yaml:"allowHeaders" json:"allowHeaders"`
	// ExposeHeaders default to grpc-status, grpc-message,
	// grpc-status-details-bin.
	ExposeHeaders []string `yaml:"exposeHeaders" json:"exposeHeaders"`
	// MaxAge is how long a browser may cache a preflight (default 10m).
	MaxAge           Duration `yaml:"maxAge" json:"maxAge"`
	AllowCredentials bool     `yaml:"allowCredentials" json:"allowCredentials"`
}

// WebSocket limits an established WebSocket tunnel.
type WebSocket struct {
	// IdleTimeout closes a tunnel with no bytes either way for this long
	// (default 1h; pings count).
	IdleTimeout Duration `yaml:"idleTimeout" json:"idleTimeout"`
	// MaxLifetime closes a tunnel this long after it opened (default 0:
	// no limit), e.g. to rebalance long-lived clients.
	MaxLifetime Duration `yaml:"maxLifetime" json:"maxLifetime"`
}

// Match holds the request matchers; all given ones must match.
type Match struct {
	Path    *PathMatch   `yaml:"path,omitempty" json:"path,omitempty"`
	Methods []string     `yaml:"methods" json:"methods,omitempty"`
	Headers []ValueMatch `yaml:"headers" json:"headers,omitempty"`
	Query   []ValueMatch `yaml:"query" json:"query,omitempty"`
	Cookies []ValueMatch `yaml:"cookies" json:"cookies,omitempty"`
	// GRPC matches gRPC calls (content-type application/grpc*) to a
	// service, or one method of it; it takes the place of Path.
	GRPC *GRPCMatch `yaml:"grpc,omitempty" json:"grpc,omitempty"`
}

// GRPCMatch names a fully qualified gRPC service ("shop.v1.Cart") and,
// optionally, one of its methods ("AddItem").
type GRPCMatch struct {
	Service string `yaml:"service" json:"service"`
	Method  string `yaml:"method,omitempty" json:"method,omitempty"`
}

// PathMatch returns the path a gRPC match stands for: the method's exact
// path, or the service's prefix.
func (g *GRPCMatch) PathMatch() *PathMatch {
	if g.Method != "" {
		return &PathMatch{Exact: "/" + g.Service + "/" + g.Method}
	}
	return &PathMatch{Prefix: "/" + g.Service}
}

// PathMatch sets exactly one of Exact, Prefix or Regex. Prefix matches whole
// path segments: "/api" matches "/api" and "/api/x" but not "/apix".
type PathMatch struct {
	Exact  string `yaml:"exact,omitempty" json:"exact,omitempty"`
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	Regex  string `yaml:"regex,omitempty" json:"regex,omitempty"`
}

// ValueMatch matches a named header, query parameter or cookie. At most one
// of Exact, Prefix or Regex; with none, the name only has to be present.
type ValueMatch struct {
	Name   string `yaml:"name" json:"name"`
	Exact  string `yaml:"exact,omitempty" json:"exact,omitempty"`
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	Regex  string `yaml:"regex,omitempty" json:"regex,omitempty"`
}

// Rewrite changes the request before it goes upstream.
type Rewrite struct {
	// Prefix replaces the matched path prefix (route must use a prefix match).
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	// Host replaces the Host header sent upstream.
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
}

// Redirect answers with a redirect instead of proxying. Unset parts keep the
// request's own scheme, host, port and path.
type Redirect struct {
	Scheme string `yaml:"scheme,omitempty" json:"scheme,omitempty"`
	Host   string `yaml:"host,omitempty" json:"host,omitempty"`
	Port   int    `yaml:"port,omitempty" json:"port,omitempty"`
	// Path replaces the whole path; Prefix replaces the matched prefix.
	Path   string `yaml:"path,omitempty" json:"path,omitempty"`
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	// Code is 301, 302 (default), 303, 307 or 308.
	Code int `yaml:"code,omitempty" json:"code,omitempty"`
}

// HeaderMutations edit headers: remove first, then set, then add.
type HeaderMutations struct {
	Set    []Header `yaml:"set" json:"set,omitempty"`
	Add    []Header `yaml:"add" json:"add,omitempty"`
	Remove []string `yaml:"remove" json:"remove,omitempty"`
}

// Header is one header name and value.
type Header struct {
	Name  string `yaml:"name" json:"name"`
	Value string `yaml:"value" json:"value"`
}

// Backend is a weighted reference to a cluster.
type Backend struct {
	Cluster string `yaml:"cluster" json:"cluster"`
	// Weight defaults to 1; 0 takes the backend out of rotation.
	Weight *int `yaml:"weight,omitempty" json:"weight,omitempty"`
}

// UpstreamProtocol is how the proxy talks to a cluster's endpoints.
type UpstreamProtocol string

const (
	UpstreamHTTP1 UpstreamProtocol = "http1"
	UpstreamH2C   UpstreamProtocol = "h2c"
)

// LBPolicy chooses an endpoint for each request.
type LBPolicy string

const (
	LBRoundRobin   LBPolicy = "round_robin"
	LBLeastRequest LBPolicy = "least_request"
	LBRandom       LBPolicy = "random"
	// LBMaglev hashes Cluster.Hash onto a Maglev table: the same key goes to
	// the same endpoint (sticky sessions), and a change of endpoints moves
	// few keys.
	LBMaglev LBPolicy = "maglev"
)

// Cluster is a named set of upstream endpoints.
type Cluster struct {
	Name     string           `yaml:"name" json:"name"`
	Protocol UpstreamProtocol `yaml:"protocol" json:"protocol"`
	LBPolicy LBPolicy         `yaml:"lbPolicy" json:"lbPolicy"`
	// ConnectTimeout bounds dialing one endpoint.
	ConnectTimeout Duration `yaml:"connectTimeout" json:"connectTimeout"`
	// MaxIdleConnsPerEndpoint sizes the keep-alive pool; small pools churn
	// TIME_WAIT sockets under load, so the default is generous.
	MaxIdleConnsPerEndpoint int `yaml:"maxIdleConnsPerEndpoint" json:"maxIdleConnsPerEndpoint"`
	// IdleConnTimeout closes pooled connections unused this long.
	IdleConnTimeout Duration   `yaml:"idleConnTimeout" json:"idleConnTimeout"`
	Endpoints       []Endpoint `yaml:"endpoints" json:"endpoints"`
	// TLS, when set, wraps HTTP/1.1 upstream connections in TLS.
	TLS *UpstreamTLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// CircuitBreaker bounds connections, pending requests, requests and
	// retries in flight.
	CircuitBreaker *CircuitBreaker `yaml:"circuitBreaker,omitempty" json:"circuitBreaker,omitempty"`
	// OutlierDetection ejects endpoints that fail live traffic.
	OutlierDetection *OutlierDetection `yaml:"outlierDetection,omitempty" json:"outlierDetection,omitempty"`
	// HealthCheck probes endpoints actively.
	HealthCheck *HealthCheck `yaml:"healthCheck,omitempty" json:"healthCheck,omitempty"`
	// Hash is what lbPolicy maglev hashes.
	Hash *HashPolicy `yaml:"hash,omitempty" json:"hash,omitempty"`
	// SlowStart ramps a new (or newly healthy) endpoint's share of traffic
	// up over this window (default 0: off).
	SlowStart Duration `yaml:"slowStart" json:"slowStart"`
}

// UpstreamTLS verifies the endpoints' certificates: against CAFile (or
// in-memory CAPEM from a Kubernetes Secret), else the system roots, for
// ServerName.
type UpstreamTLS struct {
	// ServerName is sent as SNI and must be in the endpoint's certificate.
	ServerName string `yaml:"serverName" json:"serverName"`
	CAFile     string `yaml:"caFile,omitempty" json:"caFile,omitempty"`
	// CASource names where CAPEM came from (e.g. "secret ns/name").
	CASource string `yaml:"-" json:"caSource,omitempty"`
	CAPEM    []byte `yaml:"-" json:"-"`
}

// Endpoint is one upstream address (IP:port or host:port).
type Endpoint struct {
	Address string `yaml:"address" json:"address"`
	// Weight defaults to 1 (used by round_robin and random).
	Weight int `yaml:"weight,omitempty" json:"weight,omitempty"`
}

// L4 holds the services the eBPF program balances inside the kernel, with
// no userspace hop.
type L4 struct {
	// Interfaces are where the TC program attaches (ingress); empty means
	// the interface of the default route.
	Interfaces []string    `yaml:"interfaces" json:"interfaces,omitempty"`
	Services   []L4Service `yaml:"services" json:"services,omitempty"`
	// SocketLB balances connections from processes on the node at
	// connect() time (cgroup programs): no per-packet NAT, and
	// getpeername still shows the VIP.
	SocketLB SocketLB `yaml:"socketLB" json:"socketLB"`
}

// SocketLB configures socket-level load balancing for local clients.
type SocketLB struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Cgroup is the cgroup v2 directory whose processes are balanced;
	// empty means the root of the cgroup v2 hierarchy, found at run time
	// (every process on the node).
	Cgroup string `yaml:"cgroup" json:"cgroup,omitempty"`
}

// L4Protocol is the transport an L4 service balances.
type L4Protocol string

const (
	L4TCP L4Protocol = "tcp"
	L4UDP L4Protocol = "udp"
)

// L4Service balances connections to Address (VIP:port) over Backends by
// Maglev consistent hashing.
type L4Service struct {
	Name     string     `yaml:"name" json:"name"`
	Address  string     `yaml:"address" json:"address"`
	Protocol L4Protocol `yaml:"protocol" json:"protocol"`
	// Backends are IPv4:port; Weight scales a backend's share (default 1).
	Backends []Endpoint `yaml:"backends" json:"backends"`
	// PreserveSource keeps the client's address as the source the backend
	// sees; replies must then be routed back through the node. By default
	// the source is rewritten to the node's address (SNAT), which works on
	// any topology.
	PreserveSource bool `yaml:"preserveSource" json:"preserveSource"`
}
