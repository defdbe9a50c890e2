package grpctrace

import (
	"net"
	"net/netip"
	"strings"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"google.golang.org/grpc/peer"
)

// appendPeerTags appends the peer's address tags to dst: peer.address
// always, and the host (peer.ipv4, peer.ipv6 or peer.hostname) and
// peer.port when the address has that shape.
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
	ip := ap.Addr().Unmap()
	switch {
	case ip.Is4():
		dst = append(dst, opentracing.Tag{Key: string(ext.PeerHostIPv4), Value: ip.String()})
	default:
		dst = append(dst, opentracing.Tag{Key: string(ext.PeerHostIPv6), Value: ip.String()})
	}
	return append(dst, opentracing.Tag{Key: string(ext.PeerPort), Value: ap.Port()})
}
