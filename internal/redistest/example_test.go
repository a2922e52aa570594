package redistest_test

import (
	"fmt"
	"os"

	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
)

// Launch serves a TestMain or a helper process, which have no *testing.T.
func ExampleLaunch() {
	dir, err := os.MkdirTemp("", "redis")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	srv, err := redistest.Launch(dir)
	if err != nil {
		fmt.Println(err) // redistest.ErrMissing without redis-server
		return
	}
	defer srv.Stop()
	r, _ := srv.Do("PING")
	fmt.Println(r[1:])
	// Launch needs redis-server; Start in a test skips without it.
}
