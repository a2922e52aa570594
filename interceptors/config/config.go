package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	configv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/config/v1"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// Format says how the bytes of a configuration are written.
type Format uint8

const (
	// FormatAuto detects the format: JSON when the first non-blank
	// character is "{", YAML otherwise; and a gRPC service config, rather
	// than this package's schema, when the top-level object has a
	// methodConfig or retryThrottling field.
	FormatAuto Format = iota
	// FormatJSON is the proto3 JSON mapping of configv1.Config.
	FormatJSON
	// FormatYAML is YAML that converts to FormatJSON.
	FormatYAML
	// FormatServiceConfig is a gRPC service config in JSON, imported with
	// ImportServiceConfig.
	FormatServiceConfig
)

var formatNames = [...]string{"auto", "json", "yaml", "service-config"}

// String returns "auto", "json", "yaml" or "service-config".
func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// ParseFormat returns the Format that String names.
func ParseFormat(s string) (Format, error) {
	for i, n := range formatNames {
		if n == s {
			return Format(i), nil
		}
	}
	return 0, fmt.Errorf("config: format %q: must be one of %s", s, strings.Join(formatNames[:], ", "))
}

// Config is a loaded and validated configuration: the client policies of
// methods, services and the default, the target budget, and the server
// pipeline's settings. Create one with [Load], [Parse], [ImportServiceConfig]
// or [FromProto]; the zero Config is an empty configuration (no policy, a
// server pipeline that only rejects expired deadlines).
//
// A Config is immutable and safe for concurrent use. It holds no state of
// its own: each pipeline built from it ([Config.DialOptions],
// [Config.ServerOptions], [NewReloader]) has its own breakers, bulkheads
// and budgets.
type Config struct {
	source string
	msg    *configv1.Config
	notes  []string
	// entries are the names of the policies, in file order.
	entries []entry
}

// entry is one name of one policy.
type entry struct {
	pattern string // "/pkg.Svc/Method", "pkg.Svc" or "" for the default
	policy  int    // index in msg.MethodPolicies
}

// Load reads the file at path and parses it with [FormatAuto]; problems
// name the file. It reads only regular files of at most [MaxFileSize]
// bytes, so that a FIFO or a device given as path is an error, not a hang.
func Load(path string) (*Config, error) {
	// Stat first: opening a FIFO or a device for reading could block or
	// never end.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("config: %s: %v, must be a regular file", path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config: %s: larger than %d bytes, the most Load reads", path, MaxFileSize)
	}
	return parse(path, data, FormatAuto)
}

// MaxFileSize is the largest file [Load] reads, in bytes.
const MaxFileSize = 16 << 20

// Parse parses and validates a configuration written in format f. Unknown
// fields, values of the wrong type and invalid values are errors: it
// returns an *[Error] that lists every problem found, each naming its
// field's path and bad value, such as
//
//	method_policies[2].retry.max_attempts: 0, must be at least 1
func Parse(data []byte, f Format) (*Config, error) {
	return parse("", data, f)
}

func parse(source string, data []byte, f Format) (*Config, error) {
	if f == FormatAuto {
		f = detect(data)
	}
	switch f {
	case FormatYAML:
		js, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, &Error{Source: source, Problems: []Problem{{Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")}}}
		}
		data = js
		if isServiceConfig(data) {
			return importServiceConfig(source, data)
		}
	case FormatJSON:
	case FormatServiceConfig:
		return importServiceConfig(source, data)
	default:
		return nil, fmt.Errorf("config: unknown format %v", f)
	}
	msg := new(configv1.Config)
	if ps := unmarshalStrict(data, msg); len(ps) > 0 {
		return nil, ps.err(source)
	}
	return build(source, msg, nil)
}

// detect tells FormatJSON, FormatYAML and FormatServiceConfig apart.
func detect(data []byte) Format {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return FormatYAML
	}
	if isServiceConfig(data) {
		return FormatServiceConfig
	}
	return FormatJSON
}

// isServiceConfig reports whether data is a JSON object with a field that
// only gRPC service configs have.
func isServiceConfig(data []byte) bool {
	root, err := parseJSON(data)
	if err != nil || root.kind != 'o' {
		return false
	}
	for _, k := range root.keys {
		switch k {
		case "methodConfig", "method_config", "retryThrottling", "retry_throttling", "loadBalancingConfig", "loadBalancingPolicy":
			return true
		}
	}
	return false
}

// FromProto validates m and returns it as a Config, which keeps its own
// copy of m.
func FromProto(m *configv1.Config) (*Config, error) {
	return build("", proto.Clone(m).(*configv1.Config), nil)
}

// build validates msg, which the Config then owns.
func build(source string, msg *configv1.Config, notes []string) (*Config, error) {
	cfg := &Config{source: source, msg: msg, notes: notes}
	var c conv
	seen := map[string]string{}
	for i, mp := range msg.GetMethodPolicies() {
		path := index("method_policies", i)
		if len(mp.GetName()) == 0 {
			c.ps.addMsg(join(path, "name"), "empty, must list at least one name ({} for the default policy)")
		}
		for j, n := range mp.GetName() {
			np := index(join(path, "name"), j)
			pattern, ok := c.name(np, n)
			if !ok {
				continue
			}
			if prev, dup := seen[pattern]; dup {
				c.ps.addMsg(np, fmt.Sprintf("%s, already named by %s", nameText(n), prev))
				continue
			}
			seen[pattern] = np
			cfg.entries = append(cfg.entries, entry{pattern: pattern, policy: i})
		}
		c.policy(path, mp)
	}
	if b := msg.GetTargetBudget(); b != nil {
		c.budget("target_budget", b, false)
	}
	c.serverConfig("server", msg.GetServer())
	if err := c.ps.err(source); err != nil {
		return nil, err
	}
	return cfg, nil
}

// name checks a Name and returns its pattern: "/pkg.Svc/Method",
// "pkg.Svc" or "" for the default.
func (c *conv) name(path string, n *configv1.Name) (string, bool) {
	svc, m := n.GetService(), n.GetMethod()
	ok := true
	switch {
	case svc == "" && m != "":
		c.ps.addMsg(join(path, "service"), fmt.Sprintf(`empty, must be set when method (%q) is`, m))
		ok = false
	case strings.ContainsAny(svc, "/ ") || strings.HasPrefix(svc, ".") || strings.HasSuffix(svc, "."):
		c.ps.add(join(path, "service"), fmt.Sprintf("%q", svc), `must be a full service name such as "pkg.Service"`)
		ok = false
	}
	if strings.ContainsAny(m, "/ .") {
		c.ps.add(join(path, "method"), fmt.Sprintf("%q", m), `must be a method name such as "Get"`)
		ok = false
	}
	switch {
	case !ok:
		return "", false
	case svc == "":
		return "", true
	case m == "":
		return svc, true
	}
	return "/" + svc + "/" + m, true
}

func nameText(n *configv1.Name) string {
	return fmt.Sprintf("{service: %q, method: %q}", n.GetService(), n.GetMethod())
}

// Proto returns a copy of the configuration as its schema's message, with
// the defaults left unset as they were in the file.
func (c *Config) Proto() *configv1.Config {
	if c.msg == nil {
		return new(configv1.Config)
	}
	return proto.Clone(c.msg).(*configv1.Config)
}

// Source returns the file name the configuration was loaded from, or "".
func (c *Config) Source() string { return c.source }

// Notes returns what [ImportServiceConfig] had to say about the import:
// fields of the service config that were ignored and values that were
// clamped as gRPC clamps them. It is empty for the other formats.
func (c *Config) Notes() []string { return append([]string(nil), c.notes...) }

// ClientConfig returns the client policies of the configuration as an
// [interceptors.Config]: Default is the default policy (the zero Policy,
// which changes no call, when the file has none), Methods is keyed by full
// method name ("/pkg.Service/Method") and Services by service name
// ("pkg.Service"); TargetBudget creates the file's target budget anew for
// each target (nil, the interceptors package's default, when the file has
// none: the same ratio budget). Observer is zero; set it before
// [interceptors.NewClient] when needed.
//
// Most callers want [Config.DialOptions] or a [Reloader]; ClientConfig
// serves callers that build an [interceptors.Client] of their own, for
// instance to add a fallback, which files cannot configure:
//
//	ccfg := cfg.ClientConfig()
//	p := ccfg.Methods["/pkg.Svc/Get"]
//	p.Fallback = &interceptors.FallbackPolicy{Func: cached}
//	ccfg.Methods["/pkg.Svc/Get"] = p
//	client, err := interceptors.NewClient(ccfg)
//
// Unlike a [Reloader], which gives each policy a pipeline of its own, such
// a client shares its caps (interceptors.Config.MaxKeys) among all
// policies.
func (c *Config) ClientConfig() interceptors.Config {
	out := interceptors.Config{Methods: map[string]interceptors.Policy{}, Services: map[string]interceptors.Policy{}}
	for _, e := range c.entries {
		p := c.policy(e.policy)
		switch {
		case e.pattern == "":
			out.Default = p
		case e.pattern[0] == '/':
			out.Methods[e.pattern] = p
		default:
			out.Services[e.pattern] = p
		}
	}
	if b := c.msg.GetTargetBudget(); b != nil {
		out.TargetBudget = func(string) retry.Budget {
			var cv conv
			return cv.budget("target_budget", b, false)
		}
	}
	return out
}

// policy converts the policy at index i, which was validated.
func (c *Config) policy(i int) interceptors.Policy {
	var cv conv
	return cv.policy(index("method_policies", i), c.msg.GetMethodPolicies()[i])
}

// ServerConfig returns the server pipeline's configuration. Observer is
// zero; set it before server.New when needed. Each call returns new
// adaptive strategy constructors, so that pipelines share no state.
func (c *Config) ServerConfig() server.Config {
	var cv conv
	return cv.serverConfig("server", c.msg.GetServer())
}
