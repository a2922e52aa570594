//lint:file-ignore SA1019 reflection v1alpha is deprecated, but servers still serve it and tools still ask it first.

package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// Under overload (bulkhead held full), a total chaos outage and a minimum
// remaining time no call meets, health checks (unary and watch), server
// reflection and the user's exempt method still answer, while the test
// service's other calls are shed.
func TestExemptUnderOverload(t *testing.T) {
	rec := &recorder{}
	r, p := startPipeline(t, server.Config{
		Exempt:   []string{testingv1.TestService_Query_FullMethodName},
		Deadline: server.DeadlineConfig{MinRemaining: 24 * time.Hour},
		Bulkhead: server.BulkheadConfig{Limit: 2},
		Observer: rec.observer(),
	}, outer{})
	release := r.block(t, "blocker", 2)
	defer release()
	if err := p.Chaos().Set(server.FaultConfig{All: server.Fault{ErrorRate: 1, Latency: time.Hour}}); err != nil {
		t.Fatal(err)
	}

	if _, err := r.client.Unary(context.Background(), unaryReq("shed")); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("test service call: %v, want RESOURCE_EXHAUSTED (the server must be overloaded)", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(r.conn)
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Check: %v, %v; want SERVING", resp, err)
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Watch: %v, %v; want SERVING", resp, err)
	}

	rc, err := reflectionpb.NewServerReflectionClient(r.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if rr, err := rc.Recv(); err != nil || len(rr.GetListServicesResponse().GetService()) == 0 {
		t.Errorf("reflection v1 list: %v, %v; want services", rr, err)
	}
	_ = rc.CloseSend()

	ra, err := reflectionv1alpha.NewServerReflectionClient(r.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ra.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if rr, err := ra.Recv(); err != nil || len(rr.GetListServicesResponse().GetService()) == 0 {
		t.Errorf("reflection v1alpha list: %v, %v; want services", rr, err)
	}
	_ = ra.CloseSend()

	if _, err := r.client.Query(ctx, &testingv1.QueryRequest{Behavior: &testingv1.Behavior{CallId: "exempt"}}); err != nil {
		t.Errorf("exempt Query: %v, want OK", err)
	}
	for _, e := range rec.snapshot() {
		if e.FullMethod != testingv1.TestService_Unary_FullMethodName {
			t.Errorf("event %+v on an exempt method", e)
		}
	}
}

// Config.Exempt takes a whole service as "pkg.Service" or "/pkg.Service/",
// and one method as "/pkg.Service/Method": under a total chaos outage,
// exactly the methods named get through.
func TestExemptForms(t *testing.T) {
	service := testingv1.TestService_ServiceDesc.ServiceName
	for _, tc := range []struct {
		exempt           string
		unaryOK, queryOK bool
	}{
		{service, true, true},
		{"/" + service + "/", true, true},
		{testingv1.TestService_Unary_FullMethodName, true, false},
		{"other.Service", false, false},
	} {
		t.Run(tc.exempt, func(t *testing.T) {
			r, _ := startPipeline(t, server.Config{
				Exempt: []string{tc.exempt},
				Chaos:  server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{ErrorRate: 1}}},
			}, outer{})
			_, errU := r.client.Unary(context.Background(), unaryReq("u"))
			_, errQ := r.client.Query(context.Background(), &testingv1.QueryRequest{})
			if (errU == nil) != tc.unaryOK || (errQ == nil) != tc.queryOK {
				t.Errorf("Unary: %v, Query: %v; want OK %v and %v", errU, errQ, tc.unaryOK, tc.queryOK)
			}
		})
	}
}
