package fleet

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helpers are the roles a re-executed test binary can play, by name. Each
// test file registers its own in init(); a role returns the process's exit
// code. See procs_test.go for how the tests start them.
var helpers = map[string]func() int{}

// TestMain runs the tests, or, when the environment names a helper role
// (FLEET_HELPER), runs that role and exits: the tests start this binary
// again as the processes of a fleet.
func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		h, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "fleet: unknown helper %q\n", name)
			os.Exit(2)
		}
		os.Exit(h())
	}
	goleak.VerifyTestMain(m)
}
