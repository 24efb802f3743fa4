package egress

import "net/netip"

// special is one refused range and why.
type special struct {
	prefix netip.Prefix
	why    string
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// refusedV4 are the IPv4 ranges no outbound request may reach unless
// allow-listed (IANA special-purpose registry, plus cloud metadata).
var refusedV4 = []special{
	{mustPrefix("0.0.0.0/8"), "\"this network\" / unspecified (0.0.0.0/8)"},
	{mustPrefix("10.0.0.0/8"), "private address (10.0.0.0/8)"},
	{mustPrefix("100.64.0.0/10"), "carrier-grade NAT (100.64.0.0/10)"},
	{mustPrefix("127.0.0.0/8"), "loopback (127.0.0.0/8)"},
	{mustPrefix("169.254.169.254/32"), "cloud metadata service (169.254.169.254)"},
	{mustPrefix("169.254.0.0/16"), "link-local (169.254.0.0/16)"},
	{mustPrefix("172.16.0.0/12"), "private address (172.16.0.0/12)"},
	{mustPrefix("192.0.0.0/24"), "IETF protocol assignments (192.0.0.0/24)"},
	{mustPrefix("192.0.2.0/24"), "documentation (192.0.2.0/24)"},
	{mustPrefix("192.88.99.0/24"), "6to4 relay anycast (192.88.99.0/24)"},
	{mustPrefix("192.168.0.0/16"), "private address (192.168.0.0/16)"},
	{mustPrefix("198.18.0.0/15"), "benchmarking (198.18.0.0/15)"},
	{mustPrefix("198.51.100.0/24"), "documentation (198.51.100.0/24)"},
	{mustPrefix("203.0.113.0/24"), "documentation (203.0.113.0/24)"},
	{mustPrefix("224.0.0.0/4"), "multicast (224.0.0.0/4)"},
	{mustPrefix("255.255.255.255/32"), "broadcast (255.255.255.255)"},
	{mustPrefix("240.0.0.0/4"), "reserved (240.0.0.0/4)"},
}

// refusedV6 are the IPv6 ranges refused outright. IPv4-mapped, NAT64 and
// 6to4 addresses are judged by the IPv4 address they embed (see blocked).
var refusedV6 = []special{
	{mustPrefix("::/128"), "unspecified (::)"},
	{mustPrefix("::1/128"), "loopback (::1)"},
	{mustPrefix("::/96"), "IPv4-compatible (deprecated, ::/96)"},
	{mustPrefix("64:ff9b:1::/48"), "local-use NAT64 (64:ff9b:1::/48)"},
	{mustPrefix("100::/64"), "discard-only (100::/64)"},
	{mustPrefix("2001::/32"), "Teredo (2001::/32)"},
	{mustPrefix("2001:2::/48"), "benchmarking (2001:2::/48)"},
	{mustPrefix("2001:10::/28"), "ORCHID (2001:10::/28)"},
	{mustPrefix("2001:20::/28"), "ORCHIDv2 (2001:20::/28)"},
	{mustPrefix("2001:db8::/32"), "documentation (2001:db8::/32)"},
	{mustPrefix("3fff::/20"), "documentation (3fff::/20)"},
	{mustPrefix("fd00:ec2::254/128"), "cloud metadata service (fd00:ec2::254)"},
	{mustPrefix("fc00::/7"), "unique local address (fc00::/7)"},
	{mustPrefix("fe80::/10"), "link-local (fe80::/10)"},
	{mustPrefix("fec0::/10"), "site-local (deprecated, fec0::/10)"},
	{mustPrefix("ff00::/8"), "multicast (ff00::/8)"},
}

var (
	nat64     = mustPrefix("64:ff9b::/96")
	sixToFour = mustPrefix("2002::/16")
)

// blocked returns why a (with no allow-list) is refused, "" if it is a
// public unicast address.
func blocked(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid address"
	}
	if a.Is4In6() {
		if why := blocked(a.Unmap()); why != "" {
			return "IPv4-mapped " + why
		}
		return ""
	}
	if a.Is4() {
		for _, s := range refusedV4 {
			if s.prefix.Contains(a) {
				return s.why
			}
		}
		return ""
	}
	for _, s := range refusedV6 {
		if s.prefix.Contains(a) {
			return s.why
		}
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		if why := blocked(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})); why != "" {
			return "NAT64 of " + why
		}
	case sixToFour.Contains(a):
		if why := blocked(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})); why != "" {
			return "6to4 of " + why
		}
	}
	return ""
}
