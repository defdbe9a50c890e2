package grpctrace

import (
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"google.golang.org/grpc/peer"
)

// maxPeerTags is the most tags appendPeerTags appends: the address, the IP
// and the port.
const maxPeerTags = 3

// appendPeerTags appends a server's tags for the client's address:
// peer.address always, and peer.ipv4 or peer.ipv6 and peer.port when the
// address is an IP address and port.
func appendPeerTags(dst []opentracing.Tag, p *peer.Peer) []opentracing.Tag {
	if p == nil || p.Addr == nil {
		return dst
	}
	addr := p.Addr.String()
	dst = append(dst, opentracing.Tag{Key: string(ext.PeerAddress), Value: addr})
	var ap netip.AddrPort
	if tcp, ok := p.Addr.(*net.TCPAddr); ok {
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

func appendIPPortTags(dst []opentracing.Tag, ip netip.Addr, port uint16) []opentracing.Tag {
	ip = ip.Unmap()
	if ip.Is4() {
		dst = append(dst, opentracing.Tag{Key: string(ext.PeerHostIPv4), Value: ip.String()})
	} else {
		dst = append(dst, opentracing.Tag{Key: string(ext.PeerHostIPv6), Value: ip.String()})
	}
	return append(dst, opentracing.Tag{Key: string(ext.PeerPort), Value: port})
}

// targetTags returns a client's tags for the server it calls, derived from
// the ClientConn's target ("dns:///svc.example:443", "10.0.0.1:50051", ...)
// once per target: peer.address is the target's endpoint, with peer.ipv4,
// peer.ipv6 or peer.hostname and peer.port when it is host:port. Like the
// OpenTelemetry conventions for a client's server.address, this names the
// server the caller asked for, not the address a balancer picked.
func targetTags(target string) []opentracing.Tag {
	endpoint := target
	if u, err := url.Parse(target); err == nil && u.Scheme != "" && strings.Contains(target, "://") {
		endpoint = u.Opaque
		if endpoint == "" {
			endpoint = u.Path
			if u.Scheme != "unix" {
				endpoint = strings.TrimPrefix(endpoint, "/")
			}
		}
	}
	if endpoint == "" {
		return nil
	}
	tags := []opentracing.Tag{{Key: string(ext.PeerAddress), Value: endpoint}}
	host, portText, err := net.SplitHostPort(endpoint)
	if err != nil {
		return tags
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return tags
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return appendIPPortTags(tags, ip, uint16(port))
	}
	return append(tags,
		opentracing.Tag{Key: string(ext.PeerHostname), Value: host},
		opentracing.Tag{Key: string(ext.PeerPort), Value: uint16(port)})
}
