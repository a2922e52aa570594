package resilience_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func TestRateLimitedErrorMatchesErrRateLimited(t *testing.T) {
	err := fmt.Errorf("calling: %w", &resilience.RateLimitedError{RetryAfter: 250 * time.Millisecond})
	if !errors.Is(err, resilience.ErrRateLimited) {
		t.Fatalf("errors.Is(%v, ErrRateLimited) = false", err)
	}
	var rl *resilience.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 250*time.Millisecond {
		t.Fatalf("errors.As = %v, RetryAfter %v; want 250ms", rl != nil, rl)
	}
	if got := rl.Error(); !strings.Contains(got, "250ms") {
		t.Errorf("Error() = %q, want the wait in it", got)
	}
	if got := (&resilience.RateLimitedError{}).Error(); got != "resilience: rate limited" {
		t.Errorf("Error() without a wait = %q", got)
	}
	if errors.Is(err, resilience.ErrBulkheadFull) || errors.Is(err, resilience.ErrCircuitOpen) {
		t.Error("a rate-limited error matches another sentinel")
	}
}

func TestFieldErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		e    resilience.FieldError
		want string
	}{
		{resilience.FieldError{Field: "MaxAttempts", Value: -1, Reason: "must not be negative"}, "MaxAttempts: -1: must not be negative"},
		{resilience.FieldError{Field: "Name", Value: "a\nb", Reason: "bad"}, `Name: "a\nb": bad`},
		{resilience.FieldError{Field: "Timeout", Value: -time.Second, Reason: "must not be negative"}, "Timeout: -1s: must not be negative"},
		{resilience.FieldError{Field: "Key", Value: strings.Repeat("x", 10000), Reason: "too long"}, `Key: "` + strings.Repeat("x", 100) + `...": too long`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestFieldErrorPrefix(t *testing.T) {
	e := &resilience.FieldError{Field: "Retry.MaxAttempts", Value: -1, Reason: "r"}
	for _, tc := range []struct{ prefix, want string }{
		{"", "Retry.MaxAttempts"},
		{"Default", "Default.Retry.MaxAttempts"},
		{"Methods[/a.B/C]", "Methods[/a.B/C].Retry.MaxAttempts"},
	} {
		if got := e.Prefix(tc.prefix).Field; got != tc.want {
			t.Errorf("Prefix(%q).Field = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	if e.Field != "Retry.MaxAttempts" {
		t.Errorf("Prefix changed the original: %q", e.Field)
	}
	idx := &resilience.FieldError{Field: "[2]", Value: "x", Reason: "r"}
	if got := idx.Prefix("Exempt").Field; got != "Exempt[2]" {
		t.Errorf("index Prefix = %q, want Exempt[2]", got)
	}
	empty := &resilience.FieldError{Value: "x", Reason: "r"}
	if got := empty.Prefix("Limit").Field; got != "Limit" {
		t.Errorf("empty Prefix = %q, want Limit", got)
	}
}

func TestFieldErrorsWalksWrappedAndJoined(t *testing.T) {
	a := &resilience.FieldError{Field: "A", Value: 1, Reason: "r"}
	b := &resilience.FieldError{Field: "B", Value: 2, Reason: "r"}
	c := &resilience.FieldError{Field: "C", Value: 3, Reason: "r"}
	err := fmt.Errorf("pkg: invalid configuration: %w",
		errors.Join(a, errors.New("not a field error"), fmt.Errorf("nested: %w", errors.Join(b, c))))
	got := resilience.FieldErrors(err)
	var fields []string
	for _, fe := range got {
		fields = append(fields, fe.Field)
	}
	if strings.Join(fields, ",") != "A,B,C" {
		t.Fatalf("FieldErrors = %v, want A,B,C in order", fields)
	}
	if resilience.FieldErrors(nil) != nil || resilience.FieldErrors(errors.New("x")) != nil {
		t.Error("FieldErrors of an error without FieldErrors is not empty")
	}
}
