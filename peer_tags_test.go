package grpctrace

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func tagMap(tags []tag) map[string]any {
	m := map[string]any{}
	for _, t := range tags {
		m[t.key] = t.value
	}
	return m
}

func TestTargetTags(t *testing.T) {
	cases := []struct {
		target string
		want   map[string]any
	}{
		{"dns:///svc.example:443", map[string]any{"peer.address": "svc.example:443", "peer.hostname": "svc.example", "peer.port": uint16(443)}},
		{"10.1.2.3:50051", map[string]any{"peer.address": "10.1.2.3:50051", "peer.ipv4": "10.1.2.3", "peer.port": uint16(50051)}},
		{"passthrough:///[::1]:8080", map[string]any{"peer.address": "[::1]:8080", "peer.ipv6": "::1", "peer.port": uint16(8080)}},
		{"unix:///run/app.sock", map[string]any{"peer.address": "/run/app.sock"}},
		{"passthrough:///bufnet", map[string]any{"peer.address": "bufnet"}},
		{"localhost:99999", map[string]any{"peer.address": "localhost:99999"}},
		{"", map[string]any{}},
	}
	for _, tc := range cases {
		if diff := cmp.Diff(tc.want, tagMap(targetTags(tc.target))); diff != "" {
			t.Errorf("targetTags(%q) (-want +got):\n%s", tc.target, diff)
		}
	}
}

func TestPeerTags(t *testing.T) {
	cases := []struct {
		addr net.Addr
		want map[string]any
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000}, map[string]any{"peer.address": "192.0.2.7:40000", "peer.ipv4": "192.0.2.7", "peer.port": uint16(40000)}},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}, map[string]any{"peer.address": "[2001:db8::1]:443", "peer.ipv6": "2001:db8::1", "peer.port": uint16(443)}},
		{&net.UnixAddr{Name: "/run/app.sock", Net: "unix"}, map[string]any{"peer.address": "/run/app.sock"}},
	}
	for _, tc := range cases {
		if diff := cmp.Diff(tc.want, tagMap(appendPeerTags(nil, tc.addr))); diff != "" {
			t.Errorf("peer %v (-want +got):\n%s", tc.addr, diff)
		}
	}
	if got := appendPeerTags(nil, nil); len(got) != 0 {
		t.Errorf("no peer gave tags %v", got)
	}
}
