package grpctrace

import (
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/opentracing/opentracing-go/ext"
)

// maxPeerTags is the most tags a peer has: the address, the IP or host
// name, and the port.
const maxPeerTags = 3

// appendPeerTags appends the tags for a peer's address: peer.address
// always, and peer.ipv4 or peer.ipv6 and peer.port when the address is an
// IP address and port.
func appendPeerTags(dst []tag, a net.Addr) []tag {
	if a == nil {
		return dst
	}
	addr := a.String()
	dst = append(dst, tag{string(ext.PeerAddress), addr})
	var ap netip.AddrPort
	if tcp, ok := a.(*net.TCPAddr); ok {
		ap = tcp.AddrPort()
	} else if strings.IndexByte(addr, ':') >= 0 {
		// Only what can be host:port: parsing anything else (bufconn,
		// unix sockets) fails, and the failure allocates its error.
		ap, _ = netip.ParseAddrPort(addr)
	}
	if !ap.IsValid() {
		return dst
	}
	return appendIPPortTags(dst, ap.Addr(), ap.Port())
}

func appendIPPortTags(dst []tag, ip netip.Addr, port uint16) []tag {
	ip = ip.Unmap()
	if ip.Is4() {
		dst = append(dst, tag{string(ext.PeerHostIPv4), ip.String()})
	} else {
		dst = append(dst, tag{string(ext.PeerHostIPv6), ip.String()})
	}
	return append(dst, tag{string(ext.PeerPort), port})
}

// targetTags returns a client's tags for the server it calls, derived from
// the ClientConn's canonical target ("dns:///svc.example:443",
// "passthrough:///10.0.0.1:50051", ...)
// once per target: peer.address is the target's endpoint, with peer.ipv4,
// peer.ipv6 or peer.hostname and peer.port when it is host:port. Like the
// OpenTelemetry conventions for a client's server.address, this names the
// server the caller asked for, not the address a balancer picked.
func targetTags(target string) []tag {
	endpoint, host, port, ok := targetEndpoint(target)
	if endpoint == "" {
		return nil
	}
	tags := []tag{{string(ext.PeerAddress), endpoint}}
	if !ok {
		return tags
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return appendIPPortTags(tags, ip, port)
	}
	return append(tags,
		tag{string(ext.PeerHostname), host},
		tag{string(ext.PeerPort), port})
}

// targetEndpoint returns the endpoint a canonical target names, and its
// host and port when it is host:port (ok).
func targetEndpoint(target string) (endpoint, host string, port uint16, ok bool) {
	endpoint = target
	if u, err := url.Parse(target); err == nil && u.Scheme != "" && strings.Contains(target, "://") {
		endpoint = u.Opaque
		if endpoint == "" {
			endpoint = u.Path
			if u.Scheme != "unix" {
				endpoint = strings.TrimPrefix(endpoint, "/")
			}
		}
	}
	host, portText, err := net.SplitHostPort(endpoint)
	if err != nil {
		return endpoint, "", 0, false
	}
	p, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return endpoint, "", 0, false
	}
	return endpoint, host, uint16(p), true
}
