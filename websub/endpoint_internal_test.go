package websub

import "testing"

func TestEndpointOf(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.example.com/otp?x=1":  "https://hooks.example.com:443",
		"http://hooks.example.com/otp":       "http://hooks.example.com:80",
		"https://hooks.example.com:8443/otp": "https://hooks.example.com:8443",
		"http://[2606:4700::1]:8080/cb":      "http://[2606:4700::1]:8080",
		"http://user@HOOKS.example.com/cb#f": "http://HOOKS.example.com:80",
	} {
		if got := endpointOf(in); got != want {
			t.Errorf("endpointOf(%q) = %q, want %q", in, got, want)
		}
	}
}
