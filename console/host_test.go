package console

import (
	"net/http"
	"net/http/httptest"
	"testing"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// The console answers requests addressed to an IP address, localhost or
// an allowed name, and refuses the others whatever their path, so that a
// page of another site cannot read it through DNS rebinding.
func TestHostCheck(t *testing.T) {
	cases := []struct {
		allowed []string
		host    string
		want    int
	}{
		{nil, "127.0.0.1:8089", http.StatusOK},
		{nil, "127.0.0.1", http.StatusOK},
		{nil, "[::1]:8089", http.StatusOK},
		{nil, "::1", http.StatusOK},
		{nil, "10.1.2.3:80", http.StatusOK},
		{nil, "localhost:8089", http.StatusOK},
		{nil, "LocalHost", http.StatusOK},
		{nil, "localhost.", http.StatusOK},
		{nil, "", http.StatusOK},
		{nil, "attacker.example:8089", http.StatusForbidden},
		{nil, "attacker.example", http.StatusForbidden},
		{nil, "localhost.attacker.example", http.StatusForbidden},
		{nil, "127.0.0.1.attacker.example", http.StatusForbidden},
		{nil, "evil.localhost", http.StatusForbidden},
		{[]string{"admin.internal"}, "Admin.Internal:9000", http.StatusOK},
		{[]string{"admin.internal"}, "other.internal", http.StatusForbidden},
		{[]string{"*"}, "anything.example", http.StatusOK},
	}
	for _, tc := range cases {
		c, err := New(Config{AllowedHosts: tc.allowed})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/", "/snapshot.json", "/console.js"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Host = tc.host
			rec := httptest.NewRecorder()
			c.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("allowed %q, Host %q, GET %s = %d, want %d", tc.allowed, tc.host, path, rec.Code, tc.want)
			}
		}
		c.Close()
	}
}

func TestAllowedHostsValidate(t *testing.T) {
	if err := (Config{AllowedHosts: []string{"*", "admin.internal", "console-1", "A.B_c"}}).Validate(); err != nil {
		t.Errorf("valid hosts: %v", err)
	}
	bad := []string{"", "http://admin", "admin:8089", "a/b", "a b", ".admin", "*.example"}
	err := Config{AllowedHosts: bad}.Validate()
	fields := map[string]bool{}
	for _, fe := range resilience.FieldErrors(err) {
		fields[fe.Field] = true
	}
	if len(fields) != len(bad) {
		t.Errorf("Validate reported %v for %q, want each entry", fields, bad)
	}
}

// The Config is copied: changing AllowedHosts afterwards changes nothing.
func TestAllowedHostsCopied(t *testing.T) {
	hosts := []string{"admin.internal"}
	c, err := New(Config{AllowedHosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hosts[0] = "attacker.example"
	if !c.hostAllowed("admin.internal") || c.hostAllowed("attacker.example") {
		t.Error("the console follows the caller's slice")
	}
}
